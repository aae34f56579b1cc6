//! Ingesting one message — attributed to the integration its credentials name, checked for
//! a repeat, applied, stored with its acknowledgement, all in one transaction, so that the
//! ACK the sender receives is only ever sent after everything it acknowledges is committed.

use kith_core::audit::Actor;
use kith_core::integration::facility_matches;
use kith_core::model::{Hl7MessageRecord, Hl7MessageStatus, Integration};
use kith_core::text::OrganisationCode;
use kith_core::{Hl7MessageId, PatientId, Timestamp};
use kith_hl7::ack::AckCode;
use kith_hl7::adt::{self, Rejection};
use kith_store::{NewHl7Message, StoreErrorKind, Tx};

use super::apply::apply;
use super::feed::{FeedCache, Filing, Override};
use super::reading::{Reading, storable};
use super::stop::{Stop, is_unavailable};
use crate::{App, AppError, AppResult, Operator, new_uuid};

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

/// What an `AE` says: the database could not commit.
const NOTHING_APPLIED: &str = "internal error: nothing was applied; send it again";

/// The conflict code of a message held because Kith could not apply it.
pub(crate) const NOT_APPLIED: &str = "not_applied";

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

    pub(crate) fn write_to(&self, record: &mut Hl7MessageRecord) {
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

impl App {
    /// Ingests one message: parse, attribute it, return the stored ACK for a repeat of
    /// (organisation, MSH-3, MSH-4, MSH-10), or apply it and store it with its ACK — one
    /// transaction. A rejected or held message changes nothing but is kept.
    ///
    /// Always the answer to send: `AE` only when the database could not commit (nothing
    /// was applied or stored, and the sender sends it again), so that no transport writes
    /// its own.
    pub fn ingest_hl7(&self, sender: Hl7Sender<'_>, raw: &[u8]) -> Ingested {
        let reading = Reading::of(raw);
        let now = self.now();
        let ingested = match self.store.write(|tx| ingest_in(tx, &mut FeedCache::default(), sender, &reading, raw, now))
        {
            Ok(ingested) => ingested,
            // Only a database that cannot be reached is for the sender to retry: any other
            // failure of the message's own transaction would fail again on a resend.
            Err(error) if is_unavailable(&error) => return self.not_committed(raw, &error, NOTHING_APPLIED),
            Err(error) => match self.hold_unapplied_from(sender, &reading, raw, &error.to_string()) {
                Ok(ingested) => ingested,
                Err(error) => return self.not_committed(raw, &error, NOTHING_APPLIED),
            },
        };
        self.store.note_growth(1);
        ingested
    }

    /// The answer to a message whose transaction could not commit: `AE` with `text`,
    /// nothing stored; the error is logged.
    pub(crate) fn not_committed(&self, raw: &[u8], error: &AppError, text: &str) -> Ingested {
        tracing::error!(%error, "HL7 message could not be stored");
        Ingested {
            ack: self.ack_without_ingesting(Some(raw), AckCode::Error, text),
            code: AckCode::Error,
            message: None,
            duplicate: false,
            status: None,
        }
    }

    /// `AE` for a message that never reached ingestion (an MLLP connection's writer gone):
    /// nothing was applied, send it again. The same words as [`App::ingest_hl7`]'s `AE`.
    pub fn ack_nothing_applied(&self, raw: Option<&[u8]>) -> String {
        self.ack_without_ingesting(raw, AckCode::Error, NOTHING_APPLIED)
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
    /// share commits. One answer per message, in order, as [`App::ingest_hl7`] gives it.
    pub fn ingest_hl7_batch(&self, messages: &[(Hl7Sender<'_>, &[u8])]) -> Vec<Ingested> {
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
            Err(error) if is_unavailable(&error) => {
                return messages.iter().map(|(_, raw)| self.not_committed(raw, &error, NOTHING_APPLIED)).collect();
            }
            // One message's failure must not fail the others (they may be other
            // organisations'): each is applied again in its own transaction.
            Err(error) => {
                tracing::warn!(%error, messages = messages.len(), "an HL7 batch failed; applying it one message at a time");
                return messages.iter().map(|(sender, raw)| self.ingest_hl7(*sender, raw)).collect();
            }
        };
        self.store.note_growth(ingested.len() as u64);
        ingested
    }
}
