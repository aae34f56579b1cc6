//! Queries for adding professionals in bulk (a coordinator's or an operator's CSV file):
//! what is known about many email addresses at once, and multi-row inserts of accounts,
//! memberships, single-use codes and outbox messages.
//!
//! A file of 10,000 rows must be checked and applied in seconds on PostgreSQL too, where
//! each statement is a round trip: lookups take 500 addresses per statement, and inserts up
//! to 128 rows per statement, built once per size by `bulk.rs` (a lookup pads its last
//! chunk with empty strings, an insert splits its rows into chunks of 128, 64, …, 1).
//!
//! A lookup joins the addresses, as a `VALUES` list, to the table (a hash join, or an index
//! probe per address, whichever the planner prefers — linear either way), and reads the
//! membership of each account found with a correlated subquery (one primary-key probe).
//! The first version, `email IN (…)` with a join to the team's memberships, read all of the
//! team's memberships for every chunk of addresses on PostgreSQL; importing a 50,000-row file
//! a second time (`bench/onboarding/run --rows 50000`) took 43 s there, and takes 1.8 s now.

use std::sync::OnceLock;

use kith_core::model::{Account, Membership};
use kith_core::team::{MembershipRole, MembershipStatus};
use kith_core::text::EmailAddress;
use kith_core::{AccountId, TeamId, Timestamp};

use super::bulk::{insert_statements, lookup_chunks, lookup_statement};
use super::outbox::OutboxMessage;
use super::rows::{account_from, coded};
use super::sessions::CodePurpose;
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

/// What Kith already knows about an email address that has an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAccount {
    pub account: Account,
    /// The account's membership of the team asked about, if any.
    pub membership: Option<Membership>,
    /// Whether the account is a patient's (the login of a patient record).
    pub is_patient: bool,
}

/// Row counts of the tables an import writes to (for checks in tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnboardingCounts {
    pub accounts: i64,
    pub memberships: i64,
    pub one_time_codes: i64,
    pub outbox: i64,
    pub audit_events: i64,
}

/// A single-use code to insert: its SHA-256, whose account it is, and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewAccountCode {
    pub code_hash: [u8; 32],
    pub account: AccountId,
    pub expires_at: Timestamp,
}

/// A professional's job title and registration number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDetails {
    pub account: AccountId,
    pub job_title: Option<String>,
    pub registration_number: Option<String>,
}

/// A new account from an upload or an invitation, with the professional details given.
#[derive(Clone, Debug)]
pub struct InvitedAccount {
    pub account: Account,
    pub job_title: Option<String>,
    pub registration_number: Option<String>,
}

impl Tx<'_> {
    /// The accounts with these email addresses, each with its membership of `team` and
    /// whether it is a patient's. Addresses without an account are simply absent.
    pub fn known_accounts(&mut self, team: TeamId, emails: &[&EmailAddress]) -> Result<Vec<KnownAccount>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            "SELECT a.id, a.email, a.name, a.status, a.created_at,
                    (SELECT m.role FROM memberships m WHERE m.account_id = a.id AND m.team_id = ?),
                    (SELECT m.status FROM memberships m WHERE m.account_id = a.id AND m.team_id = ?),
                    (SELECT COUNT(*) FROM patients p WHERE p.account_id = a.id)
             FROM v JOIN accounts a ON a.email = v.email",
        );
        let mut known = Vec::with_capacity(emails.len());
        for mut params in lookup_chunks(emails) {
            params.extend([Param::from(team), Param::from(team)]);
            self.conn.query_each(sql, &params, &mut |row| {
                let account = account_from(row)?;
                let membership = match row.opt_text(5)? {
                    Some(role) => Some(Membership {
                        account: account.id,
                        team,
                        role: coded("role", role, MembershipRole::from_code)?,
                        status: coded("membership status", row.text(6)?, MembershipStatus::from_code)?,
                    }),
                    None => None,
                };
                known.push(KnownAccount { account, membership, is_patient: row.int(7)? > 0 });
                Ok(())
            })?;
        }
        Ok(known)
    }

    /// Which of these addresses are on a patient record (a patient's contact address, with
    /// or without an account yet).
    pub fn patient_emails(&mut self, emails: &[&EmailAddress]) -> Result<Vec<String>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(&SQL, "SELECT p.email FROM v JOIN patients p ON p.email = v.email");
        let mut found = Vec::new();
        for params in lookup_chunks(emails) {
            self.conn.query_each(sql, &params, &mut |row| {
                found.push(row.text(0)?.to_owned());
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// Inserts accounts without passwords (invited), many per statement.
    pub fn insert_invited_accounts(&mut self, accounts: &[InvitedAccount]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO accounts (id, email, name, status, password_hash, created_at, updated_at, job_title, registration_number) VALUES",
            9,
        );
        self.insert_in_chunks(statements, accounts, |invited, params| {
            let account = &invited.account;
            params.extend([
                Param::from(account.id),
                account.email.as_str().into(),
                account.name.as_str().into(),
                account.status.code().into(),
                Param::Null,
                account.created_at.into(),
                account.created_at.into(),
                invited.job_title.as_deref().into(),
                invited.registration_number.as_deref().into(),
            ]);
        })
    }

    /// The job title and registration number of each member of a team that has them.
    pub fn member_details(&mut self, team: TeamId) -> Result<Vec<MemberDetails>, StoreError> {
        self.all(
            "SELECT a.id, a.job_title, a.registration_number FROM memberships m JOIN accounts a ON a.id = m.account_id
             WHERE m.team_id = ? AND (a.job_title IS NOT NULL OR a.registration_number IS NOT NULL)",
            &[team.into()],
            |row| {
                Ok(MemberDetails {
                    account: AccountId::from_uuid(row.uuid(0)?),
                    job_title: row.opt_text(1)?.map(str::to_owned),
                    registration_number: row.opt_text(2)?.map(str::to_owned),
                })
            },
        )
    }

    /// Inserts memberships, many per statement.
    pub fn insert_memberships(&mut self, memberships: &[Membership], at: Timestamp) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO memberships (account_id, team_id, role, status, created_at, updated_at) VALUES",
            6,
        );
        self.insert_in_chunks(statements, memberships, |membership, params| {
            params.extend([
                Param::from(membership.account),
                membership.team.into(),
                membership.role.code().into(),
                membership.status.code().into(),
                at.into(),
                at.into(),
            ]);
        })
    }

    /// Inserts professional-activation codes (their hashes), many per statement.
    pub fn insert_activation_codes(&mut self, codes: &[NewAccountCode], now: Timestamp) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO one_time_codes (code_hash, purpose, account_id, patient_id, created_at, expires_at) VALUES",
            6,
        );
        self.insert_in_chunks(statements, codes, |code, params| {
            params.extend([
                Param::Bytes(code.code_hash.as_slice()),
                CodePurpose::ProfessionalActivation.code().into(),
                code.account.into(),
                Param::Null,
                now.into(),
                code.expires_at.into(),
            ]);
        })
    }

    /// Enqueues outbox messages (pending, due at once), many per statement.
    pub fn enqueue_many(&mut self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO outbox (id, channel, template, recipient, payload, secret, status, attempts, next_attempt_at, created_at) VALUES",
            10,
        );
        self.insert_in_chunks(statements, messages, |message, params| {
            params.extend([
                Param::Uuid(message.id),
                message.channel.into(),
                Param::Text(&message.template),
                Param::Text(&message.recipient),
                Param::Text(&message.payload),
                message.secret.as_deref().into(),
                Param::Text("pending"),
                Param::Int(0),
                message.created_at.into(),
                message.created_at.into(),
            ]);
        })
    }

    /// How many rows the tables an import writes to hold.
    pub fn onboarding_counts(&mut self) -> Result<OnboardingCounts, StoreError> {
        self.one(
            "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM memberships),
                    (SELECT COUNT(*) FROM one_time_codes), (SELECT COUNT(*) FROM outbox),
                    (SELECT COUNT(*) FROM audit_events)",
            &[],
            |row| {
                Ok(OnboardingCounts {
                    accounts: row.int(0)?,
                    memberships: row.int(1)?,
                    one_time_codes: row.int(2)?,
                    outbox: row.int(3)?,
                    audit_events: row.int(4)?,
                })
            },
        )
        .map(Option::unwrap_or_default)
    }
}
