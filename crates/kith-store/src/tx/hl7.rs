//! Queries for HL7 feeds: integrations, assigning authorities, stored messages.

use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration};
use kith_core::text::Name;
use kith_core::{Hl7MessageId, IntegrationId, OrganisationId, PatientId, Timestamp};

use kith_core::integration::AddressRange;

use super::rows::{coded, corrupt};
use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::{Param, Row};

macro_rules! integration_columns {
    () => {
        "id, organisation_id, name, facility, created_at, revoked_at, token_expires_at, allowed_addresses, client_certificate_sha256"
    };
}
macro_rules! message_columns {
    () => {
        "id, organisation_id, integration_id, sending_application, sending_facility, control_id, message_type, status, ack, error, patient_id, received_at, conflict, conflict_records, resolution"
    };
}
pub(super) use message_columns;

/// An integration's address ranges, as stored: space-separated.
fn addresses_text(integration: &Integration) -> String {
    integration.allowed_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn integration_from(row: &Row) -> Result<Integration, StoreError> {
    Ok(Integration {
        id: IntegrationId::from_uuid(row.uuid(0)?),
        organisation: OrganisationId::from_uuid(row.uuid(1)?),
        name: Name::parse("name", row.text(2)?).map_err(corrupt("integration name"))?,
        facility: row.text(3)?.to_owned(),
        created_at: row.timestamp(4)?,
        revoked_at: row.opt_timestamp(5)?,
        token_expires_at: row.opt_timestamp(6)?,
        allowed_addresses: row
            .text(7)?
            .split_whitespace()
            .map(|range| AddressRange::parse(range).map_err(corrupt("integration address range")))
            .collect::<Result<_, _>>()?,
        client_certificate_sha256: match row.opt_bytes(8)? {
            None => None,
            Some(bytes) => Some(bytes.try_into().map_err(|_| StoreError::corrupt("a certificate hash is 32 bytes"))?),
        },
    })
}

fn message_from(row: &Row) -> Result<Hl7MessageRecord, StoreError> {
    Ok(Hl7MessageRecord {
        id: Hl7MessageId::from_uuid(row.uuid(0)?),
        organisation: OrganisationId::from_uuid(row.uuid(1)?),
        integration: row.opt_uuid(2)?.map(IntegrationId::from_uuid),
        sending_application: row.text(3)?.to_owned(),
        sending_facility: row.text(4)?.to_owned(),
        control_id: row.opt_text(5)?.map(str::to_owned),
        message_type: row.text(6)?.to_owned(),
        status: coded("HL7 message status", row.text(7)?, Hl7MessageStatus::from_code)?,
        ack: row.text(8)?.to_owned(),
        error: row.opt_text(9)?.map(str::to_owned),
        patient: row.opt_uuid(10)?.map(PatientId::from_uuid),
        received_at: row.timestamp(11)?,
        conflict: row.opt_text(12)?.map(str::to_owned),
        conflict_records: row
            .opt_text(13)?
            .unwrap_or_default()
            .split_whitespace()
            .map(|id| id.parse::<uuid::Uuid>().map(PatientId::from_uuid).map_err(corrupt("held message record")))
            .collect::<Result<_, _>>()?,
        resolution: row.opt_text(14)?.map(str::to_owned),
    })
}

/// A held message's records, as stored: space-separated ids.
fn records_text(records: &[PatientId]) -> Option<String> {
    (!records.is_empty()).then(|| records.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
}

/// A message to store, with what became of it.
#[derive(Clone, Debug)]
pub struct NewHl7Message<'a> {
    pub record: &'a Hl7MessageRecord,
    pub raw: &'a [u8],
    pub processed_at: Timestamp,
}

/// A stored message's values, in the order of `message_columns!()`, then `raw, processed_at`.
/// `records` holds the text of the held message's records, which the parameters borrow.
pub(super) fn message_params<'m>(
    message: &NewHl7Message<'m>,
    records: &'m Option<String>,
    params: &mut Vec<Param<'m>>,
) {
    let record = message.record;
    params.extend([
        record.id.into(),
        record.organisation.into(),
        record.integration.into(),
        Param::Text(&record.sending_application),
        Param::Text(&record.sending_facility),
        record.control_id.as_ref().into(),
        Param::Text(&record.message_type),
        record.status.code().into(),
        Param::Text(&record.ack),
        record.error.as_ref().into(),
        record.patient.into(),
        record.received_at.into(),
        record.conflict.as_ref().into(),
        records.as_ref().into(),
        record.resolution.as_ref().into(),
        Param::Bytes(message.raw),
        message.processed_at.into(),
    ]);
}

/// The text of a message's held records, for [`message_params`].
pub(super) fn message_records(message: &NewHl7Message<'_>) -> Option<String> {
    records_text(&message.record.conflict_records)
}

impl Tx<'_> {
    pub fn insert_integration(&mut self, integration: &Integration, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        let addresses = addresses_text(integration);
        self.conn.execute(
            concat!(
                "INSERT INTO integrations (",
                integration_columns!(),
                ", token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                integration.id.into(),
                integration.organisation.into(),
                integration.name.as_str().into(),
                Param::Text(&integration.facility),
                integration.created_at.into(),
                integration.revoked_at.into(),
                integration.token_expires_at.into(),
                Param::Text(&addresses),
                integration.client_certificate_sha256.as_ref().map(|hash| Param::Bytes(hash)).unwrap_or(Param::Null),
                Param::Bytes(token_hash),
            ],
        )?;
        Ok(())
    }

    /// Writes an integration's revocation, token expiry, addresses and certificate.
    pub fn update_integration(&mut self, integration: &Integration) -> Result<(), StoreError> {
        let addresses = addresses_text(integration);
        self.conn.execute(
            "UPDATE integrations SET revoked_at = ?, token_expires_at = ?, allowed_addresses = ?, client_certificate_sha256 = ? WHERE id = ?",
            &[
                integration.revoked_at.into(),
                integration.token_expires_at.into(),
                Param::Text(&addresses),
                integration.client_certificate_sha256.as_ref().map(|hash| Param::Bytes(hash)).unwrap_or(Param::Null),
                integration.id.into(),
            ],
        )?;
        Ok(())
    }

    /// Gives an integration a new bearer token (the old one stops working) and its expiry.
    pub fn set_integration_token(
        &mut self,
        integration: IntegrationId,
        token_hash: &[u8; 32],
        expires_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE integrations SET token_hash = ?, token_expires_at = ? WHERE id = ?",
            &[Param::Bytes(token_hash), expires_at.into(), integration.into()],
        )?;
        Ok(())
    }

    /// Every integration, of every organisation: what binding an MLLP connection decides on.
    pub fn all_integrations(&mut self) -> Result<Vec<Integration>, StoreError> {
        self.all(
            concat!("SELECT ", integration_columns!(), " FROM integrations ORDER BY facility"),
            &[],
            integration_from,
        )
    }

    pub fn integration(&mut self, id: IntegrationId) -> Result<Option<Integration>, StoreError> {
        self.one(
            concat!("SELECT ", integration_columns!(), " FROM integrations WHERE id = ?"),
            &[id.into()],
            integration_from,
        )
    }

    pub fn integration_by_facility(&mut self, facility: &str) -> Result<Option<Integration>, StoreError> {
        self.one(
            concat!("SELECT ", integration_columns!(), " FROM integrations WHERE facility = ?"),
            &[Param::Text(facility)],
            integration_from,
        )
    }

    pub fn integration_by_token_hash(&mut self, token_hash: &[u8; 32]) -> Result<Option<Integration>, StoreError> {
        self.one(
            concat!("SELECT ", integration_columns!(), " FROM integrations WHERE token_hash = ?"),
            &[Param::Bytes(token_hash)],
            integration_from,
        )
    }

    pub fn integrations(&mut self, organisation: OrganisationId) -> Result<Vec<Integration>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                integration_columns!(),
                " FROM integrations WHERE organisation_id = ? ORDER BY facility"
            ),
            &[organisation.into()],
            integration_from,
        )
    }

    /// Adds an assigning authority whose PID-3 identifiers are the organisation's local ones.
    pub fn add_assigning_authority(
        &mut self,
        organisation: OrganisationId,
        authority: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO organisation_authorities (organisation_id, authority, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            &[organisation.into(), Param::Text(authority), at.into()],
        )?;
        Ok(())
    }

    pub fn assigning_authorities(&mut self, organisation: OrganisationId) -> Result<Vec<String>, StoreError> {
        self.all(
            "SELECT authority FROM organisation_authorities WHERE organisation_id = ? ORDER BY authority",
            &[organisation.into()],
            |row| Ok(row.text(0)?.to_owned()),
        )
    }

    /// Whether admission and registration ADTs (not only A28/A31) may create records.
    pub fn hl7_create_on_any_adt(&mut self, organisation: OrganisationId) -> Result<bool, StoreError> {
        Ok(self
            .one("SELECT hl7_create_on_any_adt FROM organisations WHERE id = ?", &[organisation.into()], |row| {
                row.bool(0)
            })?
            .unwrap_or(false))
    }

    pub fn set_hl7_create_on_any_adt(&mut self, organisation: OrganisationId, any: bool) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE organisations SET hl7_create_on_any_adt = ? WHERE id = ?",
            &[any.into(), organisation.into()],
        )?;
        Ok(())
    }

    /// The stored message with this key: (organisation, MSH-3, MSH-4, MSH-10).
    pub fn hl7_message_by_key(
        &mut self,
        organisation: OrganisationId,
        sending_application: &str,
        sending_facility: &str,
        control_id: &str,
    ) -> Result<Option<Hl7MessageRecord>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM hl7_messages WHERE organisation_id = ? AND sending_application = ? AND sending_facility = ? AND control_id = ?"
            ),
            &[organisation.into(), Param::Text(sending_application), Param::Text(sending_facility), Param::Text(control_id)],
            message_from,
        )
    }

    pub fn insert_hl7_message(&mut self, message: &NewHl7Message<'_>) -> Result<(), StoreError> {
        let records = message_records(message);
        let mut params = Vec::with_capacity(17);
        message_params(message, &records, &mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO hl7_messages (",
                message_columns!(),
                ", raw, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &params,
        )?;
        Ok(())
    }

    /// Records the outcome of processing a stored message again.
    pub fn update_hl7_message_outcome(
        &mut self,
        record: &Hl7MessageRecord,
        processed_at: Timestamp,
    ) -> Result<(), StoreError> {
        let records = records_text(&record.conflict_records);
        self.conn.execute(
            "UPDATE hl7_messages SET status = ?, ack = ?, error = ?, patient_id = ?, conflict = ?, conflict_records = ?,
             resolution = ?, processed_at = ? WHERE id = ?",
            &[
                record.status.code().into(),
                Param::Text(&record.ack),
                record.error.as_ref().into(),
                record.patient.into(),
                record.conflict.as_ref().into(),
                records.as_ref().into(),
                record.resolution.as_ref().into(),
                processed_at.into(),
                record.id.into(),
            ],
        )?;
        Ok(())
    }

    /// An organisation's stored messages, newest first, optionally of one status.
    pub fn hl7_messages(
        &mut self,
        organisation: OrganisationId,
        status: Option<Hl7MessageStatus>,
        limit: i64,
    ) -> Result<Vec<Hl7MessageRecord>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM hl7_messages WHERE organisation_id = ? AND (? OR status = ?) ORDER BY received_at DESC, id DESC LIMIT ?"
            ),
            &[
                organisation.into(),
                status.is_none().into(),
                status.map_or("", |status| status.code()).into(),
                limit.into(),
            ],
            message_from,
        )
    }

    /// A stored message's raw bytes.
    pub fn hl7_message_raw(&mut self, id: Hl7MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.one("SELECT raw FROM hl7_messages WHERE id = ?", &[id.into()], |row| Ok(row.bytes(0)?.to_vec()))
    }

    pub fn hl7_message(&mut self, id: Hl7MessageId) -> Result<Option<Hl7MessageRecord>, StoreError> {
        self.one(concat!("SELECT ", message_columns!(), " FROM hl7_messages WHERE id = ?"), &[id.into()], message_from)
    }
}

impl Tx<'_> {
    /// Adds (or changes) a rule: data whose `field` (e.g. `PV1-3`) has `value` gets `label`.
    pub fn put_label_rule(
        &mut self,
        organisation: OrganisationId,
        field: &str,
        value: &str,
        label: kith_core::PrivacyLabel,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO label_rules (organisation_id, field, value, label, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (organisation_id, field, value) DO UPDATE SET label = excluded.label, created_at = excluded.created_at",
            &[
                organisation.into(),
                Param::Text(field),
                Param::Text(value),
                Param::Int(i64::from(kith_core::LabelSet::EMPTY.with(label).bits())),
                at.into(),
            ],
        )?;
        Ok(())
    }

    /// An organisation's label rules: (field, value, label).
    pub fn label_rules(
        &mut self,
        organisation: OrganisationId,
    ) -> Result<Vec<(String, String, kith_core::PrivacyLabel)>, StoreError> {
        self.all(
            "SELECT field, value, label FROM label_rules WHERE organisation_id = ? ORDER BY field, value",
            &[organisation.into()],
            |row| {
                let label = u8::try_from(row.int(2)?)
                    .ok()
                    .and_then(kith_core::LabelSet::from_bits)
                    .and_then(|set| set.iter().next())
                    .ok_or_else(|| StoreError::corrupt("stored label rule has no label"))?;
                Ok((row.text(0)?.to_owned(), row.text(1)?.to_owned(), label))
            },
        )
    }
}

impl Tx<'_> {
    /// Where a record stands with organisations, for the matching rule: whether it is in
    /// `organisation` (actively linked to its Patient Record Team), and whether any other
    /// organisation holds part of it (a care link to one of its teams, active or not, or an
    /// entry one of its teams wrote).
    pub fn record_organisations(
        &mut self,
        patient: PatientId,
        organisation: OrganisationId,
    ) -> Result<(bool, bool), StoreError> {
        self.one(
            "SELECT
                EXISTS (SELECT 1 FROM care_links c JOIN teams t ON t.id = c.team_id
                        WHERE c.patient_id = ? AND t.organisation_id = ? AND t.kind = 'patient_record'
                          AND c.discharged_at IS NULL),
                EXISTS (SELECT 1 FROM care_links c JOIN teams t ON t.id = c.team_id
                        WHERE c.patient_id = ? AND t.organisation_id <> ?)
                OR EXISTS (SELECT 1 FROM record_entries e JOIN teams t ON t.id = e.authored_team_id
                        WHERE e.patient_id = ? AND t.organisation_id <> ?)",
            &[
                patient.into(),
                organisation.into(),
                patient.into(),
                organisation.into(),
                patient.into(),
                organisation.into(),
            ],
            |row| Ok((row.bool(0)?, row.bool(1)?)),
        )
        .map(Option::unwrap_or_default)
    }
}

impl Tx<'_> {
    /// Whether any record was merged into this one.
    pub fn has_merged_records(&mut self, survivor: PatientId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM patients WHERE merged_into = ?", &[survivor.into()])
    }
}

/// What a merge moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub identifiers: u64,
    pub care_links: u64,
    pub entries: u64,
}

impl Tx<'_> {
    /// Moves the local identifiers, care links and entries (with their versions, observations
    /// and documents' files) of `merged` to `survivor`. Where both records are linked to a
    /// team, the survivor's link stays and the other is dropped. An entry whose source key
    /// the survivor already uses keeps it with `#merged` and the old record's id appended.
    pub fn move_patient_data(&mut self, merged: PatientId, survivor: PatientId) -> Result<MergeCounts, StoreError> {
        let mut counts = MergeCounts {
            identifiers: self.conn.execute(
                "UPDATE patient_identifiers SET patient_id = ? WHERE patient_id = ?",
                &[survivor.into(), merged.into()],
            )?,
            ..MergeCounts::default()
        };
        self.conn.execute(
            "DELETE FROM care_links WHERE patient_id = ? AND team_id IN (SELECT team_id FROM care_links WHERE patient_id = ?)",
            &[merged.into(), survivor.into()],
        )?;
        counts.care_links = self
            .conn
            .execute("UPDATE care_links SET patient_id = ? WHERE patient_id = ?", &[survivor.into(), merged.into()])?;
        // Entries are keyed (patient_id, id) and their history refers to that key: copy each
        // entry to the survivor, repoint its history, then remove the original.
        let suffix = format!("#merged-{merged}");
        counts.entries = self.conn.execute(
            "INSERT INTO record_entries (id, patient_id, kind, label, authored_team_id, author_account_id, effective_at,
                 recorded_at, title, body, version, status, source_key, source_message_id, ends_at)
             SELECT e.id, ?, e.kind, e.label, e.authored_team_id, e.author_account_id, e.effective_at, e.recorded_at,
                 e.title, e.body, e.version, e.status,
                 CASE WHEN e.source_key IS NOT NULL AND EXISTS (SELECT 1 FROM record_entries s WHERE s.patient_id = ? AND s.authored_team_id = e.authored_team_id AND s.source_key = e.source_key)
                      THEN e.source_key || ? ELSE e.source_key END,
                 e.source_message_id, e.ends_at
             FROM record_entries e WHERE e.patient_id = ?",
            &[survivor.into(), survivor.into(), Param::Text(&suffix), merged.into()],
        )?;
        self.conn.execute(
            "UPDATE record_entry_versions SET patient_id = ? WHERE patient_id = ?",
            &[survivor.into(), merged.into()],
        )?;
        self.conn.execute(
            "UPDATE observations SET patient_id = ? WHERE patient_id = ?",
            &[survivor.into(), merged.into()],
        )?;
        self.conn.execute(
            "UPDATE entry_documents SET patient_id = ? WHERE patient_id = ?",
            &[survivor.into(), merged.into()],
        )?;
        self.conn.execute("DELETE FROM record_entries WHERE patient_id = ?", &[merged.into()])?;
        // Records merged into this one before now resolve to the survivor directly.
        self.conn
            .execute("UPDATE patients SET merged_into = ? WHERE merged_into = ?", &[survivor.into(), merged.into()])?;
        Ok(counts)
    }
}
