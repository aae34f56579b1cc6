//! What the coordinator rules (`kith_core::coordination`) need: what ties accounts to
//! organisations (their memberships with each team's organisation, privacy officer
//! appointments, a patient's login), for one account or for every address of a CSV file at
//! once; and coordinators' invitations to join a team.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use kith_core::coordination::{AccountTies, HeldMembership, InvitationAnswer, MembershipInvitation};
use kith_core::team::{MembershipRole, MembershipStatus};
use kith_core::text::{EmailAddress, Name};
use kith_core::{AccountId, MembershipInvitationId, OrganisationId, TeamId, Timestamp};
use uuid::Uuid;

use super::bulk::{insert_statements, lookup_chunks, lookup_statement};
use super::rows::{coded, corrupt};
use super::sessions::MessageState;
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::{Param, Row};

/// What ties one account to organisations (the owned form of [`AccountTies`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownTies {
    pub memberships: Vec<HeldMembership>,
    pub privacy_officer_of: Vec<OrganisationId>,
    pub is_patient: bool,
}

impl KnownTies {
    pub fn ties(&self) -> AccountTies<'_> {
        AccountTies {
            memberships: &self.memberships,
            privacy_officer_of: &self.privacy_officer_of,
            is_patient: self.is_patient,
        }
    }

    /// Adds one row of the ties queries: (kind, organisation, membership status).
    fn add(&mut self, row: &Row, offset: usize) -> Result<(), StoreError> {
        match row.text(offset)? {
            "membership" => self.memberships.push(HeldMembership {
                organisation: OrganisationId::from_uuid(row.uuid(offset + 1)?),
                status: coded("membership status", row.text(offset + 2)?, MembershipStatus::from_code)?,
            }),
            "privacy_officer" => self.privacy_officer_of.push(OrganisationId::from_uuid(row.uuid(offset + 1)?)),
            "patient" => self.is_patient = true,
            other => return Err(StoreError::corrupt(format!("unknown tie {other:?}"))),
        }
        Ok(())
    }
}

/// A new invitation, with the outbox message that carries it and, for an account that has
/// never set a password, the SHA-256 of the activation code it carries.
#[derive(Clone, Debug)]
pub struct NewMembershipInvitation {
    pub invitation: MembershipInvitation,
    pub message: Uuid,
    pub activation_code_hash: Option<[u8; 32]>,
}

/// An invitation still waiting for an answer, with the state of the message that carried it.
#[derive(Clone, Debug)]
pub struct OpenInvitation {
    pub invitation: MembershipInvitation,
    pub message: Option<MessageState>,
}

macro_rules! invitation_columns {
    () => {
        "i.id, i.team_id, i.email, i.name, i.role, i.job_title, i.registration_number, i.invited_by, i.created_at"
    };
}

fn invitation_from(row: &Row) -> Result<MembershipInvitation, StoreError> {
    Ok(MembershipInvitation {
        id: MembershipInvitationId::from_uuid(row.uuid(0)?),
        team: TeamId::from_uuid(row.uuid(1)?),
        email: EmailAddress::parse(row.text(2)?).map_err(corrupt("email"))?,
        name: Name::parse("name", row.text(3)?).map_err(corrupt("invitation name"))?,
        role: coded("role", row.text(4)?, MembershipRole::from_code)?,
        job_title: row.opt_text(5)?.map(str::to_owned),
        registration_number: row.opt_text(6)?.map(str::to_owned),
        invited_by: AccountId::from_uuid(row.uuid(7)?),
        created_at: row.timestamp(8)?,
    })
}

impl Tx<'_> {
    /// What ties the account to organisations.
    pub fn account_ties(&mut self, account: AccountId) -> Result<KnownTies, StoreError> {
        let mut ties = KnownTies::default();
        self.conn.query_each(
            "SELECT 'membership', t.organisation_id, m.status FROM memberships m JOIN teams t ON t.id = m.team_id
              WHERE m.account_id = ?
             UNION ALL
             SELECT 'privacy_officer', p.organisation_id, NULL FROM privacy_officers p WHERE p.account_id = ?
             UNION ALL
             SELECT 'patient', NULL, NULL FROM patients p WHERE p.account_id = ?",
            &[account.into(), account.into(), account.into()],
            &mut |row| ties.add(row, 0),
        )?;
        Ok(ties)
    }

    /// What ties the accounts with these addresses to organisations, by address (as
    /// stored); an address without an account, or whose account has no ties, is absent.
    /// The same statements run whatever the addresses are.
    pub fn ties_by_email(&mut self, emails: &[&EmailAddress]) -> Result<HashMap<String, KnownTies>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            "SELECT a.email, 'membership', t.organisation_id, m.status
               FROM v JOIN accounts a ON a.email = v.email JOIN memberships m ON m.account_id = a.id
               JOIN teams t ON t.id = m.team_id
             UNION ALL
             SELECT a.email, 'privacy_officer', p.organisation_id, NULL
               FROM v JOIN accounts a ON a.email = v.email JOIN privacy_officers p ON p.account_id = a.id
             UNION ALL
             SELECT a.email, 'patient', NULL, NULL
               FROM v JOIN accounts a ON a.email = v.email JOIN patients p ON p.account_id = a.id",
        );
        let mut found: HashMap<String, KnownTies> = HashMap::new();
        for params in lookup_chunks(emails) {
            self.conn
                .query_each(sql, &params, &mut |row| found.entry(row.text(0)?.to_owned()).or_default().add(row, 1))?;
        }
        Ok(found)
    }

    /// Which of these addresses have an open invitation to `team`.
    pub fn open_invitation_emails(
        &mut self,
        team: TeamId,
        emails: &[&EmailAddress],
    ) -> Result<HashSet<String>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            "SELECT i.email FROM v JOIN membership_invitations i ON i.email = v.email
              WHERE i.team_id = ? AND i.answer IS NULL",
        );
        let mut found = HashSet::new();
        for mut params in lookup_chunks(emails) {
            params.push(team.into());
            self.conn.query_each(sql, &params, &mut |row| {
                found.insert(row.text(0)?.to_owned());
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// Inserts invitations, many per statement.
    pub fn insert_membership_invitations(&mut self, invitations: &[NewMembershipInvitation]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO membership_invitations (id, team_id, email, name, role, job_title, registration_number,
                 invited_by, message_id, activation_code_hash, created_at) VALUES",
            11,
        );
        self.insert_in_chunks(statements, invitations, |new, params| {
            let invitation = &new.invitation;
            params.extend([
                Param::from(invitation.id),
                invitation.team.into(),
                invitation.email.as_str().into(),
                invitation.name.as_str().into(),
                invitation.role.code().into(),
                invitation.job_title.as_deref().into(),
                invitation.registration_number.as_deref().into(),
                invitation.invited_by.into(),
                Param::Uuid(new.message),
                new.activation_code_hash.as_ref().map(|hash| Param::Bytes(hash.as_slice())).unwrap_or(Param::Null),
                invitation.created_at.into(),
            ]);
        })
    }

    /// An invitation and how it was answered (`None`: still open).
    pub fn membership_invitation(
        &mut self,
        id: MembershipInvitationId,
    ) -> Result<Option<(MembershipInvitation, Option<InvitationAnswer>)>, StoreError> {
        self.one(
            concat!("SELECT ", invitation_columns!(), ", i.answer FROM membership_invitations i WHERE i.id = ?"),
            &[id.into()],
            |row| {
                let answer = row
                    .opt_text(9)?
                    .map(|code| coded("invitation answer", code, InvitationAnswer::from_code))
                    .transpose()?;
                Ok((invitation_from(row)?, answer))
            },
        )
    }

    /// The open invitations to an address, oldest first.
    pub fn open_invitations_to(&mut self, email: &EmailAddress) -> Result<Vec<MembershipInvitation>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                invitation_columns!(),
                " FROM membership_invitations i WHERE i.email = ? AND i.answer IS NULL ORDER BY i.created_at, i.id"
            ),
            &[email.as_str().into()],
            invitation_from,
        )
    }

    /// A team's open invitations, by name, each with the state of the message that carried it.
    pub fn open_invitations_of_team(&mut self, team: TeamId) -> Result<Vec<OpenInvitation>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                invitation_columns!(),
                ", o.template, o.status, o.attempts, o.created_at
                 FROM membership_invitations i LEFT JOIN outbox o ON o.id = i.message_id
                 WHERE i.team_id = ? AND i.answer IS NULL ORDER BY i.name, i.email"
            ),
            &[team.into()],
            |row| {
                let message = match row.opt_text(9)? {
                    Some(template) => Some(MessageState {
                        template: template.to_owned(),
                        status: row.text(10)?.to_owned(),
                        attempts: row.int(11)?,
                        created_at: row.timestamp(12)?,
                    }),
                    None => None,
                };
                Ok(OpenInvitation { invitation: invitation_from(row)?, message })
            },
        )
    }

    /// The open invitations that carried this activation code.
    pub fn open_invitations_activated_by(
        &mut self,
        code_hash: &[u8; 32],
    ) -> Result<Vec<MembershipInvitation>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                invitation_columns!(),
                " FROM membership_invitations i WHERE i.activation_code_hash = ? AND i.answer IS NULL"
            ),
            &[code_hash.as_slice().into()],
            invitation_from,
        )
    }

    /// Closes an open invitation; false when it was not open.
    pub fn answer_membership_invitation(
        &mut self,
        id: MembershipInvitationId,
        answer: InvitationAnswer,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE membership_invitations SET answer = ?, answered_at = ? WHERE id = ? AND answer IS NULL",
            &[answer.code().into(), at.into(), id.into()],
        )? > 0)
    }
}
