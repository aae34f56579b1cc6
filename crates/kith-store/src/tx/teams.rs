//! Queries for teams.

use kith_core::model::*;
use kith_core::*;

use kith_core::team::TeamStatus;
use kith_core::text::TeamAlias;

use super::rows::{team_columns, team_from};
use super::transaction::Tx;
use crate::conn::Dialect;
use crate::error::StoreError;
use crate::value::Param;

impl Tx<'_> {
    // ----- teams -----------------------------------------------------------------------

    pub fn insert_team(&mut self, team: &Team) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO teams (", team_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            &[
                team.id.into(),
                team.organisation.into(),
                team.kind.code().into(),
                team.name.as_str().into(),
                team.alias.as_str().into(),
                team.status.code().into(),
                Param::Int(i64::from(team.default_labels.bits())),
                team.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn team(&mut self, id: TeamId) -> Result<Option<Team>, StoreError> {
        self.one(concat!("SELECT ", team_columns!(), " FROM teams WHERE id = ?"), &[id.into()], team_from)
    }

    pub fn team_by_alias(
        &mut self,
        organisation: OrganisationId,
        alias: &TeamAlias,
    ) -> Result<Option<Team>, StoreError> {
        self.one(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? AND alias = ?"),
            &[organisation.into(), alias.as_str().into()],
            team_from,
        )
    }

    pub fn patient_record_team(&mut self, organisation: OrganisationId) -> Result<Option<Team>, StoreError> {
        self.one(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? AND kind = 'patient_record'"),
            &[organisation.into()],
            team_from,
        )
    }

    pub fn teams(&mut self, organisation: OrganisationId) -> Result<Vec<Team>, StoreError> {
        self.all(
            concat!("SELECT ", team_columns!(), " FROM teams WHERE organisation_id = ? ORDER BY kind, alias"),
            &[organisation.into()],
            team_from,
        )
    }

    pub fn set_team_status(&mut self, id: TeamId, status: TeamStatus) -> Result<(), StoreError> {
        self.conn.execute("UPDATE teams SET status = ? WHERE id = ?", &[status.code().into(), id.into()])?;
        Ok(())
    }

    /// Locks a team's row until commit, so that checks on its coordinators cannot interleave
    /// (PostgreSQL; SQLite write transactions are already serialised).
    pub fn lock_team(&mut self, id: TeamId) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            self.conn.query("SELECT id FROM teams WHERE id = ? FOR UPDATE", &[id.into()])?;
        }
        Ok(())
    }
}
