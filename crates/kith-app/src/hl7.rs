//! HL7 v2 feeds: ingesting one message — attributed to the integration its credentials
//! name, checked for a repeat, applied, stored with its acknowledgement, all in one
//! transaction, so that the ACK the sender receives is only ever sent after everything it
//! acknowledges is committed — and the data-quality staff's queue of held messages.
//!
//! What a message does is decided by the events table (`kith_hl7::events`) and the
//! matching rule (`kith_core::identity`), applied in [`crate::hl7_apply`]. An answer is
//! never `AE` for a message Kith could store: a message the rule cannot apply safely, or
//! that fails inside Kith for a reason a resend would not cure, is held (`AA` with a
//! warning) for a person. Only a transaction that cannot commit (the database unavailable)
//! leaves the transport to answer `AE`, and nothing of it is stored.

use kith_core::audit::{Actor, Channel};
use kith_core::identity::{Conflict, ResolutionKind};
use kith_core::integration::facility_matches;
use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration, Organisation, Team};
use kith_core::text::{OrganisationCode, Reason};
use kith_core::{Hl7MessageId, PatientId, Timestamp};
use kith_hl7::ack::{AckCode, AckContent, AckError, build_ack};
use kith_hl7::adt::{self, Rejection};
use kith_hl7::{encode, parse};
use kith_store::{NewHl7Message, StoreError, StoreErrorKind, Tx};

use crate::hl7_apply::{Override, apply};
use crate::organisations::organisation_by_code;
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// Where a message came from.
#[derive(Clone, Copy, Debug)]
pub enum Hl7Sender<'a> {
    /// The integration the sender's credentials name: a bearer token (`POST /hl7/v2`) or an
    /// MLLP connection bound by its client certificate or source address. MSH-4 must be its
    /// facility.
    Integration(&'a Integration),
    /// An MLLP connection of a listener started with `--mllp-unauthenticated` (a test
    /// bench): the integration is the one whose facility MSH-4 claims.
    UnauthenticatedMllp,
    /// `kith hl7 import`: the operator loads an organisation's messages from files.
    Import { organisation: &'a OrganisationCode, operator: &'a Operator },
}

/// What became of one inbound message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// The acknowledgement to send back (ER7, UTF-8).
    pub ack: String,
    pub code: AckCode,
    /// The stored message, when it could be attributed to an organisation.
    pub message: Option<Hl7MessageId>,
    /// A repeat of a stored message: nothing was changed and the stored ACK is returned.
    pub duplicate: bool,
    /// What was stored: accepted, rejected or held (`None` when nothing was stored).
    pub status: Option<Hl7MessageStatus>,
}

/// Why applying a message stopped.
pub(crate) enum Stop {
    /// The message is wrong (`AR`); nothing of it is applied.
    Reject(Rejection),
    /// `AR` as the rejection says, with the precise reason kept for the data-quality staff
    /// only (the sender must not learn it: it concerns another organisation's record).
    RejectWithDetail(Rejection, String),
    /// The matching rule found a conflict, or the event is one a person reviews: the message
    /// is held.
    Hold(Held),
    /// A conflict with another transaction: the whole ingestion runs again.
    Retry(StoreError),
    /// The database cannot be reached: the transaction fails, and the sender may resend.
    Unavailable(StoreError),
    /// Kith could not apply it, for a reason a resend would not cure: held for a person.
    Internal(String),
}

/// Why a message is held, for the data-quality staff.
pub(crate) struct Held {
    /// The matching rule's conflict code, or `review` for an event a person reviews.
    pub(crate) code: &'static str,
    /// For the data-quality staff, with Kith's record ids.
    pub(crate) text: String,
    /// For the sender (the ACK's warning): without Kith's record ids. `None`: the conflict
    /// concerns another organisation's record or share of it, so the sender gets a plain
    /// `AA`, the answer it would have had were there no such record.
    pub(crate) summary: Option<String>,
    /// The records in question.
    pub(crate) records: Vec<PatientId>,
}

impl From<Conflict> for Held {
    fn from(conflict: Conflict) -> Self {
        Held {
            code: conflict.code(),
            text: conflict.to_string(),
            summary: Some(conflict.summary().to_owned()),
            records: conflict.records(),
        }
    }
}

impl Held {
    /// Held, with nothing said to the sender (see [`Held::summary`]).
    pub(crate) fn silent(conflict: Conflict) -> Self {
        Held { summary: None, ..conflict.into() }
    }
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::Duplicate => Stop::Retry(error),
            StoreErrorKind::Unavailable => Stop::Unavailable(error),
            StoreErrorKind::Corrupt | StoreErrorKind::Database => Stop::Internal(error.to_string()),
        }
    }
}

impl From<AppError> for Stop {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Store(error) => error.into(),
            // A use case's refusal (a conflict, an invalid value) is the sender's to fix.
            AppError::Invalid(text) | AppError::Conflict(text) | AppError::NotFound(text) => {
                Stop::Reject(Rejection::new(adt::DATA_TYPE_ERROR, None, text))
            }
            AppError::Consent(refusal) => {
                Stop::Reject(Rejection::new(adt::TABLE_VALUE_NOT_FOUND, None, refusal.to_string()))
            }
            other => Stop::Internal(other.to_string()),
        }
    }
}

/// Whether a failure is the database being unreachable: the only one a resend can cure.
pub(crate) fn is_unavailable(error: &AppError) -> bool {
    matches!(error, AppError::Store(error) if error.kind() == StoreErrorKind::Unavailable)
}

/// Text as it can be stored and sent: a NUL (which PostgreSQL refuses in text, and which a
/// message can carry as `\X00\`) becomes U+FFFD.
fn storable(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text.to_owned() }
}

/// `YYYYMMDDHHMMSS` (UTC), for MSH-7.
fn hl7_timestamp(at: Timestamp) -> String {
    let text = at.to_string(); // 2026-11-25T13:33:13Z
    text.chars().filter(char::is_ascii_digit).take(14).collect()
}

fn ack_control_id() -> String {
    format!("K{}", &new_uuid().simple().to_string()[13..])
}

/// The conflict code of a message held because Kith could not apply it.
const NOT_APPLIED: &str = "not_applied";

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

impl App {
    /// An acknowledgement for bytes that were not ingested — a frame over the size limit, or
    /// a failure before anything could be stored (`AE`: the sender should send it again).
    /// MSA-2 echoes the control id when the bytes have one.
    pub fn ack_without_ingesting(&self, raw: Option<&[u8]>, code: AckCode, reason: &str) -> String {
        let parsed = raw.map(parse);
        let code_pair = if code == AckCode::Error { adt::APPLICATION_INTERNAL_ERROR } else { adt::DATA_TYPE_ERROR };
        let ack = build_ack(
            parsed.as_ref().and_then(|parsed| parsed.message.as_ref()),
            &AckContent {
                code,
                text: Some(reason),
                error: Some(AckError { location: None, code: code_pair.0, code_text: code_pair.1, warning: false }),
                control_id: &ack_control_id(),
                timestamp: &hl7_timestamp(self.now()),
            },
        );
        encode(&ack)
    }

    /// Ingests one message: parse, attribute it, return the stored ACK for a repeat of
    /// (organisation, MSH-3, MSH-4, MSH-10), or apply it and store it with its ACK — one
    /// transaction. A rejected or held message changes nothing but is kept.
    pub fn ingest_hl7(&self, sender: Hl7Sender<'_>, raw: &[u8]) -> AppResult<Ingested> {
        let reading = Reading::of(raw);
        let now = self.now();
        let ingested = match self.store.write(|tx| ingest_in(tx, &mut FeedCache::default(), sender, &reading, raw, now))
        {
            Ok(ingested) => ingested,
            // Only a database that cannot be reached is for the sender to retry: any other
            // failure of the message's own transaction would fail again on a resend.
            Err(error) if is_unavailable(&error) => return Err(error),
            Err(error) => self.hold_unapplied_from(sender, &reading, raw, &error.to_string())?,
        };
        self.store.note_growth(1);
        Ok(ingested)
    }

    /// Stores a message whose own transaction failed, held with the reason (see
    /// [`store_unapplied`]).
    fn hold_unapplied_from(
        &self,
        sender: Hl7Sender<'_>,
        reading: &Reading,
        raw: &[u8],
        reason: &str,
    ) -> AppResult<Ingested> {
        let now = self.now();
        self.store.write(|tx| {
            let mut cache = FeedCache::default();
            let organisation = match sender {
                Hl7Sender::Integration(integration) => integration.organisation,
                Hl7Sender::Import { organisation, .. } => cache.organisation_id(tx, organisation)?,
                Hl7Sender::UnauthenticatedMllp => match cache.integration_by_facility(tx, &reading.facility)? {
                    Some(integration) => integration.organisation,
                    None => return Err(AppError::NotFound("no integration for the sending facility".to_owned())),
                },
            };
            store_unapplied(tx, organisation, reading, raw, reason, now)
        })
    }

    /// Ingests several messages in one transaction — one commit, one disk flush — each in
    /// its own savepoint, in order, with exactly the outcome each would have alone (a repeat
    /// within the batch is a repeat). This is how concurrent MLLP connections and backfill
    /// share commits.
    pub fn ingest_hl7_batch(&self, messages: &[(Hl7Sender<'_>, &[u8])]) -> AppResult<Vec<Ingested>> {
        let readings: Vec<Reading> = messages.iter().map(|(_, raw)| Reading::of(raw)).collect();
        let now = self.now();
        let batch = self.store.write(|tx| {
            let mut cache = FeedCache::default();
            messages
                .iter()
                .zip(&readings)
                .map(|((sender, raw), reading)| ingest_in(tx, &mut cache, *sender, reading, raw, now))
                .collect::<AppResult<Vec<Ingested>>>()
        });
        let ingested = match batch {
            Ok(ingested) => ingested,
            Err(error) if is_unavailable(&error) => return Err(error),
            // One message's failure must not fail the others (they may be other
            // organisations'): each is applied again in its own transaction.
            Err(error) => {
                tracing::warn!(%error, messages = messages.len(), "an HL7 batch failed; applying it one message at a time");
                return messages.iter().map(|(sender, raw)| self.ingest_hl7(*sender, raw)).collect();
            }
        };
        self.store.note_growth(ingested.len() as u64);
        Ok(ingested)
    }

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
}

/// A stored message of the organisation, or "not found" (another organisation's is not
/// found either).
fn stored_message(tx: &mut Tx<'_>, organisation: &Organisation, id: Hl7MessageId) -> AppResult<Hl7MessageRecord> {
    tx.hl7_message(id)?
        .filter(|record| record.organisation == organisation.id)
        .ok_or_else(|| AppError::NotFound(format!("organisation {} has no stored message {id}", organisation.code)))
}

/// Ingests one read message inside the caller's transaction.
pub(crate) fn ingest_in(
    tx: &mut Tx<'_>,
    cache: &mut FeedCache,
    sender: Hl7Sender<'_>,
    reading: &Reading,
    raw: &[u8],
    now: Timestamp,
) -> AppResult<Ingested> {
    // Whose message is it?
    let integration = match sender {
        Hl7Sender::Integration(integration) => Some(integration.clone()),
        Hl7Sender::UnauthenticatedMllp => match cache.integration_by_facility(tx, &reading.facility)? {
            Some(integration) => Some(integration),
            None => {
                let rejection = Rejection::new(
                    adt::UNKNOWN_KEY_IDENTIFIER,
                    Some(kith_hl7::Location::field(1, "MSH", 4)),
                    "MSH-4: the sending facility is not registered with Kith",
                );
                tracing::warn!("HL7 message from an unregistered sending facility rejected");
                return Ok(Ingested {
                    ack: reading.respond(now, AckCode::Reject, Some(&rejection)),
                    code: AckCode::Reject,
                    message: None,
                    duplicate: false,
                    status: None,
                });
            }
        },
        Hl7Sender::Import { .. } => None,
    };
    let (organisation, actor) = match (&integration, sender) {
        (Some(integration), _) => (integration.organisation, Actor::Integration(integration.id)),
        (None, Hl7Sender::Import { organisation, operator }) => {
            (cache.organisation_id(tx, organisation)?, operator.actor())
        }
        (None, _) => unreachable!("only an import has no integration"),
    };
    let mut control_id = (!reading.control.is_empty()).then_some(reading.control.as_str());
    // A message must come from its integration's facility. One that claims another is not
    // applied, and is stored without its control id, so that it can never make the real
    // sender's message look like a repeat.
    let wrong_facility = integration.as_ref().is_some_and(|integration| {
        reading.parsed.message.is_some() && !facility_matches(&integration.facility, &reading.facility)
    });
    if wrong_facility {
        control_id = None;
    }
    if let Some(repeat) = stored_repeat(tx, organisation, reading, control_id)? {
        return Ok(repeat);
    }
    let message_id = Hl7MessageId::from_uuid(new_uuid());
    let outcome = if wrong_facility {
        let facility = integration.as_ref().map_or("", |integration| integration.facility.as_str());
        let rejection = Rejection::new(
            adt::TABLE_VALUE_NOT_FOUND,
            Some(kith_hl7::Location::field(1, "MSH", 4)),
            format!("MSH-4: this integration sends as {facility}, not as {}", reading.facility),
        );
        Outcome::rejected(reading, now, rejection)
    } else {
        process(tx, cache, reading, organisation, &actor, message_id, Override::None, now)?
    };
    let stored_as = StoredAs { id: message_id, organisation, integration: integration.map(|i| i.id), control_id };
    store_outcome(tx, &stored_as, reading, raw, outcome, now)
}

/// Where a message is stored, and under which key.
struct StoredAs<'a> {
    id: Hl7MessageId,
    organisation: kith_core::OrganisationId,
    integration: Option<kith_core::IntegrationId>,
    control_id: Option<&'a str>,
}

/// The stored answer to a repeat of (organisation, MSH-3, MSH-4, MSH-10), if it is one.
fn stored_repeat(
    tx: &mut Tx<'_>,
    organisation: kith_core::OrganisationId,
    reading: &Reading,
    control_id: Option<&str>,
) -> AppResult<Option<Ingested>> {
    let Some(control_id) = control_id else { return Ok(None) };
    let Some(stored) = tx.hl7_message_by_key(organisation, &reading.application, &reading.facility, control_id)? else {
        return Ok(None);
    };
    let code = match stored.status {
        Hl7MessageStatus::Accepted | Hl7MessageStatus::Held => AckCode::Accept,
        Hl7MessageStatus::Rejected => AckCode::Reject,
        Hl7MessageStatus::Error => AckCode::Error,
    };
    Ok(Some(Ingested { ack: stored.ack, code, message: Some(stored.id), duplicate: true, status: Some(stored.status) }))
}

/// Stores a message with what became of it (and its ACK); the answer to send.
fn store_outcome(
    tx: &mut Tx<'_>,
    stored_as: &StoredAs<'_>,
    reading: &Reading,
    raw: &[u8],
    outcome: Outcome,
    now: Timestamp,
) -> AppResult<Ingested> {
    let mut record = Hl7MessageRecord {
        id: stored_as.id,
        organisation: stored_as.organisation,
        integration: stored_as.integration,
        sending_application: reading.application.clone(),
        sending_facility: reading.facility.clone(),
        control_id: stored_as.control_id.map(str::to_owned),
        message_type: reading.message_type.clone(),
        status: outcome.status,
        ack: String::new(),
        error: None,
        patient: None,
        received_at: now,
        conflict: None,
        conflict_records: Vec::new(),
        resolution: None,
    };
    outcome.write_to(&mut record);
    tx.insert_hl7_message(&NewHl7Message { record: &record, raw, processed_at: now })?;
    Ok(Ingested {
        ack: outcome.ack,
        code: outcome.code,
        message: Some(record.id),
        duplicate: false,
        status: Some(outcome.status),
    })
}

/// Stores a message that could not be applied, held with the reason (an import's last
/// resort when the message's own transaction failed).
pub(crate) fn store_unapplied(
    tx: &mut Tx<'_>,
    organisation: kith_core::OrganisationId,
    reading: &Reading,
    raw: &[u8],
    reason: &str,
    now: Timestamp,
) -> AppResult<Ingested> {
    let control_id = (!reading.control.is_empty()).then_some(reading.control.as_str());
    if let Some(repeat) = stored_repeat(tx, organisation, reading, control_id)? {
        return Ok(repeat);
    }
    let stored_as = StoredAs { id: Hl7MessageId::from_uuid(new_uuid()), organisation, integration: None, control_id };
    store_outcome(tx, &stored_as, reading, raw, Outcome::unapplied(reading, now, reason), now)
}

/// A message as read from its bytes, with what its acknowledgement needs.
pub(crate) struct Reading {
    pub(crate) parsed: kith_hl7::Parsed,
    pub(crate) application: String,
    pub(crate) facility: String,
    pub(crate) control: String,
    pub(crate) message_type: String,
    pub(crate) parse_rejection: Option<Rejection>,
}

impl Reading {
    pub(crate) fn of(raw: &[u8]) -> Self {
        let parsed = parse(raw);
        let message = parsed.message.as_ref();
        let header = |n: usize| message.map_or("", |m| m.header().map_or("", |h| h.component(n, 1))).to_owned();
        let message_type = message.map_or(String::new(), |m| {
            let (code, trigger) = m.message_type();
            if trigger.is_empty() { code.to_owned() } else { format!("{code}^{trigger}") }
        });
        let mut parse_rejection = parsed.first_error().map(|problem| {
            let (code, code_text) = problem.kind.hl7_error_code();
            Rejection {
                text: storable(&problem.to_string()),
                location: problem.location.clone().map(Box::new),
                code,
                code_text,
            }
        });
        let (application, facility, control) = (header(3), header(4), header(10));
        if parse_rejection.is_none()
            && [&application, &facility, &control, &message_type].iter().any(|text| text.contains('\0'))
        {
            parse_rejection = Some(Rejection::new(
                adt::DATA_TYPE_ERROR,
                Some(kith_hl7::Location::field(1, "MSH", 10)),
                "MSH: a NUL character is not allowed in MSH-3, MSH-4, MSH-9 or MSH-10",
            ));
        }
        Reading {
            application: storable(&application),
            facility: storable(&facility),
            control: storable(&control),
            message_type: storable(&message_type),
            parse_rejection,
            parsed,
        }
    }

    /// The acknowledgement of this message.
    pub(crate) fn respond(&self, now: Timestamp, code: AckCode, rejection: Option<&Rejection>) -> String {
        self.respond_with(
            now,
            code,
            rejection.map(|r| r.text.as_str()),
            rejection.map(|r| AckError {
                location: r.location.as_deref().cloned(),
                code: r.code,
                code_text: r.code_text,
                warning: false,
            }),
        )
    }

    /// An `AA` that says something was not applied, or that the message is held: MSA-3 says
    /// what, and ERR carries it as a warning (ERR-4 `W`).
    fn respond_with_warning(&self, now: Timestamp, text: &str) -> String {
        self.respond_with(
            now,
            AckCode::Accept,
            Some(text),
            Some(AckError { location: None, code: "0", code_text: "Message accepted", warning: true }),
        )
    }

    fn respond_with(&self, now: Timestamp, code: AckCode, text: Option<&str>, error: Option<AckError>) -> String {
        let ack = build_ack(
            self.parsed.message.as_ref(),
            &AckContent { code, text, error, control_id: &ack_control_id(), timestamp: &hl7_timestamp(now) },
        );
        storable(&encode(&ack))
    }
}

/// What processing a message came to.
pub(crate) struct Outcome {
    pub(crate) code: AckCode,
    pub(crate) status: Hl7MessageStatus,
    pub(crate) ack: String,
    /// Why it was rejected or held; for an accepted message, what was not applied.
    pub(crate) error: Option<String>,
    pub(crate) patient: Option<PatientId>,
    conflict: Option<String>,
    conflict_records: Vec<PatientId>,
}

impl Outcome {
    fn rejected(reading: &Reading, now: Timestamp, rejection: Rejection) -> Self {
        Outcome {
            code: AckCode::Reject,
            status: Hl7MessageStatus::Rejected,
            ack: reading.respond(now, AckCode::Reject, Some(&rejection)),
            error: Some(rejection.text),
            patient: None,
            conflict: None,
            conflict_records: Vec::new(),
        }
    }

    /// Held because Kith could not apply it, for a reason a resend would not cure. The
    /// detail (a storage error) goes to the log and the stored message, never to the sender.
    fn unapplied(reading: &Reading, now: Timestamp, detail: &str) -> Self {
        tracing::error!(%detail, "HL7 message could not be applied; held for review");
        Outcome {
            code: AckCode::Accept,
            status: Hl7MessageStatus::Held,
            ack: reading.respond_with_warning(
                now,
                "held for review by the data-quality team: Kith could not apply it (nothing was applied)",
            ),
            error: Some(format!("Kith could not apply it: {detail}")),
            patient: None,
            conflict: Some(NOT_APPLIED.to_owned()),
            conflict_records: Vec::new(),
        }
    }

    fn write_to(&self, record: &mut Hl7MessageRecord) {
        record.status = self.status;
        record.ack = self.ack.clone();
        record.error = self.error.as_deref().map(storable);
        record.patient = self.patient;
        record.conflict = self.conflict.clone();
        record.conflict_records = self.conflict_records.clone();
    }
}

/// Applies a message inside a savepoint and says what became of it. Only a conflict with
/// another transaction, or a database that cannot be reached, is an `Err` (the whole
/// ingestion runs again, or fails and the sender resends).
#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    tx: &mut Tx<'_>,
    cache: &mut FeedCache,
    reading: &Reading,
    organisation: kith_core::OrganisationId,
    actor: &Actor,
    message_id: Hl7MessageId,
    how: Override,
    now: Timestamp,
) -> AppResult<Outcome> {
    let outcome = match (&reading.parse_rejection, reading.parsed.message.as_ref()) {
        (Some(rejection), _) => Err(Stop::Reject(rejection.clone())),
        (None, None) => Err(Stop::Internal("the parser returned no message and no error".to_owned())),
        (None, Some(message)) => {
            let filing = Filing { facts: cache.facts(tx, organisation)?, actor, message: message_id, how, now };
            tx.savepoint(|tx| apply(tx, &filing, message))
        }
    };
    let outcome = match outcome {
        // A unique constraint that persists through every attempt is not a race: it is this
        // message, and a resend would meet it again.
        Err(Stop::Retry(error)) if error.kind() == StoreErrorKind::Duplicate && tx.is_last_attempt() => {
            Err(Stop::Internal(error.to_string()))
        }
        other => other,
    };
    Ok(match outcome {
        Ok(applied) => {
            // What was not applied, and why, is for the data-quality staff: the reasons can
            // say that another record has an email or that a patient is registered.
            let ack = if applied.notices.is_empty() {
                reading.respond(now, AckCode::Accept, None)
            } else {
                reading.respond_with_warning(
                    now,
                    "applied; some details were not applied (the data-quality team sees which and why)",
                )
            };
            Outcome {
                code: AckCode::Accept,
                status: Hl7MessageStatus::Accepted,
                ack,
                error: (!applied.notices.is_empty()).then(|| applied.notices.join("; ")),
                patient: applied.patient,
                conflict: None,
                conflict_records: Vec::new(),
            }
        }
        Err(Stop::Retry(error) | Stop::Unavailable(error)) => return Err(AppError::Store(error)),
        Err(Stop::Reject(rejection)) => Outcome::rejected(reading, now, rejection),
        Err(Stop::RejectWithDetail(rejection, detail)) => {
            Outcome { error: Some(detail), ..Outcome::rejected(reading, now, rejection) }
        }
        Err(Stop::Hold(held)) => Outcome {
            code: AckCode::Accept,
            status: Hl7MessageStatus::Held,
            ack: match &held.summary {
                Some(summary) => {
                    reading.respond_with_warning(now, &format!("held for review by the data-quality team: {summary}"))
                }
                None => reading.respond(now, AckCode::Accept, None),
            },
            error: Some(held.text),
            patient: None,
            conflict: Some(held.code.to_owned()),
            conflict_records: held.records,
        },
        Err(Stop::Internal(detail)) => Outcome::unapplied(reading, now, &detail),
    })
}

/// What ingestion needs to know about an organisation. Read once per transaction: applying
/// messages never changes it.
pub(crate) struct FeedFacts {
    pub(crate) organisation: Organisation,
    pub(crate) prt: Team,
    authorities: Vec<String>,
    pub(crate) label_rules: Vec<(String, String, kith_core::PrivacyLabel)>,
    pub(crate) create_on_any_adt: bool,
}

impl FeedFacts {
    /// Whether PID-3 identifiers under this assigning authority are the organisation's
    /// (compared as authorities are kept: spaces collapsed, upper case).
    pub(crate) fn is_local_authority(&self, authority: &str) -> bool {
        let Some(authority) = kith_core::patient::LocalIdentifier::normalise_authority(authority) else {
            return false;
        };
        self.authorities.contains(&authority)
    }
}

/// Organisation facts read within one transaction, by id and by code.
#[derive(Default)]
pub(crate) struct FeedCache {
    facts: std::collections::HashMap<kith_core::OrganisationId, FeedFacts>,
    codes: std::collections::HashMap<OrganisationCode, kith_core::OrganisationId>,
    integrations: Option<Vec<Integration>>,
}

impl FeedCache {
    pub(crate) fn organisation_id(
        &mut self,
        tx: &mut Tx<'_>,
        code: &OrganisationCode,
    ) -> AppResult<kith_core::OrganisationId> {
        if let Some(id) = self.codes.get(code) {
            return Ok(*id);
        }
        let id = organisation_by_code(tx, code)?.id;
        self.codes.insert(code.clone(), id);
        Ok(id)
    }

    /// The live integration whose facility MSH-4 names (an unauthenticated listener's way).
    pub(crate) fn integration_by_facility(
        &mut self,
        tx: &mut Tx<'_>,
        facility: &str,
    ) -> AppResult<Option<Integration>> {
        if self.integrations.is_none() {
            self.integrations = Some(tx.all_integrations()?);
        }
        Ok(self
            .integrations
            .iter()
            .flatten()
            .find(|integration| integration.revoked_at.is_none() && facility_matches(&integration.facility, facility))
            .cloned())
    }

    pub(crate) fn facts(&mut self, tx: &mut Tx<'_>, id: kith_core::OrganisationId) -> AppResult<&FeedFacts> {
        match self.facts.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let organisation = tx.organisation(id)?.ok_or_else(|| AppError::NotFound("organisation".to_owned()))?;
                let prt = tx.patient_record_team(id)?.ok_or_else(|| {
                    AppError::NotFound(format!("organisation {} has no Patient Record Team", organisation.code))
                })?;
                Ok(entry.insert(FeedFacts {
                    prt,
                    authorities: tx.assigning_authorities(id)?,
                    label_rules: tx.label_rules(id)?,
                    create_on_any_adt: tx.hl7_create_on_any_adt(id)?,
                    organisation,
                }))
            }
        }
    }
}

/// What every change made from one message shares.
pub(crate) struct Filing<'a> {
    pub(crate) facts: &'a FeedFacts,
    pub(crate) actor: &'a Actor,
    pub(crate) message: Hl7MessageId,
    /// How a person resolving a held message overrode the matching rule.
    pub(crate) how: Override,
    pub(crate) now: Timestamp,
}
