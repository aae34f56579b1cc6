//! The data-quality staff's queue: stored and held messages, reprocessing, and resolving a
//! held message as a person decided.

use kith_core::audit::Channel;
use kith_core::identity::ResolutionKind;
use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Organisation};
use kith_core::text::{OrganisationCode, Reason};
use kith_core::{Hl7MessageId, PatientId};
use kith_store::Tx;

use super::feed::{FeedCache, Override};
use super::ingest::{Ingested, NOT_APPLIED, process};
use super::reading::Reading;
use crate::organisations::organisation_by_code;
use crate::{App, AppError, AppResult, AuditBuilder, Operator};

/// How a person resolves a held message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Apply it to this record (one of the records the conflict names): the person confirms
    /// who the message is about. A record's NHS number is still never changed.
    ApplyTo(PatientId),
    /// Apply it as the rule would without the field that conflicts: without the NHS number
    /// when identifiers disagree, without the name and birth date changes otherwise.
    ApplyWithoutConflictingField,
    /// Do not apply it.
    Reject(Reason),
}

impl Resolution {
    fn kind(&self) -> ResolutionKind {
        match self {
            Resolution::ApplyTo(_) => ResolutionKind::ApplyToRecord,
            Resolution::ApplyWithoutConflictingField => ResolutionKind::ApplyWithoutField,
            Resolution::Reject(_) => ResolutionKind::Reject,
        }
    }
}

/// The resolutions a held message's conflict code allows.
pub fn resolutions_for(conflict: &str) -> &'static [ResolutionKind] {
    use ResolutionKind::*;
    match conflict {
        "identifiers_disagree" | "nhs_number_differs" | "demographics_disagree" => {
            &[ApplyToRecord, ApplyWithoutField, Reject]
        }
        "shared_record_change" => &[ApplyWithoutField, Reject],
        "not_the_same_person" => &[ApplyToRecord, Reject],
        _ => &[Reject],
    }
}

/// A stored message of the organisation, or "not found" (another organisation's is not
/// found either).
fn stored_message(tx: &mut Tx<'_>, organisation: &Organisation, id: Hl7MessageId) -> AppResult<Hl7MessageRecord> {
    tx.hl7_message(id)?
        .filter(|record| record.organisation == organisation.id)
        .ok_or_else(|| AppError::NotFound(format!("organisation {} has no stored message {id}", organisation.code)))
}

impl App {
    /// Processes a stored message again (after a label rule, a team or a patient was added,
    /// or the data a held message conflicted with was corrected): applied as if it had just
    /// arrived, its stored status and ACK replaced, audited as the operator. Accepted
    /// messages cannot be reprocessed.
    pub fn reprocess_hl7(&self, operator: &Operator, code: &OrganisationCode, id: Hl7MessageId) -> AppResult<Ingested> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let mut record = stored_message(tx, &organisation, id)?;
            if record.status == Hl7MessageStatus::Accepted {
                return Err(AppError::Conflict(format!("message {id} was accepted; there is nothing to reprocess")));
            }
            let raw = tx.hl7_message_raw(id)?.ok_or_else(|| AppError::NotFound(format!("no stored message {id}")))?;
            let reading = Reading::of(&raw);
            let mut cache = FeedCache::default();
            let outcome =
                process(tx, &mut cache, &reading, organisation.id, &operator.actor(), id, Override::None, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "hl7.reprocess")
                    .organisation(organisation.id)
                    .subject(id)
                    .reason(format!("{} -> {}", record.status, outcome.status))
                    .basis("administration")
                    .build(),
            );
            outcome.write_to(&mut record);
            tx.update_hl7_message_outcome(&record, now)?;
            Ok(Ingested {
                ack: outcome.ack,
                code: outcome.code,
                message: Some(id),
                duplicate: false,
                status: Some(outcome.status),
            })
        })
    }

    /// An organisation's held messages, oldest first: what its data-quality staff resolve.
    pub fn held_hl7_messages(&self, code: &OrganisationCode, limit: i64) -> AppResult<Vec<Hl7MessageRecord>> {
        let mut held = self.hl7_messages(code, Some(Hl7MessageStatus::Held), limit)?;
        held.reverse();
        Ok(held)
    }

    /// Resolves a held message as a person decided: applied to a chosen record, applied
    /// without the conflicting field, or rejected. The message's stored ACK (what the sender
    /// was told) stays; its status becomes accepted or rejected; the decision is audited. A
    /// resolution that would still conflict, or that the message's conflict does not allow,
    /// is refused and changes nothing.
    pub fn resolve_held_hl7(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        id: Hl7MessageId,
        resolution: &Resolution,
    ) -> AppResult<Hl7MessageRecord> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let mut record = stored_message(tx, &organisation, id)?;
            if record.status != Hl7MessageStatus::Held {
                return Err(AppError::Conflict(format!("message {id} is {}, not held", record.status)));
            }
            let conflict = record.conflict.clone().unwrap_or_else(|| NOT_APPLIED.to_owned());
            let allowed = resolutions_for(&conflict);
            if !allowed.contains(&resolution.kind()) {
                return Err(AppError::Invalid(format!(
                    "a {conflict} conflict is resolved by {}",
                    allowed.iter().map(|kind| kind.code()).collect::<Vec<_>>().join(" or ")
                )));
            }
            let decided = match resolution {
                Resolution::Reject(reason) => {
                    record.status = Hl7MessageStatus::Rejected;
                    format!("rejected by {}: {}", operator.name, reason.as_str())
                }
                Resolution::ApplyTo(_) | Resolution::ApplyWithoutConflictingField => {
                    let how = match resolution {
                        Resolution::ApplyTo(patient) => {
                            if !record.conflict_records.contains(patient) {
                                return Err(AppError::Invalid(format!(
                                    "record {patient} is not one of the held message's records ({})",
                                    record
                                        .conflict_records
                                        .iter()
                                        .map(ToString::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )));
                            }
                            Override::ApplyTo(*patient)
                        }
                        _ => Override::WithoutConflictingField,
                    };
                    let raw =
                        tx.hl7_message_raw(id)?.ok_or_else(|| AppError::NotFound(format!("no stored message {id}")))?;
                    let reading = Reading::of(&raw);
                    let mut cache = FeedCache::default();
                    let outcome = process(tx, &mut cache, &reading, organisation.id, &operator.actor(), id, how, now)?;
                    if outcome.status != Hl7MessageStatus::Accepted {
                        return Err(AppError::Conflict(format!(
                            "the message still cannot be applied: {}",
                            outcome.error.unwrap_or_default()
                        )));
                    }
                    record.status = Hl7MessageStatus::Accepted;
                    record.patient = outcome.patient;
                    record.error = outcome.error;
                    match resolution {
                        Resolution::ApplyTo(patient) => format!("applied to record {patient} by {}", operator.name),
                        _ => format!("applied without the conflicting field by {}", operator.name),
                    }
                }
            };
            record.resolution = Some(decided.clone());
            tx.update_hl7_message_outcome(&record, now)?;
            let mut event = AuditBuilder::new(now, operator.actor(), Channel::Cli, "hl7.resolve")
                .organisation(organisation.id)
                .subject(id)
                .reason(decided)
                .basis("administration");
            // Applied, it wrote to a record: the patient's access log shows it.
            if let Some(patient) = record.patient.filter(|_| record.status == Hl7MessageStatus::Accepted) {
                event = event.patient(patient);
            }
            tx.audit(event.build());
            Ok(record)
        })
    }

    /// An organisation's stored messages, newest first.
    pub fn hl7_messages(
        &self,
        code: &OrganisationCode,
        status: Option<Hl7MessageStatus>,
        limit: i64,
    ) -> AppResult<Vec<Hl7MessageRecord>> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            Ok(tx.hl7_messages(organisation.id, status, limit.clamp(1, 10_000))?)
        })
    }
}
