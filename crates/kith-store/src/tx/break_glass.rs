//! Queries for breaking the glass: grants, ending them, and the events a privacy officer
//! reviews.

use kith_core::model::*;
use kith_core::*;
use uuid::Uuid;

use super::rows::{grant_columns, grant_from};
use super::transaction::Tx;
use crate::error::StoreError;

impl Tx<'_> {
    // ----- break glass -------------------------------------------------------------------

    /// Stores a grant; `session` is the SHA-256 of the web session it was opened in, if
    /// any: the grant ends with that session.
    pub fn insert_break_glass(
        &mut self,
        grant: &BreakGlassGrant,
        session: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO break_glass_grants (",
                grant_columns!(),
                ", session_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                grant.id.into(),
                grant.patient.into(),
                grant.account.into(),
                grant.team.into(),
                grant.reason.as_str().into(),
                grant.started_at.into(),
                grant.expires_at.into(),
                grant.ended_at.into(),
                session.map(|hash| hash.as_slice()).into(),
            ],
        )?;
        Ok(())
    }

    /// Ends the account's open grants: all of them (the account is no longer active), or
    /// those opened through its membership of `team` (the membership was deactivated);
    /// returns them.
    pub fn end_break_glass_of(
        &mut self,
        account: AccountId,
        team: Option<TeamId>,
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        let team_id = team.map(|team| team.as_uuid()).unwrap_or(Uuid::nil());
        self.end_open_grants(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE account_id = ? AND (? OR team_id = ?)
                  AND ended_at IS NULL AND expires_at > ? ORDER BY started_at, id"
            ),
            &[account.into(), team.is_none().into(), team_id.into(), at.into()],
            at,
        )
    }

    /// The grants opened in the web session with this SHA-256 that are still open at `at`
    /// (the page banner), soonest to end first.
    pub fn open_break_glass_of_session(
        &mut self,
        session: &[u8; 32],
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE session_hash = ? AND ended_at IS NULL AND expires_at > ? ORDER BY expires_at, id"
            ),
            &[session.as_slice().into(), at.into()],
            grant_from,
        )
    }

    /// Ends the open grants opened in the web session with this SHA-256 (sign-out);
    /// returns them.
    pub fn end_break_glass_of_session(
        &mut self,
        session: &[u8; 32],
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.end_open_grants(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE session_hash = ? AND ended_at IS NULL AND expires_at > ? ORDER BY started_at, id"
            ),
            &[session.as_slice().into(), at.into()],
            at,
        )
    }

    /// Ends each grant `open_grants` finds (open ones only: the query says so); returns them.
    fn end_open_grants(
        &mut self,
        open_grants: &'static str,
        params: &[crate::value::Param<'_>],
        at: Timestamp,
    ) -> Result<Vec<BreakGlassGrant>, StoreError> {
        let open = self.all(open_grants, params, grant_from)?;
        for grant in &open {
            self.conn
                .execute("UPDATE break_glass_grants SET ended_at = ? WHERE id = ?", &[at.into(), grant.id.into()])?;
        }
        Ok(open)
    }

    /// The most recent grant of (account, patient).
    pub fn latest_break_glass(
        &mut self,
        account: AccountId,
        patient: PatientId,
    ) -> Result<Option<BreakGlassGrant>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                grant_columns!(),
                " FROM break_glass_grants WHERE patient_id = ? AND account_id = ? ORDER BY started_at DESC, id DESC LIMIT 1"
            ),
            &[patient.into(), account.into()],
            grant_from,
        )
    }

    /// Ends every open grant of (account, patient); returns how many were open.
    pub fn end_break_glass(
        &mut self,
        account: AccountId,
        patient: PatientId,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE patient_id = ? AND account_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), patient.into(), account.into(), at.into()],
        )
    }

    /// Ends every open grant on the patient (sharing disabled).
    pub fn end_all_break_glass(&mut self, patient: PatientId, at: Timestamp) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE break_glass_grants SET ended_at = ? WHERE patient_id = ? AND ended_at IS NULL AND expires_at > ?",
            &[at.into(), patient.into(), at.into()],
        )
    }

    /// The team a break-the-glass grant was opened through.
    pub fn break_glass_team(&mut self, grant: BreakGlassId) -> Result<Option<TeamId>, StoreError> {
        self.one("SELECT team_id FROM break_glass_grants WHERE id = ?", &[grant.into()], |row| {
            Ok(TeamId::from_uuid(row.uuid(0)?))
        })
    }
}
