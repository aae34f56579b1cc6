//! Queries for record entries, their versions and their observations; and the entry
//! filter: a [`RecordScope`] compiled into SQL.

use kith_core::access::RecordScope;
use kith_core::model::*;
use kith_core::patient::EntryKind;
use kith_core::*;

use super::rows::{entry_columns, entry_from, label_bit};
use super::transaction::Tx;
use crate::error::{StoreError, StoreErrorKind};
use crate::value::Param;

impl Tx<'_> {
    // ----- record entries ----------------------------------------------------------------

    pub fn insert_entry(&mut self, entry: &Entry) -> Result<(), StoreError> {
        self.conn.execute(
            concat!(
                "INSERT INTO record_entries (",
                entry_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            &[
                entry.id.into(),
                entry.patient.into(),
                entry.kind.code().into(),
                entry.label.map(label_bit).into(),
                entry.authored_by.into(),
                entry.author_account.into(),
                entry.effective_at.into(),
                entry.recorded_at.into(),
                entry.title.as_str().into(),
                Param::Text(&entry.body),
                entry.version.into(),
                entry.status.map(EntryStatus::code).into(),
                entry.source_key.as_ref().into(),
                entry.source_message.into(),
                entry.ends_at.into(),
            ],
        )?;
        Ok(())
    }

    /// The entry a feed filed under `source_key` for this patient, written by `team` (a
    /// feed's numbers are its organisation's: the key is looked up among the entries of that
    /// organisation's Patient Record Team only).
    pub fn entry_by_source_key(
        &mut self,
        patient: PatientId,
        team: TeamId,
        source_key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        self.one(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ? AND authored_team_id = ? AND source_key = ?"
            ),
            &[patient.into(), team.into(), Param::Text(source_key)],
            entry_from,
        )
    }

    /// Replaces an entry's content with a new version, keeping the current one in the
    /// entry's history first. `entry.version` must be the stored version plus one.
    pub fn replace_entry(&mut self, entry: &Entry) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO record_entry_versions (patient_id, entry_id, version, kind, label, title, body, status, effective_at, recorded_at, source_message_id, ends_at)
             SELECT patient_id, id, version, kind, label, title, body, status, effective_at, recorded_at, source_message_id, ends_at
             FROM record_entries WHERE patient_id = ? AND id = ? AND version = ?",
            &[entry.patient.into(), entry.id.into(), (entry.version - 1).into()],
        )?;
        let changed = self.conn.execute(
            "UPDATE record_entries SET kind = ?, label = ?, title = ?, body = ?, status = ?, effective_at = ?, recorded_at = ?,
             source_message_id = ?, ends_at = ?, source_key = ?, version = ? WHERE patient_id = ? AND id = ? AND version = ?",
            &[
                entry.kind.code().into(),
                entry.label.map(label_bit).into(),
                entry.title.as_str().into(),
                Param::Text(&entry.body),
                entry.status.map(EntryStatus::code).into(),
                entry.effective_at.into(),
                entry.recorded_at.into(),
                entry.source_message.into(),
                entry.ends_at.into(),
                entry.source_key.as_ref().into(),
                entry.version.into(),
                entry.patient.into(),
                entry.id.into(),
                (entry.version - 1).into(),
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::new(StoreErrorKind::Conflict, "the entry changed while it was being replaced"));
        }
        Ok(())
    }

    /// Gives an entry of the patient's record, and each of its earlier versions, a new label
    /// (`None`: no label). Whether the record has the entry.
    pub fn relabel_entry(
        &mut self,
        patient: PatientId,
        entry: EntryId,
        label: Option<PrivacyLabel>,
    ) -> Result<bool, StoreError> {
        let bit = label.map(label_bit);
        let changed = self.conn.execute(
            "UPDATE record_entries SET label = ? WHERE patient_id = ? AND id = ?",
            &[bit.into(), patient.into(), entry.into()],
        )?;
        self.conn.execute(
            "UPDATE record_entry_versions SET label = ? WHERE patient_id = ? AND entry_id = ?",
            &[bit.into(), patient.into(), entry.into()],
        )?;
        Ok(changed == 1)
    }

    /// An entry's earlier versions, oldest first (the current one is the entry itself).
    pub fn entry_history(&mut self, patient: PatientId, entry: EntryId) -> Result<Vec<Entry>, StoreError> {
        self.all(
            "SELECT v.entry_id, v.patient_id, v.kind, v.label, e.authored_team_id, e.author_account_id, v.effective_at,
                    v.recorded_at, v.title, v.body, v.version, v.status, e.source_key, v.source_message_id, v.ends_at
             FROM record_entry_versions v JOIN record_entries e ON e.patient_id = v.patient_id AND e.id = v.entry_id
             WHERE v.patient_id = ? AND v.entry_id = ? ORDER BY v.version",
            &[patient.into(), entry.into()],
            entry_from,
        )
    }

    /// The earlier versions of every entry of the patient's record, by entry and version.
    pub fn patient_entry_history(&mut self, patient: PatientId) -> Result<Vec<Entry>, StoreError> {
        self.all(
            "SELECT v.entry_id, v.patient_id, v.kind, v.label, e.authored_team_id, e.author_account_id, v.effective_at,
                    v.recorded_at, v.title, v.body, v.version, v.status, e.source_key, v.source_message_id, v.ends_at
             FROM record_entry_versions v JOIN record_entries e ON e.patient_id = v.patient_id AND e.id = v.entry_id
             WHERE v.patient_id = ? ORDER BY v.entry_id, v.version",
            &[patient.into()],
            entry_from,
        )
    }

    /// Writes the observations of one version of a result.
    pub fn insert_observations(
        &mut self,
        patient: PatientId,
        entry: EntryId,
        version: i64,
        observations: &[Observation],
    ) -> Result<(), StoreError> {
        for (seq, observation) in observations.iter().enumerate() {
            self.conn.execute(
                "INSERT INTO observations (patient_id, entry_id, version, seq, code, code_system, name, value_type, value, units,
                 reference_range, flags, status, observed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    patient.into(),
                    entry.into(),
                    version.into(),
                    Param::Int(seq as i64 + 1),
                    Param::Text(&observation.code),
                    Param::Text(&observation.code_system),
                    Param::Text(&observation.name),
                    Param::Text(&observation.value_type),
                    Param::Text(&observation.value),
                    Param::Text(&observation.units),
                    Param::Text(&observation.reference_range),
                    Param::Text(&observation.flags),
                    Param::Text(&observation.status),
                    observation.observed_at.into(),
                ],
            )?;
        }
        Ok(())
    }

    /// The observations of one version of a result, in order.
    pub fn observations(
        &mut self,
        patient: PatientId,
        entry: EntryId,
        version: i64,
    ) -> Result<Vec<Observation>, StoreError> {
        self.all(
            "SELECT code, code_system, name, value_type, value, units, reference_range, flags, status, observed_at
             FROM observations WHERE patient_id = ? AND entry_id = ? AND version = ? ORDER BY seq",
            &[patient.into(), entry.into(), version.into()],
            |row| {
                Ok(Observation {
                    code: row.text(0)?.to_owned(),
                    code_system: row.text(1)?.to_owned(),
                    name: row.text(2)?.to_owned(),
                    value_type: row.text(3)?.to_owned(),
                    value: row.text(4)?.to_owned(),
                    units: row.text(5)?.to_owned(),
                    reference_range: row.text(6)?.to_owned(),
                    flags: row.text(7)?.to_owned(),
                    status: row.text(8)?.to_owned(),
                    observed_at: row.opt_timestamp(9)?,
                })
            },
        )
    }

    /// The observations of all the patient's results, each with its entry and version, in
    /// order: one query for a whole record (callers keep those of the versions they show).
    pub fn patient_observations(&mut self, patient: PatientId) -> Result<Vec<(EntryId, i64, Observation)>, StoreError> {
        self.all(
            "SELECT entry_id, version, code, code_system, name, value_type, value, units, reference_range, flags, status, observed_at
             FROM observations WHERE patient_id = ? ORDER BY entry_id, version, seq",
            &[patient.into()],
            |row| {
                Ok((
                    EntryId::from_uuid(row.uuid(0)?),
                    row.int(1)?,
                    Observation {
                        code: row.text(2)?.to_owned(),
                        code_system: row.text(3)?.to_owned(),
                        name: row.text(4)?.to_owned(),
                        value_type: row.text(5)?.to_owned(),
                        value: row.text(6)?.to_owned(),
                        units: row.text(7)?.to_owned(),
                        reference_range: row.text(8)?.to_owned(),
                        flags: row.text(9)?.to_owned(),
                        status: row.text(10)?.to_owned(),
                        observed_at: row.opt_timestamp(11)?,
                    },
                ))
            },
        )
    }

    /// How many of the patient's entries are of these kinds.
    pub fn count_entries_of_kinds(&mut self, patient: PatientId, kinds: &[EntryKind]) -> Result<i64, StoreError> {
        if let [kind] = kinds {
            return Ok(self
                .one(
                    "SELECT COUNT(*) FROM record_entries WHERE patient_id = ? AND kind = ?",
                    &[patient.into(), kind.code().into()],
                    |row| row.int(0),
                )?
                .unwrap_or(0));
        }
        // Several kinds: one pass over the patient's entries rather than one per kind.
        let counts = self.all(
            "SELECT kind, COUNT(*) FROM record_entries WHERE patient_id = ? GROUP BY kind",
            &[patient.into()],
            |row| Ok((row.text(0)?.to_owned(), row.int(1)?)),
        )?;
        Ok(counts.iter().filter(|(code, _)| kinds.iter().any(|kind| kind.code() == code)).map(|(_, count)| count).sum())
    }

    /// The patient's entries that `scope` admits, newest first: the access rule compiled
    /// into the `WHERE` clause.
    pub fn entries_in_scope(&mut self, patient: PatientId, scope: &RecordScope) -> Result<Vec<Entry>, StoreError> {
        let RecordScope::Visible { team, consented, own_team_data, break_glass, .. } = *scope else {
            return Ok(Vec::new());
        };
        self.all(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ?
                  AND (? OR (label & ?) <> 0 OR (label IS NULL AND ?) OR (? AND authored_team_id = ?))
                  ORDER BY effective_at DESC, id"
            ),
            &[
                patient.into(),
                break_glass.is_some().into(),
                Param::Int(i64::from(consented.bits())),
                consented.is_all().into(),
                own_team_data.into(),
                team.into(),
            ],
            entry_from,
        )
    }

    /// All of a patient's entries, newest first (the patient's own view).
    pub fn entries(&mut self, patient: PatientId) -> Result<Vec<Entry>, StoreError> {
        self.all(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM record_entries WHERE patient_id = ? ORDER BY effective_at DESC, id"
            ),
            &[patient.into()],
            entry_from,
        )
    }

    /// Whether the patient's record holds this entry.
    pub fn entry_exists(&mut self, patient: PatientId, entry: EntryId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM record_entries WHERE patient_id = ? AND id = ?", &[patient.into(), entry.into()])
    }

    /// Whose record holds this entry.
    pub fn entry_patient(&mut self, entry: EntryId) -> Result<Option<PatientId>, StoreError> {
        self.one("SELECT patient_id FROM record_entries WHERE id = ?", &[entry.into()], |row| {
            Ok(PatientId::from_uuid(row.uuid(0)?))
        })
    }

    /// How many entries the patient's record holds.
    pub fn count_entries(&mut self, patient: PatientId) -> Result<i64, StoreError> {
        Ok(self
            .one("SELECT COUNT(*) FROM record_entries WHERE patient_id = ?", &[patient.into()], |row| row.int(0))?
            .unwrap_or(0))
    }
}
