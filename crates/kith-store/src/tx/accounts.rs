//! Queries for accounts, their memberships of teams and privacy officers' appointments.

use kith_core::model::*;
use kith_core::team::AccountStatus;
use kith_core::text::EmailAddress;
use kith_core::*;

use super::rows::{account_columns, account_from, membership_from};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Row;

impl Tx<'_> {
    // ----- accounts and memberships ----------------------------------------------------

    pub fn insert_account(&mut self, account: &Account, password_hash: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO accounts (id, email, name, status, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                account.id.into(),
                account.email.as_str().into(),
                account.name.as_str().into(),
                account.status.code().into(),
                password_hash.into(),
                account.created_at.into(),
                account.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn account(&mut self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.one(concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = ?"), &[id.into()], account_from)
    }

    pub fn account_by_email(&mut self, email: &EmailAddress) -> Result<Option<Account>, StoreError> {
        self.one(
            concat!("SELECT ", account_columns!(), " FROM accounts WHERE email = ?"),
            &[email.as_str().into()],
            account_from,
        )
    }

    /// The stored Argon2id hash (PHC string) of an account's password, if it has one.
    pub fn password_hash(&mut self, id: AccountId) -> Result<Option<String>, StoreError> {
        Ok(self
            .one("SELECT password_hash FROM accounts WHERE id = ?", &[id.into()], |row| {
                Ok(row.opt_text(0)?.map(str::to_owned))
            })?
            .flatten())
    }

    pub fn set_password(
        &mut self,
        id: AccountId,
        password_hash: &str,
        status: AccountStatus,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE accounts SET password_hash = ?, status = ?, updated_at = ? WHERE id = ?",
            &[password_hash.into(), status.code().into(), at.into(), id.into()],
        )?;
        Ok(())
    }

    /// Sets the account's status; an account no longer active also loses its open
    /// break-the-glass grants, which are returned for the caller to audit.
    pub fn set_account_status(
        &mut self,
        id: AccountId,
        status: AccountStatus,
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.conn.execute(
            "UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?",
            &[status.code().into(), at.into(), id.into()],
        )?;
        if status == AccountStatus::Active { Ok(Vec::new()) } else { self.end_break_glass_of(id, None, at) }
    }

    pub fn membership(&mut self, account: AccountId, team: TeamId) -> Result<Option<Membership>, StoreError> {
        self.one(
            "SELECT account_id, team_id, role, status FROM memberships WHERE account_id = ? AND team_id = ?",
            &[account.into(), team.into()],
            |row| membership_from(row, 0),
        )
    }

    pub fn insert_membership(&mut self, membership: &Membership, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO memberships (account_id, team_id, role, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                membership.account.into(),
                membership.team.into(),
                membership.role.code().into(),
                membership.status.code().into(),
                at.into(),
                at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn update_membership(&mut self, membership: &Membership, at: Timestamp) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE memberships SET role = ?, status = ?, updated_at = ? WHERE account_id = ? AND team_id = ?",
            &[
                membership.role.code().into(),
                membership.status.code().into(),
                at.into(),
                membership.account.into(),
                membership.team.into(),
            ],
        )?;
        Ok(())
    }

    /// Coordinators of the team whose membership and account are both active.
    /// A team's coordinators with an active membership, whatever their account's state (an
    /// invited account has not set its password yet).
    pub fn count_appointed_coordinators(&mut self, team: TeamId) -> Result<usize, StoreError> {
        let count = self
            .one(
                "SELECT COUNT(*) FROM memberships WHERE team_id = ? AND role = 'coordinator' AND status = 'active'",
                &[team.into()],
                |row| row.int(0),
            )?
            .unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(0))
    }

    pub fn count_active_coordinators(&mut self, team: TeamId) -> Result<usize, StoreError> {
        let count = self
            .one(
                "SELECT COUNT(*) FROM memberships m JOIN accounts a ON a.id = m.account_id
                 WHERE m.team_id = ? AND m.role = 'coordinator' AND m.status = 'active' AND a.status = 'active'",
                &[team.into()],
                |row| row.int(0),
            )?
            .unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// A team's members with their accounts, by name.
    pub fn team_members(&mut self, team: TeamId) -> Result<Vec<(Membership, Account)>, StoreError> {
        self.all(
            concat!(
                "SELECT m.account_id, m.team_id, m.role, m.status, ",
                "a.id, a.email, a.name, a.status, a.created_at",
                " FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE m.team_id = ? ORDER BY a.name, a.email"
            ),
            &[team.into()],
            |row| {
                let membership = membership_from(row, 0)?;
                let account = account_from(&Row(row.0[4..].to_vec()))?;
                Ok((membership, account))
            },
        )
    }

    /// An account's memberships.
    pub fn memberships_of(&mut self, account: AccountId) -> Result<Vec<Membership>, StoreError> {
        self.all(
            "SELECT account_id, team_id, role, status FROM memberships WHERE account_id = ? ORDER BY team_id",
            &[account.into()],
            |row| membership_from(row, 0),
        )
    }

    pub fn add_privacy_officer(
        &mut self,
        organisation: OrganisationId,
        account: AccountId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO privacy_officers (organisation_id, account_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            &[organisation.into(), account.into(), at.into()],
        )?;
        Ok(())
    }

    pub fn privacy_officers(&mut self, organisation: OrganisationId) -> Result<Vec<Account>, StoreError> {
        self.all(
            "SELECT a.id, a.email, a.name, a.status, a.created_at FROM privacy_officers p JOIN accounts a ON a.id = p.account_id
             WHERE p.organisation_id = ? ORDER BY a.email",
            &[organisation.into()],
            account_from,
        )
    }

    /// Whether the account is a privacy officer of an organisation the patient is in.
    pub fn is_privacy_officer_for(&mut self, account: AccountId, patient: PatientId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM privacy_officers p
             JOIN teams t ON t.organisation_id = p.organisation_id AND t.kind = 'patient_record'
             JOIN care_links c ON c.team_id = t.id AND c.patient_id = ? AND c.discharged_at IS NULL
             WHERE p.account_id = ?",
            &[patient.into(), account.into()],
        )
    }

    /// Whether the account is any organisation's privacy officer.
    pub fn is_privacy_officer(&mut self, account: AccountId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM privacy_officers WHERE account_id = ?", &[account.into()])
    }
}
