//! Results (ORU), documents (MDM) and appointments (SIU), filed under the organisation's
//! Patient Record Team, every version kept.

use kith_core::audit::Channel;
use kith_core::model::{Entry, EntryStatus, Observation, Patient};
use kith_core::patient::EntryKind;
use kith_core::text::Title;
use kith_core::{EntryId, PrivacyLabel, Timestamp};
use kith_hl7::clinical;
use kith_hl7::events::{AppointmentAction, DocumentAction};
use kith_store::Tx;

use super::feed::Filing;
use super::stop::{Applied, Stop};
use crate::{AppError, AuditBuilder, new_uuid};

/// An entry as a message describes it.
pub(crate) struct Draft<'a> {
    pub(crate) kind: EntryKind,
    pub(crate) label: PrivacyLabel,
    pub(crate) title: &'a str,
    pub(crate) body: String,
    pub(crate) effective_at: Timestamp,
    /// When the entry's period ends (an appointment's end), if the message says.
    pub(crate) ends_at: Option<Timestamp>,
    pub(crate) status: EntryStatus,
    pub(crate) source_key: &'a str,
}

/// Files an entry authored by the organisation's Patient Record Team: a new version of
/// `existing` (found under the organisation's own source key; the earlier version kept, a
/// sensitive label kept), or a new entry.
pub(crate) fn file_entry(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    patient: &Patient,
    existing: Option<Entry>,
    draft: &Draft<'_>,
    observations: Option<&[Observation]>,
) -> Result<(), Stop> {
    let prt = &filing.facts.prt;
    let existing = match existing {
        Some(existing) => Some(existing),
        None => tx.entry_by_source_key(patient.id, prt.id, draft.source_key)?,
    };
    let title: String = draft.title.chars().take(300).collect();
    let title = Title::parse(&title).or_else(|_| Title::parse("Untitled")).map_err(AppError::from)?;
    let (entry, action) = match existing {
        Some(existing) => {
            let entry = Entry {
                kind: draft.kind,
                label: Some(PrivacyLabel::of_new_version(existing.label, draft.label)),
                title,
                body: draft.body.clone(),
                effective_at: draft.effective_at,
                recorded_at: filing.now,
                version: existing.version + 1,
                status: Some(draft.status),
                source_key: Some(draft.source_key.to_owned()),
                source_message: Some(filing.message),
                ends_at: draft.ends_at,
                ..existing
            };
            tx.replace_entry(&entry)?;
            (entry, "entry.update")
        }
        None => {
            let entry = Entry {
                id: EntryId::from_uuid(new_uuid()),
                patient: patient.id,
                kind: draft.kind,
                label: Some(draft.label),
                authored_by: prt.id,
                author_account: None,
                effective_at: draft.effective_at,
                recorded_at: filing.now,
                title,
                body: draft.body.clone(),
                version: 1,
                status: Some(draft.status),
                source_key: Some(draft.source_key.to_owned()),
                source_message: Some(filing.message),
                ends_at: draft.ends_at,
            };
            tx.insert_entry(&entry)?;
            (entry, "entry.create")
        }
    };
    if let Some(observations) = observations {
        tx.insert_observations(patient.id, entry.id, entry.version, observations)?;
    }
    crate::patients::notify_new_entries(tx, patient, filing.now)?;
    let label = entry.label.unwrap_or(draft.label);
    tx.audit(
        AuditBuilder::new(filing.now, filing.actor.clone(), Channel::Hl7, action)
            .organisation(filing.facts.organisation.id)
            .team(prt.id)
            .patient(patient.id)
            .basis("administration")
            .data(entry.kind.code().to_owned(), kith_core::LabelSet::EMPTY.with(label))
            .subject(format!("{} v{}", entry.id, entry.version))
            .build(),
    );
    Ok(())
}

/// MDM: files, adds to, replaces or cancels a document, keeping every version.
pub(crate) fn apply_document(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    patient: &Patient,
    document: &clinical::DocumentMessage,
    what: DocumentAction,
) -> Result<Applied, Stop> {
    let prt = filing.facts.prt.id;
    let rules = &filing.facts.label_rules;
    let kind = if document.is_care_plan() { EntryKind::CarePlan } else { EntryKind::Document };
    // An addendum or a replacement is for the parent document (TXA-13) when Kith has it.
    let parent = match (&document.parent_key, what) {
        (Some(parent), DocumentAction::Addendum | DocumentAction::Replace) => {
            tx.entry_by_source_key(patient.id, prt, parent)?
        }
        _ => None,
    };
    let target = match parent {
        Some(parent) => Some(parent),
        None => tx.entry_by_source_key(patient.id, prt, &document.source_key)?,
    };
    let mut draft = Draft {
        kind,
        label: document.label(rules),
        title: &document.title,
        body: document.body.clone(),
        effective_at: document.effective_at,
        ends_at: None,
        status: document.status,
        source_key: &document.source_key,
    };
    match (what, target) {
        (DocumentAction::Cancel, None) => {
            return Ok(Applied::about(
                patient.id,
                vec![format!(
                    "TXA-12: there is no document {} to cancel",
                    document.source_key.trim_start_matches("MDM:")
                )],
            ));
        }
        (DocumentAction::Cancel, Some(existing)) => {
            let (title, key) = (existing.title.as_str().to_owned(), existing.source_key.clone());
            let cancelled = Draft {
                kind: existing.kind,
                label: existing.label.unwrap_or(draft.label),
                title: &title,
                body: existing.body.clone(),
                effective_at: existing.effective_at,
                ends_at: existing.ends_at,
                status: EntryStatus::Cancelled,
                source_key: key.as_deref().unwrap_or(&document.source_key),
            };
            file_entry(tx, filing, patient, Some(existing), &cancelled, None)?;
        }
        (DocumentAction::Addendum, Some(existing)) => {
            draft.body =
                format!("{}\n\nAddendum ({}):\n{}", existing.body, document.effective_at.date(), document.body);
            let title = existing.title.as_str().to_owned();
            let key = existing.source_key.clone().unwrap_or_else(|| document.source_key.clone());
            let addendum = Draft { title: &title, kind: existing.kind, source_key: &key, ..draft };
            file_entry(tx, filing, patient, Some(existing), &addendum, None)?;
        }
        // A replacement takes on the new document number, so that the next one finds it —
        // unless another document has that number already (then it keeps its own).
        (_, existing) => {
            let mut notices = Vec::new();
            let kept_key;
            if let Some(target) = &existing
                && target.source_key.as_deref() != Some(draft.source_key)
                && tx.entry_by_source_key(patient.id, prt, draft.source_key)?.is_some_and(|other| other.id != target.id)
            {
                kept_key = target.source_key.clone().unwrap_or_default();
                draft.source_key = &kept_key;
                notices.push(format!(
                    "TXA-12: another document has the number {}",
                    document.source_key.trim_start_matches("MDM:")
                ));
            }
            file_entry(tx, filing, patient, existing, &draft, None)?;
            return Ok(Applied::about(patient.id, notices));
        }
    }
    Ok(Applied::about(patient.id, Vec::new()))
}

/// SIU: books, changes, cancels or marks an appointment not attended, keeping every version.
pub(crate) fn apply_appointment(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    patient: &Patient,
    appointment: &clinical::AppointmentMessage,
    what: AppointmentAction,
) -> Result<Applied, Stop> {
    let rules = &filing.facts.label_rules;
    let status = match what {
        // A change also makes a cancelled appointment active again.
        AppointmentAction::Book | AppointmentAction::Change => EntryStatus::Booked,
        AppointmentAction::Cancel | AppointmentAction::Delete => EntryStatus::Cancelled,
        AppointmentAction::NoShow => EntryStatus::NoShow,
    };
    let existing = tx.entry_by_source_key(patient.id, filing.facts.prt.id, &appointment.source_key)?;
    if what == AppointmentAction::Delete && existing.is_none() {
        // Nothing Kith filed: nothing to keep.
        return Ok(Applied::about(patient.id, Vec::new()));
    }
    let mut body = appointment.body.clone();
    if what == AppointmentAction::Delete {
        body = format!("{body}\nThe sender deleted this appointment (SIU^S17); Kith keeps it, cancelled.")
            .trim()
            .to_owned();
    }
    // An unknown appointment cancelled is filed already cancelled.
    let draft = Draft {
        kind: EntryKind::Appointment,
        label: appointment.label(rules),
        title: &appointment.title,
        body,
        effective_at: appointment.start,
        ends_at: appointment.end,
        status,
        source_key: &appointment.source_key,
    };
    file_entry(tx, filing, patient, existing, &draft, None)?;
    Ok(Applied::about(patient.id, Vec::new()))
}
