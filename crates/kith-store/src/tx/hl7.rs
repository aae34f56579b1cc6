//! Queries for HL7 feeds: integrations, assigning authorities, stored messages.

use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration};
use kith_core::text::Name;
use kith_core::{Hl7MessageId, IntegrationId, OrganisationId, PatientId, Timestamp};

use super::{coded, corrupt};
use crate::{Param, Row, StoreError, Tx};

macro_rules! integration_columns {
    () => {
        "id, organisation_id, name, facility, created_at"
    };
}
macro_rules! message_columns {
    () => {
        "id, organisation_id, integration_id, sending_application, sending_facility, control_id, message_type, status, ack, error, patient_id, received_at"
    };
}
pub(super) use message_columns;

fn integration_from(row: &Row) -> Result<Integration, StoreError> {
    Ok(Integration {
        id: IntegrationId::from_uuid(row.uuid(0)?),
        organisation: OrganisationId::from_uuid(row.uuid(1)?),
        name: Name::parse("name", row.text(2)?).map_err(corrupt("integration name"))?,
        facility: row.text(3)?.to_owned(),
        created_at: row.timestamp(4)?,
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
    })
}

/// A message to store, with what became of it.
#[derive(Clone, Debug)]
pub struct NewHl7Message<'a> {
    pub record: &'a Hl7MessageRecord,
    pub raw: &'a [u8],
    pub processed_at: Timestamp,
}

/// A stored message's values, in the order of `message_columns!()`, then `raw, processed_at`.
pub(super) fn message_params<'m>(message: &NewHl7Message<'m>, params: &mut Vec<Param<'m>>) {
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
        Param::Bytes(message.raw),
        message.processed_at.into(),
    ]);
}

impl Tx<'_> {
    pub fn insert_integration(&mut self, integration: &Integration, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.conn.execute(
            concat!("INSERT INTO integrations (", integration_columns!(), ", token_hash) VALUES (?, ?, ?, ?, ?, ?)"),
            &[
                integration.id.into(),
                integration.organisation.into(),
                integration.name.as_str().into(),
                Param::Text(&integration.facility),
                integration.created_at.into(),
                Param::Bytes(token_hash),
            ],
        )?;
        Ok(())
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
        let mut params = Vec::with_capacity(14);
        message_params(message, &mut params);
        self.conn.execute(
            concat!(
                "INSERT INTO hl7_messages (",
                message_columns!(),
                ", raw, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
        self.conn.execute(
            "UPDATE hl7_messages SET status = ?, ack = ?, error = ?, patient_id = ?, processed_at = ? WHERE id = ?",
            &[
                record.status.code().into(),
                Param::Text(&record.ack),
                record.error.as_ref().into(),
                record.patient.into(),
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

/// What a merge moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub identifiers: u64,
    pub care_links: u64,
    pub entries: u64,
}

impl Tx<'_> {
    /// Moves the local identifiers, care links and entries (with their versions and
    /// observations) of `merged` to `survivor`. Where both records are linked to a team,
    /// the survivor's link stays and the other is dropped. An entry whose source key the
    /// survivor already uses keeps it with `#merged` and the old record's id appended.
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
                 CASE WHEN e.source_key IS NOT NULL AND EXISTS (SELECT 1 FROM record_entries s WHERE s.patient_id = ? AND s.source_key = e.source_key)
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
        self.conn.execute("DELETE FROM record_entries WHERE patient_id = ?", &[merged.into()])?;
        // Records merged into this one before now resolve to the survivor directly.
        self.conn
            .execute("UPDATE patients SET merged_into = ? WHERE merged_into = ?", &[survivor.into(), merged.into()])?;
        Ok(counts)
    }
}
