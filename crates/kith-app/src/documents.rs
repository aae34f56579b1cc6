//! Documents uploaded to a record (a letter as a PDF, a photograph of one): a `document`
//! entry with its file, written in one transaction.
//!
//! The file belongs to its entry, so the one rule decides both: a professional adds one as
//! any entry is added (`decide_write` for the authoring team, audited `entry.create`), and
//! reads one exactly when they may see the entry (`read_entries_in`, the read every account
//! path shares: the patient's own record, or each of the account's teams through
//! `read_through_scopes`), audited `record.read` with the basis. What the file is comes from
//! its content ([`kith_core::document::sniff_document`]), never from its name or the type
//! the sender declared.

use kith_core::audit::{Actor, Channel, Outcome};
use kith_core::document::{DocumentType, sanitise_file_name, sniff_document};
use kith_core::model::{DocumentFile, Entry};
use kith_core::patient::EntryKind;
use kith_core::text::Title;
use kith_core::{AccountId, Basis, DenyReason, EntryId, PatientId, PrivacyLabel, TeamId, Timestamp};
use kith_store::{Audited, StoreError, Tx};
use sha2::{Digest, Sha256};

use crate::account_access::{EntrySelection, read_entries_in, record_own_entry_in};
use crate::patients::{EntryAuthor, NewEntry, add_entry_in};
use crate::{App, AppError, AppResult, AuditBuilder, ProfessionalContext};

/// A document as its reader receives it: the entry, what the file is and its bytes. Its
/// `Debug` gives the length of the bytes, not the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    pub entry: Entry,
    /// `application/pdf`, `image/png` or `image/jpeg`: what the content is.
    pub media_type: &'static str,
    /// The name it was uploaded under, sanitised
    /// ([`kith_core::document::sanitise_file_name`]).
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The basis on which the reader sees it (as audited).
    pub basis: Basis,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("entry", &self.entry)
            .field("media_type", &self.media_type)
            .field("file_name", &self.file_name)
            .field("bytes", &self.bytes.len())
            .field("basis", &self.basis)
            .finish()
    }
}

impl App {
    /// A professional adds a document (a PDF, PNG or JPEG) to a patient's record through
    /// `team`, which authors it, as [`App::add_entry`] adds any entry: the write is decided
    /// for that team by `decide_write` (an active professional of it, the patient in the
    /// team or under the professional's break-glass grant through it) and audited
    /// `entry.create`; the entry and its file commit together. Bytes that are not such a
    /// document are refused first with [`AppError::Invalid`] and a sentence the uploader can
    /// act on, and nothing is written; a write the rule denies is audited and answered
    /// [`AppError::Denied`].
    #[allow(clippy::too_many_arguments)]
    pub fn add_document_as(
        &self,
        account: AccountId,
        channel: Channel,
        patient: PatientId,
        team: TeamId,
        label: Option<PrivacyLabel>,
        title: Title,
        file_name: &str,
        bytes: &[u8],
    ) -> AppResult<Entry> {
        let (upload, now) = (Upload::check(file_name, bytes)?, self.now());
        let new = NewEntry::document(label, title, now);
        self.store
            .write(|tx| {
                let Some(organisation) = tx.team(team)?.map(|team| team.organisation) else {
                    // No such team: audited like any denied write, without an organisation.
                    tx.audit(
                        AuditBuilder::new(now, Actor::Account(account), channel, "entry.create")
                            .team(team)
                            .patient(patient)
                            .outcome(Outcome::Denied)
                            .reason(DenyReason::NoRelationshipWithPatient)
                            .build(),
                    );
                    return Ok(Err(AppError::Denied));
                };
                let context = ProfessionalContext { account, team, organisation, channel };
                let insert = |tx: &mut Tx<'_>, entry: &Entry| upload.insert(tx, entry, bytes, now);
                add_entry_in(tx, &EntryAuthor::Professional(&context), patient, &new, now, &insert)
            })
            .and_then(|outcome| outcome)
    }

    /// A patient adds a document (a PDF, PNG or JPEG) to their own record, filed as
    /// [`App::record_own_entry`] files their entries: under the Patient Record Team of an
    /// organisation the record is in, with their account as its author, audited
    /// `entry.create` on the basis `self`; teams see it through the labels the patient gave
    /// them. Bytes that are not such a document are refused first with
    /// [`AppError::Invalid`], and nothing is written.
    pub fn add_own_document(
        &self,
        account: AccountId,
        channel: Channel,
        label: Option<PrivacyLabel>,
        title: Title,
        file_name: &str,
        bytes: &[u8],
    ) -> AppResult<Entry> {
        let (upload, now) = (Upload::check(file_name, bytes)?, self.now());
        let new = NewEntry::document(label, title, now);
        self.store
            .write(|tx| {
                let insert = |tx: &mut Tx<'_>, entry: &Entry| upload.insert(tx, entry, bytes, now);
                record_own_entry_in(tx, account, channel, &new, now, &insert)
            })
            .and_then(|outcome| outcome)
    }

    /// A document by its entry's identifier, when the account may see the entry: a
    /// professional through any of their teams under the rule, the patient in their own
    /// record. Audited `record.read` with the basis, as [`App::read_entry_as`]. An entry the
    /// account may not see, one that does not exist and one that is not a document with a
    /// file are the same answer, [`AppError::Denied`].
    pub fn read_document_as(&self, account: AccountId, channel: Channel, entry: EntryId) -> AppResult<Document> {
        self.read_document_then_audit(account, channel, entry)?.wait()?
    }

    /// [`App::read_document_as`] for an async caller: the answer is held until its audit
    /// events are durable, which the caller awaits without blocking ([`Audited::durable`]).
    pub fn read_document_then_audit(
        &self,
        account: AccountId,
        channel: Channel,
        entry: EntryId,
    ) -> AppResult<Audited<AppResult<Document>>> {
        let now = self.now();
        self.store.read_then_audit(|tx| {
            let Some(patient) = tx.entry_patient(entry)? else {
                // Audited like any other denied read, without a patient to file it under.
                tx.audit(
                    AuditBuilder::new(now, Actor::Account(account), channel, "record.read")
                        .outcome(Outcome::Denied)
                        .reason(DenyReason::NoRelationshipWithPatient)
                        .build(),
                );
                return Ok(Err(AppError::Denied));
            };
            let view = match read_entries_in(tx, account, None, channel, patient, EntrySelection::One(entry), now)? {
                Ok(view) => view,
                Err(denied) => return Ok(Err(denied)),
            };
            let Some(visible) = view.entries.into_iter().find(|visible| visible.entry.id == entry) else {
                return Ok(Err(AppError::Denied));
            };
            if visible.entry.kind != EntryKind::Document {
                return Ok(Err(AppError::Denied));
            }
            let Some(file) = tx.entry_document(visible.entry.patient, entry)? else {
                return Ok(Err(AppError::Denied));
            };
            check_integrity(&file)?;
            Ok(Ok(Document {
                entry: visible.entry,
                media_type: file.document_type.media_type(),
                file_name: file.file_name,
                bytes: file.content,
                basis: visible.basis,
            }))
        })
    }
}

/// A stored file is what was uploaded: its SHA-256 still matches, and its content is still
/// what its type says (a file changed in the database is never served as something else).
fn check_integrity(file: &DocumentFile) -> AppResult<()> {
    let sha256: [u8; 32] = Sha256::digest(&file.content).into();
    if sha256 != file.sha256 || sniff_document(&file.content) != Ok(file.document_type) {
        return Err(AppError::Store(StoreError::corrupt("a stored document does not match its SHA-256 or its type")));
    }
    Ok(())
}

/// An upload that passed [`sniff_document`]: what it is, the name it is kept under and its
/// SHA-256, worked out once, before the transaction.
struct Upload {
    document_type: DocumentType,
    file_name: String,
    sha256: [u8; 32],
}

impl Upload {
    /// Refuses bytes that are not a document Kith takes, with the refusal's own sentence.
    fn check(file_name: &str, bytes: &[u8]) -> AppResult<Self> {
        let document_type = sniff_document(bytes).map_err(|refusal| AppError::Invalid(refusal.to_string()))?;
        Ok(Self { document_type, file_name: sanitise_file_name(file_name), sha256: Sha256::digest(bytes).into() })
    }

    /// Writes `entry` with this file.
    fn insert(&self, tx: &mut Tx<'_>, entry: &Entry, bytes: &[u8], now: Timestamp) -> AppResult<()> {
        let file = DocumentFile {
            document_type: self.document_type,
            file_name: self.file_name.clone(),
            sha256: self.sha256,
            content: bytes.to_vec(),
            created_at: now,
        };
        Ok(tx.insert_document_entry(entry, &file)?)
    }
}
