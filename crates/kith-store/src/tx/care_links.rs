//! Queries for care links: which teams a patient's record is shared with, and what of it.

use kith_core::model::*;
use kith_core::*;

use super::rows::{
    after_patient, care_link_columns, care_link_from, care_link_params, entry_from, like_prefix, patient_from,
};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

/// What a team's patient list is narrowed to (all of it when every field is empty).
#[derive(Clone, Debug, Default)]
pub struct TeamPatientFilter {
    /// The start of the family or given name, any case.
    pub name: String,
    /// An NHS number, exactly.
    pub nhs_number: String,
    /// A local identifier's value, exactly (under any authority of any organisation).
    pub local_identifier: String,
    /// A date of birth, YYYY-MM-DD.
    pub birth_date: String,
}

/// A patient in a team's list, with when they were brought into the team.
#[derive(Clone, Debug)]
pub struct TeamPatient {
    pub patient: Patient,
    pub linked_at: Timestamp,
}

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

    /// The patients actively linked to `team` that `filter` admits, in (family name, given
    /// name, id) order, after the patient `after` (the last of the page before), at most
    /// `limit`. Merged records are left out (they resolve to their survivor, linked too).
    pub fn team_patients(
        &mut self,
        team: TeamId,
        filter: &TeamPatientFilter,
        after: Option<&Patient>,
        limit: i64,
    ) -> Result<Vec<TeamPatient>, StoreError> {
        let name = like_prefix(filter.name.trim());
        let mut params: Vec<Param<'_>> = vec![
            team.into(),
            filter.name.trim().is_empty().into(),
            name.as_str().into(),
            name.as_str().into(),
            filter.nhs_number.is_empty().into(),
            filter.nhs_number.as_str().into(),
            filter.birth_date.is_empty().into(),
            filter.birth_date.as_str().into(),
            filter.local_identifier.is_empty().into(),
            filter.local_identifier.as_str().into(),
        ];
        params.extend(after_patient(after));
        params.push(Param::Int(limit));
        self.all(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address, c.linked_at
             FROM care_links c JOIN patients p ON p.id = c.patient_id
             WHERE c.team_id = ? AND c.discharged_at IS NULL AND p.merged_into IS NULL
               AND (? OR lower(p.family_name) LIKE ? ESCAPE '\\' OR lower(p.given_name) LIKE ? ESCAPE '\\')
               AND (? OR p.nhs_number = ?)
               AND (? OR p.birth_date = ?)
               AND (? OR EXISTS (SELECT 1 FROM patient_identifiers i WHERE i.patient_id = p.id AND i.value = ?))
               AND (? OR p.family_name > ? OR (p.family_name = ? AND (p.given_name > ? OR (p.given_name = ? AND p.id > ?))))
             ORDER BY p.family_name, p.given_name, p.id LIMIT ?",
            &params,
            |row| Ok(TeamPatient { patient: patient_from(row)?, linked_at: row.timestamp(15)? }),
        )
    }

    /// The patients brought into `team` after `since` and still in it, newest first, at
    /// most `limit`.
    pub fn team_patients_added_since(
        &mut self,
        team: TeamId,
        since: Timestamp,
        limit: i64,
    ) -> Result<Vec<TeamPatient>, StoreError> {
        self.all(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address, c.linked_at
             FROM care_links c JOIN patients p ON p.id = c.patient_id
             WHERE c.team_id = ? AND c.discharged_at IS NULL AND c.linked_at > ? AND p.merged_into IS NULL
             ORDER BY c.linked_at DESC, p.id LIMIT ?",
            &[team.into(), since.into(), Param::Int(limit)],
            |row| Ok(TeamPatient { patient: patient_from(row)?, linked_at: row.timestamp(15)? }),
        )
    }

    /// The entries recorded after `since` in the records of the patients in `team` (every
    /// one: the caller decides which the team may see), newest first, at most `limit`.
    pub fn team_entries_since(&mut self, team: TeamId, since: Timestamp, limit: i64) -> Result<Vec<Entry>, StoreError> {
        self.all(
            "SELECT e.id, e.patient_id, e.kind, e.label, e.authored_team_id, e.author_account_id, e.effective_at,
                    e.recorded_at, e.title, e.body, e.version, e.status, e.source_key, e.source_message_id, e.ends_at
             FROM care_links c JOIN record_entries e ON e.patient_id = c.patient_id
             WHERE c.team_id = ? AND c.discharged_at IS NULL AND e.recorded_at > ?
             ORDER BY e.recorded_at DESC, e.id LIMIT ?",
            &[team.into(), since.into(), Param::Int(limit)],
            entry_from,
        )
    }
}
