//! Queries for care links: which teams a patient's record is shared with, and what of it.

use kith_core::model::*;
use kith_core::*;

use super::rows::{care_link_columns, care_link_from, care_link_params};
use super::transaction::Tx;
use crate::error::StoreError;

impl Tx<'_> {
    // ----- care links --------------------------------------------------------------------

    pub fn care_link(&mut self, patient: PatientId, team: TeamId) -> Result<Option<CareLink>, StoreError> {
        self.one(
            concat!("SELECT ", care_link_columns!(), " FROM care_links WHERE patient_id = ? AND team_id = ?"),
            &[patient.into(), team.into()],
            care_link_from,
        )
    }

    pub fn care_links(&mut self, patient: PatientId) -> Result<Vec<CareLink>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                care_link_columns!(),
                " FROM care_links WHERE patient_id = ? ORDER BY linked_at, team_id"
            ),
            &[patient.into()],
            care_link_from,
        )
    }

    /// Writes a care link, replacing the patient's earlier link to the same team (its
    /// history is in the audit trail).
    pub fn put_care_link(&mut self, link: &CareLink) -> Result<(), StoreError> {
        let mut params = Vec::with_capacity(8);
        care_link_params(link, &mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO care_links (",
                care_link_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (patient_id, team_id) DO UPDATE SET labels = excluded.labels, basis = excluded.basis,
                 changed_by = excluded.changed_by, linked_at = excluded.linked_at, updated_at = excluded.updated_at,
                 discharged_at = excluded.discharged_at"
            ),
            &params,
        )?;
        Ok(())
    }

    /// Whether the patient is in the organisation: actively linked to its Patient Record Team.
    pub fn patient_in_organisation(
        &mut self,
        patient: PatientId,
        organisation: OrganisationId,
    ) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM care_links c JOIN teams t ON t.id = c.team_id
             WHERE c.patient_id = ? AND t.organisation_id = ? AND t.kind = 'patient_record' AND c.discharged_at IS NULL",
            &[patient.into(), organisation.into()],
        )
    }
}
