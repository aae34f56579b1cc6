//! Queries for the uploaded files of `document` entries (`entry_documents`). A file is
//! written with its entry, in the same transaction, and read back by the entry's key; who
//! may read it is decided, as for the entry, before these are called.

use kith_core::document::DocumentType;
use kith_core::model::{DocumentFile, Entry};
use kith_core::patient::EntryKind;
use kith_core::{EntryId, PatientId};

use super::rows::{coded, corrupt};
use super::transaction::Tx;
use crate::error::{StoreError, StoreErrorKind};
use crate::value::Param;

impl Tx<'_> {
    /// Writes a `document` entry and its file. Any other kind of entry is refused: only a
    /// document holds a file.
    pub fn insert_document_entry(&mut self, entry: &Entry, document: &DocumentFile) -> Result<(), StoreError> {
        if entry.kind != EntryKind::Document {
            return Err(StoreError::new(
                StoreErrorKind::Database,
                format!("only a document entry holds a file, not a {} entry", entry.kind.code()),
            ));
        }
        self.insert_entry(entry)?;
        let size = i64::try_from(document.content.len())
            .map_err(|_| StoreError::new(StoreErrorKind::Database, "the document is too large to store"))?;
        self.conn.execute(
            "INSERT INTO entry_documents (patient_id, entry_id, media_type, file_name, size, sha256, content, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                entry.patient.into(),
                entry.id.into(),
                Param::Text(document.document_type.media_type()),
                Param::Text(&document.file_name),
                Param::Int(size),
                Param::Bytes(&document.sha256),
                Param::Bytes(&document.content),
                document.created_at.into(),
            ],
        )?;
        Ok(())
    }

    /// The file of the patient's entry, when the entry has one.
    pub fn entry_document(&mut self, patient: PatientId, entry: EntryId) -> Result<Option<DocumentFile>, StoreError> {
        self.one(
            "SELECT media_type, file_name, sha256, content, created_at FROM entry_documents
             WHERE patient_id = ? AND entry_id = ?",
            &[patient.into(), entry.into()],
            |row| {
                Ok(DocumentFile {
                    document_type: coded("document media type", row.text(0)?, DocumentType::from_media_type)?,
                    file_name: row.text(1)?.to_owned(),
                    sha256: row.bytes(2)?.try_into().map_err(corrupt("document SHA-256"))?,
                    content: row.bytes(3)?.to_vec(),
                    created_at: row.timestamp(4)?,
                })
            },
        )
    }

    /// What the patient's documents' files are (not their content): entry, type, file name
    /// and size, for the entries a read shows.
    pub fn document_summaries(
        &mut self,
        patient: PatientId,
    ) -> Result<Vec<(EntryId, DocumentType, String, i64)>, StoreError> {
        self.all(
            "SELECT entry_id, media_type, file_name, size FROM entry_documents WHERE patient_id = ?",
            &[patient.into()],
            |row| {
                Ok((
                    EntryId::from_uuid(row.uuid(0)?),
                    coded("document media type", row.text(1)?, DocumentType::from_media_type)?,
                    row.text(2)?.to_owned(),
                    row.int(3)?,
                ))
            },
        )
    }
}
