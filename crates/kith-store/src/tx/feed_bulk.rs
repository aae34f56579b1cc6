//! Statements for the HL7 import's new records in bulk: which control ids, NHS numbers and
//! local identifiers are known already, many per statement, and multi-row inserts of new
//! patients, their identifiers, their care links and the stored messages.
//!
//! A backfill is mostly registrations of people Kith has never seen. One by one, each is
//! about ten statements (a savepoint, a repeat check, identifier look-ups, then a row in
//! each table); on PostgreSQL each is a round trip. Here a batch of them costs a few
//! look-ups and a few inserts of up to 128 rows each. The statements are built once per
//! size (their text must be `'static` for the statement caches), as in
//! [`super::professionals`].

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use kith_core::model::{CareLink, Patient};
use kith_core::patient::{LocalIdentifier, NhsNumber};
use kith_core::text::EmailAddress;
use kith_core::{OrganisationId, PatientId, Timestamp};

use super::bulk::insert_statements;
use super::hl7::{NewHl7Message, message_columns, message_params};
use super::rows::{PatientRow, care_link_columns, care_link_params, patient_columns};
use super::transaction::Tx;
use crate::error::{StoreError, StoreErrorKind};
use crate::value::{Param, Row};

/// Values looked up per statement; the last chunk is padded with values no row has.
const LOOKUP_CHUNK: usize = 250;

/// `WITH v ({columns}) AS (VALUES (?, …), … ×LOOKUP_CHUNK) {query}`, built once. The
/// queries say `CROSS JOIN`, which makes SQLite take the values as the outer loop and probe
/// the table's index once for each; left to choose, SQLite 3.54 walked all of a sender's
/// stored messages and the values inside each (a 50,000-message backfill fell from 15,350
/// to 1,400 messages/s). PostgreSQL plans a `CROSS JOIN` with a `WHERE` as any join.
fn lookup_statement(cache: &'static OnceLock<String>, columns: &[&str], query: &str) -> &'static str {
    cache.get_or_init(|| {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        format!("WITH v ({}) AS (VALUES {}) {query}", columns.join(", "), vec![row; LOOKUP_CHUNK].join(", "))
    })
}

/// A record found by a look-up: its id, and the record it was merged into, if it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef {
    pub id: PatientId,
    pub merged_into: Option<PatientId>,
}

fn record_ref(row: &Row, at: usize) -> Result<RecordRef, StoreError> {
    Ok(RecordRef {
        id: PatientId::from_uuid(row.uuid(at)?),
        merged_into: row.opt_uuid(at + 1)?.map(PatientId::from_uuid),
    })
}

/// A local identifier of a new record, to insert.
#[derive(Clone, Copy, Debug)]
pub struct NewPatientIdentifier<'a> {
    pub patient: PatientId,
    pub organisation: OrganisationId,
    pub identifier: &'a LocalIdentifier,
    pub created_at: Timestamp,
}

impl Tx<'_> {
    /// Which of these control ids (MSH-10) the organisation's sender (MSH-3, MSH-4) has a
    /// stored message for.
    pub fn stored_control_ids(
        &mut self,
        organisation: OrganisationId,
        sending_application: &str,
        sending_facility: &str,
        control_ids: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            &["control_id"],
            "SELECT m.control_id FROM v CROSS JOIN hl7_messages m
             WHERE m.control_id = v.control_id AND m.organisation_id = ? AND m.sending_application = ?
               AND m.sending_facility = ?",
        );
        let mut found = HashSet::new();
        for chunk in control_ids.chunks(LOOKUP_CHUNK) {
            // An empty control id is stored as NULL, so "" matches no message.
            let mut params: Vec<Param<'_>> = chunk.iter().map(|id| Param::Text(id)).collect();
            params.resize(LOOKUP_CHUNK, Param::Text(""));
            params.extend([organisation.into(), Param::Text(sending_application), Param::Text(sending_facility)]);
            self.conn.query_each(sql, &params, &mut |row| {
                found.insert(row.text(0)?.to_owned());
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// The records with these NHS numbers (merged records included), by number.
    pub fn records_by_nhs_number(&mut self, numbers: &[&NhsNumber]) -> Result<HashMap<String, RecordRef>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            &["nhs_number"],
            "SELECT p.nhs_number, p.id, p.merged_into FROM v CROSS JOIN patients p WHERE p.nhs_number = v.nhs_number",
        );
        self.records_by_text(sql, numbers.iter().map(|number| number.as_str()))
    }

    /// The records with these email addresses (merged records included), by address.
    pub fn records_by_email(&mut self, emails: &[&EmailAddress]) -> Result<HashMap<String, RecordRef>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            &["email"],
            "SELECT p.email, p.id, p.merged_into FROM v CROSS JOIN patients p WHERE p.email = v.email",
        );
        self.records_by_text(sql, emails.iter().map(|email| email.as_str()))
    }

    /// Runs a one-column look-up whose rows are (value, id, merged_into); "" pads the last
    /// chunk (no record has an empty NHS number or email: they are NULL when absent).
    fn records_by_text<'v>(
        &mut self,
        sql: &'static str,
        values: impl Iterator<Item = &'v str>,
    ) -> Result<HashMap<String, RecordRef>, StoreError> {
        let values: Vec<&str> = values.collect();
        let mut found = HashMap::new();
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let mut params: Vec<Param<'_>> = chunk.iter().map(|value| Param::Text(value)).collect();
            params.resize(LOOKUP_CHUNK, Param::Text(""));
            self.conn.query_each(sql, &params, &mut |row| {
                found.insert(row.text(0)?.to_owned(), record_ref(row, 1)?);
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// The records of the organisation with these local identifiers, by
    /// (authority, value).
    pub fn records_by_local_identifier(
        &mut self,
        organisation: OrganisationId,
        identifiers: &[&LocalIdentifier],
    ) -> Result<HashMap<(String, String), RecordRef>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = lookup_statement(
            &SQL,
            &["authority", "value"],
            "SELECT i.authority, i.value, p.id, p.merged_into FROM v CROSS JOIN patient_identifiers i
             JOIN patients p ON p.id = i.patient_id
             WHERE i.organisation_id = ? AND i.authority = v.authority AND i.value = v.value",
        );
        let mut found = HashMap::new();
        for chunk in identifiers.chunks(LOOKUP_CHUNK) {
            let mut params: Vec<Param<'_>> = Vec::with_capacity(2 * LOOKUP_CHUNK + 1);
            for identifier in chunk {
                params.extend([Param::Text(identifier.authority()), Param::Text(identifier.value())]);
            }
            // No identifier has an empty authority.
            params.resize(2 * LOOKUP_CHUNK, Param::Text(""));
            params.push(organisation.into());
            self.conn.query_each(sql, &params, &mut |row| {
                found.insert((row.text(0)?.to_owned(), row.text(1)?.to_owned()), record_ref(row, 2)?);
                Ok(())
            })?;
        }
        Ok(found)
    }

    /// Inserts new patient records, many per statement. A record that exists already (by
    /// id, NHS number or email) fails the statement: these are for records just made.
    pub fn insert_new_patients(&mut self, patients: &[Patient]) -> Result<(), StoreError> {
        let rows: Vec<PatientRow<'_>> = patients.iter().map(PatientRow::of).collect();
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(&SQL, concat!("INSERT INTO patients (", patient_columns!(), ") VALUES"), 15);
        self.insert_in_chunks(statements, &rows, PatientRow::params)
    }

    /// Inserts local identifiers, many per statement.
    pub fn insert_patient_identifiers(&mut self, identifiers: &[NewPatientIdentifier<'_>]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements = insert_statements(
            &SQL,
            "INSERT INTO patient_identifiers (patient_id, organisation_id, authority, value, created_at) VALUES",
            5,
        );
        self.insert_in_chunks(statements, identifiers, |row, params| {
            params.extend([
                row.patient.into(),
                row.organisation.into(),
                Param::Text(row.identifier.authority()),
                Param::Text(row.identifier.value()),
                row.created_at.into(),
            ]);
        })
    }

    /// Inserts new care links, many per statement (a link that exists fails the statement).
    pub fn insert_care_links(&mut self, links: &[CareLink]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let statements =
            insert_statements(&SQL, concat!("INSERT INTO care_links (", care_link_columns!(), ") VALUES"), 8);
        self.insert_in_chunks(statements, links, care_link_params)
    }

    /// Stores messages with their outcomes, many per statement. Only for messages that were
    /// not held (their conflict records are not written).
    pub fn insert_hl7_messages(&mut self, messages: &[NewHl7Message<'_>]) -> Result<(), StoreError> {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        static NO_RECORDS: Option<String> = None;
        if messages.iter().any(|message| !message.record.conflict_records.is_empty()) {
            return Err(StoreError::new(
                StoreErrorKind::Database,
                "held messages are stored one at a time, with their records",
            ));
        }
        let statements = insert_statements(
            &SQL,
            concat!("INSERT INTO hl7_messages (", message_columns!(), ", raw, processed_at) VALUES"),
            17,
        );
        self.insert_in_chunks(statements, messages, |message, params| {
            message_params(message, &NO_RECORDS, params);
        })
    }
}
