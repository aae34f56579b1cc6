//! Queries for patients and their identifiers.

use kith_core::model::*;
use kith_core::patient::{LocalIdentifier, NhsNumber};
use kith_core::text::EmailAddress;
use kith_core::*;

use super::rows::{PatientRow, after_patient, corrupt, like_prefix, patient_columns, patient_from};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

impl Tx<'_> {
    // ----- patients ----------------------------------------------------------------------

    /// Writes a patient's record: inserts it, or rewrites its identifiers, demographics and
    /// status (everything but `created_at`).
    pub fn put_patient(&mut self, patient: &Patient) -> Result<(), StoreError> {
        let row = PatientRow::of(patient);
        let mut params = Vec::with_capacity(15);
        row.params(&mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO patients (",
                patient_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET nhs_number = excluded.nhs_number, family_name = excluded.family_name,
                 given_name = excluded.given_name, birth_date = excluded.birth_date, sex = excluded.sex,
                 email = excluded.email, mobile = excluded.mobile, address = excluded.address,
                 registration = excluded.registration,
                 account_id = excluded.account_id, sharing_disabled = excluded.sharing_disabled,
                 merged_into = excluded.merged_into, updated_at = excluded.updated_at"
            ),
            &params,
        )?;
        Ok(())
    }

    pub fn patient(&mut self, id: PatientId) -> Result<Option<Patient>, StoreError> {
        self.one(concat!("SELECT ", patient_columns!(), " FROM patients WHERE id = ?"), &[id.into()], patient_from)
    }

    pub fn patient_by_nhs_number(&mut self, nhs_number: &NhsNumber) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE nhs_number = ?"),
            &[nhs_number.as_str().into()],
            patient_from,
        )
    }

    pub fn patient_by_email(&mut self, email: &EmailAddress) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE email = ?"),
            &[email.as_str().into()],
            patient_from,
        )
    }

    pub fn patient_by_account(&mut self, account: AccountId) -> Result<Option<Patient>, StoreError> {
        self.one(
            concat!("SELECT ", patient_columns!(), " FROM patients WHERE account_id = ?"),
            &[account.into()],
            patient_from,
        )
    }

    pub fn patient_by_local_identifier(
        &mut self,
        organisation: OrganisationId,
        identifier: &LocalIdentifier,
    ) -> Result<Option<Patient>, StoreError> {
        self.one(
            "SELECT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address
             FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id
             WHERE i.organisation_id = ? AND i.authority = ? AND i.value = ?",
            &[organisation.into(), identifier.authority().into(), identifier.value().into()],
            patient_from,
        )
    }

    /// Patients with this date of birth whose family name starts with `family`, ignoring
    /// case (a FHIR `family` search). Merged records are left out: they resolve to their
    /// survivor.
    pub fn patients_by_family_and_birth_date(
        &mut self,
        family: &str,
        birth_date: &str,
        after: Option<&Patient>,
        limit: i64,
    ) -> Result<Vec<Patient>, StoreError> {
        let pattern = like_prefix(family);
        // Pages in (family name, given name, id) order: `after` is the last of the page before.
        let mut params: Vec<Param<'_>> = vec![birth_date.into(), pattern.as_str().into()];
        params.extend(after_patient(after));
        params.push(Param::Int(limit));
        self.all(
            concat!(
                "SELECT ",
                patient_columns!(),
                " FROM patients WHERE birth_date = ? AND lower(family_name) LIKE ? ESCAPE '\\' AND merged_into IS NULL
                  AND (? OR family_name > ? OR (family_name = ? AND (given_name > ? OR (given_name = ? AND id > ?))))
                  ORDER BY family_name, given_name, id LIMIT ?"
            ),
            &params,
            patient_from,
        )
    }

    /// Patients holding a local identifier under `authority` in any organisation.
    pub fn patients_by_authority_identifier(
        &mut self,
        authority: &str,
        value: &str,
    ) -> Result<Vec<Patient>, StoreError> {
        self.all(
            "SELECT DISTINCT p.id, p.nhs_number, p.family_name, p.given_name, p.birth_date, p.sex, p.email, p.mobile, p.registration,
                    p.account_id, p.sharing_disabled, p.merged_into, p.created_at, p.updated_at, p.address
             FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id
             WHERE i.authority = ? AND i.value = ? ORDER BY p.id",
            &[authority.into(), value.into()],
            patient_from,
        )
    }

    pub fn insert_patient_identifier(
        &mut self,
        patient: PatientId,
        organisation: OrganisationId,
        identifier: &LocalIdentifier,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO patient_identifiers (patient_id, organisation_id, authority, value, created_at) VALUES (?, ?, ?, ?, ?)",
            &[patient.into(), organisation.into(), identifier.authority().into(), identifier.value().into(), at.into()],
        )?;
        Ok(())
    }

    pub fn patient_identifiers(&mut self, patient: PatientId) -> Result<Vec<PatientIdentifier>, StoreError> {
        self.all(
            "SELECT organisation_id, authority, value FROM patient_identifiers WHERE patient_id = ? ORDER BY authority, value",
            &[patient.into()],
            |row| {
                let text = format!("{}:{}", row.text(1)?, row.text(2)?);
                Ok(PatientIdentifier {
                    organisation: OrganisationId::from_uuid(row.uuid(0)?),
                    identifier: LocalIdentifier::parse(&text).map_err(corrupt("local identifier"))?,
                })
            },
        )
    }
}
