//! Queries for consent on a patient's behalf: the organisation's setting, and the events a
//! privacy officer reviews.

use kith_core::audit::ChainedEvent;
use kith_core::{AccountId, LabelSet, OrganisationId, PatientId};
use uuid::Uuid;

use super::rows::{audit_columns, audit_from, labels};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

impl Tx<'_> {
    /// The labels the organisation lets its Patient Record Team's data-quality staff add on a
    /// patient's behalf (general health unless changed).
    pub fn on_behalf_labels(&mut self, organisation: OrganisationId) -> Result<LabelSet, StoreError> {
        let bits =
            self.one("SELECT on_behalf_labels FROM organisations WHERE id = ?", &[organisation.into()], |row| {
                row.int(0)
            })?;
        // No organisation: nothing may be added on anyone's behalf.
        bits.map_or(Ok(LabelSet::EMPTY), labels)
    }

    pub fn set_on_behalf_labels(
        &mut self,
        organisation: OrganisationId,
        allowed: LabelSet,
    ) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE organisations SET on_behalf_labels = ? WHERE id = ?",
            &[Param::Int(i64::from(allowed.bits())), organisation.into()],
        )? > 0)
    }

    /// Events of one action in the organisations the account is a privacy officer of (about
    /// one patient, or all), newest first.
    pub fn officer_events(
        &mut self,
        officer: AccountId,
        action: &str,
        patient: Option<PatientId>,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE action = ?
              AND organisation_id IN (SELECT organisation_id FROM privacy_officers WHERE account_id = ?)
              AND (? OR patient_id = ?) ORDER BY seq DESC LIMIT ?"
        );
        let patient_id = patient.map(|patient| patient.as_uuid()).unwrap_or(Uuid::nil());
        self.all(
            sql,
            &[action.into(), officer.into(), patient.is_none().into(), patient_id.into(), limit.into()],
            audit_from,
        )
    }
}
