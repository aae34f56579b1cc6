//! Queries for organisations.

use std::time::Duration;

use kith_core::model::*;
use kith_core::*;

use kith_core::text::OrganisationCode;

use super::rows::{organisation_columns, organisation_from};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

impl Tx<'_> {
    // ----- organisations ---------------------------------------------------------------

    pub fn insert_organisation(&mut self, organisation: &Organisation) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO organisations (", organisation_columns!(), ") VALUES (?, ?, ?, ?, ?)"),
            &[
                organisation.id.into(),
                organisation.code.as_str().into(),
                organisation.name.as_str().into(),
                Param::Int(i64::try_from(organisation.break_glass_duration.as_secs()).unwrap_or(i64::MAX)),
                organisation.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn organisation(&mut self, id: OrganisationId) -> Result<Option<Organisation>, StoreError> {
        self.one(
            concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE id = ?"),
            &[id.into()],
            organisation_from,
        )
    }

    pub fn organisation_by_code(&mut self, code: &OrganisationCode) -> Result<Option<Organisation>, StoreError> {
        self.one(
            concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE code = ?"),
            &[code.as_str().into()],
            organisation_from,
        )
    }

    pub fn organisations(&mut self) -> Result<Vec<Organisation>, StoreError> {
        self.all(
            concat!("SELECT ", organisation_columns!(), " FROM organisations ORDER BY code"),
            &[],
            organisation_from,
        )
    }

    pub fn set_break_glass_duration(&mut self, id: OrganisationId, duration: Duration) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE organisations SET break_glass_seconds = ? WHERE id = ?",
            &[Param::Int(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)), id.into()],
        )?;
        Ok(())
    }
}
