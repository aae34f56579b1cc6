//! Queries for consent on a patient's behalf: the organisation's setting, and the events a
//! privacy officer reviews.

use kith_core::audit::ChainedEvent;
use kith_core::{AccountId, LabelSet, OrganisationId, PatientId};
use uuid::Uuid;

use super::rows::{audit_columns, audit_from, labels};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

/// Which events [`Tx::officer_events`] reads.
#[derive(Clone, Copy, Debug)]
pub enum OfficerEvents<'a> {
    /// Those of one action (e.g. `consent.change`).
    Action(&'a str),
    /// Every break-the-glass event: grants opened and ended, and accesses under them.
    BreakGlass,
}

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

    /// Events a privacy officer reviews, in the organisations the account is a privacy
    /// officer of (about one patient, or all), newest first: those of one action, or every
    /// break-the-glass event (grants, and every access under them).
    pub fn officer_events(
        &mut self,
        officer: AccountId,
        which: OfficerEvents<'_>,
        patient: Option<PatientId>,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events
              WHERE (action = ? OR (? AND (action LIKE 'break\\_glass.%' ESCAPE '\\' OR basis = 'break_glass')))
              AND organisation_id IN (SELECT organisation_id FROM privacy_officers WHERE account_id = ?)
              AND (? OR patient_id = ?) ORDER BY seq DESC LIMIT ?"
        );
        let (action, break_glass) = match which {
            OfficerEvents::Action(action) => (action, false),
            OfficerEvents::BreakGlass => ("", true),
        };
        let patient_id = patient.map(|patient| patient.as_uuid()).unwrap_or(Uuid::nil());
        let params = [
            action.into(),
            break_glass.into(),
            officer.into(),
            patient.is_none().into(),
            patient_id.into(),
            limit.into(),
        ];
        self.all(sql, &params, audit_from)
    }
}
