//! Queries for adding professionals in bulk (a coordinator's or an operator's CSV file):
//! what is known about many email addresses at once, and multi-row inserts of accounts,
//! memberships, single-use codes and outbox messages.
//!
//! A file of 10,000 rows must be checked and applied in seconds on PostgreSQL too, where
//! each statement is a round trip: lookups take 500 addresses per statement, and inserts up
//! to 128 rows per statement. The statements are built once (their text must be `'static`
//! for the connections' statement caches) for a fixed set of sizes: a lookup pads its last
//! chunk with empty strings (no address), an insert splits its rows into chunks of 128, 64,
//! …, 1.
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

use super::{account_from, coded};
use crate::{OutboxMessage, Param, StoreError, Tx};

/// Addresses looked up per statement.
const LOOKUP_CHUNK: usize = 500;
/// Rows per multi-row insert, largest first; every count of rows is a sum of these.
const INSERT_SIZES: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

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

/// `{head} ({placeholders}, …)`: the head followed by `count` copies of `(?, ?, …)`.
fn values_statement(head: &str, columns: usize, count: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("{head} {}", vec![row; count].join(", "))
}

/// The multi-row insert statements of one table, one per size in [`INSERT_SIZES`].
pub(crate) fn insert_statements(
    cache: &'static OnceLock<Vec<String>>,
    head: &str,
    columns: usize,
) -> &'static [String] {
    cache.get_or_init(|| INSERT_SIZES.iter().map(|&count| values_statement(head, columns, count)).collect())
}

/// `WITH v (email) AS (VALUES (?), … ×LOOKUP_CHUNK) {query}`, built once.
pub(crate) fn lookup_statement(cache: &'static OnceLock<String>, query: &str) -> &'static str {
    cache.get_or_init(|| format!("WITH v (email) AS (VALUES {}) {query}", vec!["(?)"; LOOKUP_CHUNK].join(", ")))
}

/// The emails in chunks of [`LOOKUP_CHUNK`], the last padded with empty strings (which are
/// no one's address), so that every chunk runs the same statement.
pub(crate) fn lookup_chunks<'e>(emails: &'e [&'e EmailAddress]) -> impl Iterator<Item = Vec<Param<'e>>> {
    emails.chunks(LOOKUP_CHUNK).map(|chunk| {
        let mut params: Vec<Param<'e>> = chunk.iter().map(|email| Param::Text(email.as_str())).collect();
        params.resize(LOOKUP_CHUNK, Param::Text(""));
        params
    })
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

    /// Runs one multi-row insert per chunk of `items` (128, 64, …, 1 rows).
    pub(crate) fn insert_in_chunks<'i, T>(
        &mut self,
        statements: &'static [String],
        items: &'i [T],
        params_of: impl Fn(&'i T, &mut Vec<Param<'i>>),
    ) -> Result<(), StoreError> {
        let mut rest = items;
        let mut params = Vec::new();
        while !rest.is_empty() {
            let (index, size) = INSERT_SIZES
                .iter()
                .copied()
                .enumerate()
                .find(|&(_, size)| size <= rest.len())
                .expect("the sizes end with 1");
            let (chunk, after) = rest.split_at(size);
            params.clear();
            for item in chunk {
                params_of(item, &mut params);
            }
            self.conn.execute(statements[index].as_str(), &params)?;
            rest = after;
        }
        Ok(())
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
                super::CodePurpose::ProfessionalActivation.code().into(),
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
                message.template.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let sql = values_statement("INSERT INTO t (a, b) VALUES", 2, 3);
        assert_eq!(sql, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)");
        static CACHE: OnceLock<String> = OnceLock::new();
        let lookup = lookup_statement(&CACHE, "SELECT 1 FROM v");
        assert_eq!(lookup.matches('?').count(), LOOKUP_CHUNK);
        assert!(lookup.starts_with("WITH v (email) AS (VALUES (?), (?), "), "{lookup}");
    }

    #[test]
    fn every_count_of_rows_is_a_sum_of_the_sizes() {
        for total in [1_usize, 2, 3, 127, 128, 129, 255, 1000, 10_001] {
            let mut rest = total;
            let mut statements = 0;
            while rest > 0 {
                let size = INSERT_SIZES.iter().copied().find(|&size| size <= rest).unwrap();
                rest -= size;
                statements += 1;
            }
            assert!(statements <= total / 128 + 7, "{total}: {statements}");
        }
    }

    #[test]
    fn lookups_pad_the_last_chunk() {
        let emails: Vec<EmailAddress> =
            (0..501).map(|n| EmailAddress::parse(&format!("p{n}@example.org")).unwrap()).collect();
        let refs: Vec<&EmailAddress> = emails.iter().collect();
        let chunks: Vec<Vec<Param<'_>>> = lookup_chunks(&refs).collect();
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|chunk| chunk.len() == LOOKUP_CHUNK));
        assert!(matches!(chunks[1][0], Param::Text("p500@example.org")));
        assert!(matches!(chunks[1][499], Param::Text("")));
    }
}
