//! HL7 v2 feeds: integrations, and ingesting one message — found, checked for a repeat,
//! applied, stored with its acknowledgement, all in one transaction, so that the ACK the
//! sender receives is only ever sent after everything it acknowledges is committed.

use kith_core::audit::{Actor, Channel};
use kith_core::consent::{LinkBasis, NewLinkFacts, check_new_link};
use kith_core::model::{
    CareLink, Entry, EntryStatus, Hl7MessageRecord, Hl7MessageStatus, Integration, Observation, Organisation, Patient,
    Team,
};
use kith_core::patient::{Demographics, EntryKind, Sex};
use kith_core::team::TeamKind;
use kith_core::text::{Name, OrganisationCode, Title};
use kith_core::{EntryId, Hl7MessageId, IntegrationId, PatientId, Timestamp};
use kith_hl7::ack::{AckCode, AckContent, AckError, build_ack};
use kith_hl7::adt::{self, AdtEvent, AdtMessage, PatientIdentity, Rejection, read_adt};
use kith_hl7::clinical::{self, SiuEvent};
use kith_hl7::{Message, encode, parse};
use kith_store::{NewHl7Message, StoreError, Tx};
use sha2::{Digest, Sha256};

use crate::organisations::organisation_by_code;
use crate::patients::{IdentifierCheck, LinkActor, ensure_email_free, insert_patient_record, write_link};
use crate::{App, AppError, AppResult, AuditBuilder, Operator, new_uuid};

/// Where a message came from.
#[derive(Clone, Copy, Debug)]
pub enum Hl7Sender<'a> {
    /// An MLLP connection: the integration is found from MSH-4 (the sending facility).
    Mllp,
    /// `POST /hl7/v2` with a bearer token: the token named the integration.
    Http(&'a Integration),
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
}

/// A new integration and its bearer token (shown once; only its hash is kept).
#[derive(Clone, Debug)]
pub struct NewIntegration {
    pub integration: Integration,
    pub token: kith_core::text::Secret,
}

/// Why applying a message stopped.
enum Stop {
    Reject(Rejection),
    Internal(String),
    /// A conflict with another transaction: the whole ingestion runs again.
    Retry(StoreError),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        if error.is_retryable() { Stop::Retry(error) } else { Stop::Internal(error.to_string()) }
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

/// SHA-256 of a bearer token: what is stored, and what a presented token is looked up by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `YYYYMMDDHHMMSS` (UTC), for MSH-7.
fn hl7_timestamp(at: Timestamp) -> String {
    let text = at.to_string(); // 2026-11-25T13:33:13Z
    text.chars().filter(char::is_ascii_digit).take(14).collect()
}

impl App {
    /// Registers an HL7 integration for an organisation: its sending facility (MSH-4) and a
    /// new bearer token for HTTP, returned once.
    pub fn create_integration(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        name: &Name,
        facility: &str,
    ) -> AppResult<NewIntegration> {
        let facility = facility.trim();
        if facility.is_empty()
            || facility.len() > 64
            || facility.chars().any(|c| c.is_control() || "|^~\\&".contains(c))
        {
            return Err(AppError::Invalid(
                "facility: must be the MSH-4 sending facility, 1 to 64 characters without HL7 delimiters".to_owned(),
            ));
        }
        let token = crate::tokens::new_secret();
        let hash = token_hash(&token);
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            if tx.integration_by_facility(facility)?.is_some() {
                return Err(AppError::Conflict(format!("an integration already uses the sending facility {facility}")));
            }
            let integration = Integration {
                id: IntegrationId::from_uuid(new_uuid()),
                organisation: organisation.id,
                name: name.clone(),
                facility: facility.to_owned(),
                created_at: now,
            };
            tx.insert_integration(&integration, &hash)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "integration.create")
                    .organisation(organisation.id)
                    .subject(integration.id)
                    .basis("administration")
                    .build(),
            );
            Ok(NewIntegration { integration, token: kith_core::text::Secret::new(token.clone()) })
        })
    }

    /// The integration a bearer token belongs to, if any.
    pub fn integration_for_token(&self, token: &str) -> AppResult<Option<Integration>> {
        let hash = token_hash(token);
        self.store.read(|tx| Ok(tx.integration_by_token_hash(&hash)?))
    }

    /// Adds an assigning authority whose PID-3 identifiers are the organisation's local ones.
    pub fn add_assigning_authority(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        authority: &str,
    ) -> AppResult<()> {
        let authority = authority.trim().to_ascii_uppercase();
        if authority.is_empty()
            || authority.len() > 40
            || !authority.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(AppError::Invalid(
                "authority: 1 to 40 letters, digits, '-', '_' or '.', e.g. RXH-MRN".to_owned(),
            ));
        }
        if authority == "NHS" || authority == "EMAIL" {
            return Err(AppError::Invalid(format!("authority: {authority} is not a local assigning authority")));
        }
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.add_assigning_authority(organisation.id, &authority, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("assigning_authority={authority}"))
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }

    /// Whether admission and registration ADTs may create records, or only A28 and A31.
    pub fn set_hl7_create_on_any_adt(&self, operator: &Operator, code: &OrganisationCode, any: bool) -> AppResult<()> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.set_hl7_create_on_any_adt(organisation.id, any)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("hl7_create_on_any_adt={any}"))
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }

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
                error: Some(AckError { location: None, code: code_pair.0, code_text: code_pair.1 }),
                control_id: &format!("K{}", &new_uuid().simple().to_string()[13..]),
                timestamp: &hl7_timestamp(self.now()),
            },
        );
        encode(&ack)
    }

    /// Adds (or changes) a label rule: incoming data whose `field` (PV1-3, PV1-10, OBR-4,
    /// OBX-3, TXA-2 or MSH-3) has `value` gets `label`. Applies to messages received from now
    /// on (and to rejected ones when reprocessed).
    pub fn add_label_rule(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        field: &str,
        value: &str,
        label: kith_core::PrivacyLabel,
    ) -> AppResult<()> {
        let field = field.trim().to_ascii_uppercase();
        if !clinical::LABEL_RULE_FIELDS.contains(&field.as_str()) {
            return Err(AppError::Invalid(format!(
                "field: {field:?} is not one of {}",
                clinical::LABEL_RULE_FIELDS.join(", ")
            )));
        }
        let value = value.trim();
        if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_control() || "|^~\\&".contains(c)) {
            return Err(AppError::Invalid("value: 1 to 64 characters, as sent (a code, not a description)".to_owned()));
        }
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.put_label_rule(organisation.id, &field, value, label, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("label_rule {field}={value} -> {label}"))
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }

    /// An organisation's label rules: (field, value, label).
    pub fn label_rules(&self, code: &OrganisationCode) -> AppResult<Vec<(String, String, kith_core::PrivacyLabel)>> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            Ok(tx.label_rules(organisation.id)?)
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

    /// Ingests one message: parse, find the organisation, return the stored ACK for a repeat
    /// of (organisation, MSH-3, MSH-4, MSH-10), or apply it and store it with its ACK — one
    /// transaction. A rejected message changes nothing but is kept (for reprocessing).
    pub fn ingest_hl7(&self, sender: Hl7Sender<'_>, raw: &[u8]) -> AppResult<Ingested> {
        let reading = Reading::of(raw);
        let now = self.now();
        let ingested = self.store.write(|tx| ingest_in(tx, &mut FeedCache::default(), sender, &reading, raw, now))?;
        self.store.note_growth(1);
        Ok(ingested)
    }

    /// Ingests several messages in one transaction — one commit, one disk flush — each in
    /// its own savepoint, in order, with exactly the outcome each would have alone (a repeat
    /// within the batch is a repeat). This is how concurrent MLLP connections and backfill
    /// share commits.
    pub fn ingest_hl7_batch(&self, messages: &[(Hl7Sender<'_>, &[u8])]) -> AppResult<Vec<Ingested>> {
        let readings: Vec<Reading> = messages.iter().map(|(_, raw)| Reading::of(raw)).collect();
        let now = self.now();
        let ingested: Vec<Ingested> = self.store.write(|tx| {
            let mut cache = FeedCache::default();
            messages
                .iter()
                .zip(&readings)
                .map(|((sender, raw), reading)| ingest_in(tx, &mut cache, *sender, reading, raw, now))
                .collect::<AppResult<Vec<Ingested>>>()
        })?;
        self.store.note_growth(ingested.len() as u64);
        Ok(ingested)
    }

    /// Processes a stored message again (after a label rule, a team or a patient was added):
    /// applied as if it had just arrived, its stored status and ACK replaced, audited as the
    /// operator. Only rejected or failed messages can be reprocessed.
    pub fn reprocess_hl7(&self, operator: &Operator, code: &OrganisationCode, id: Hl7MessageId) -> AppResult<Ingested> {
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            let Some(mut record) = tx.hl7_message(id)?.filter(|record| record.organisation == organisation.id) else {
                return Err(AppError::NotFound(format!("organisation {code} has no stored message {id}")));
            };
            if record.status == Hl7MessageStatus::Accepted {
                return Err(AppError::Conflict(format!("message {id} was accepted; there is nothing to reprocess")));
            }
            let raw = tx.hl7_message_raw(id)?.ok_or_else(|| AppError::NotFound(format!("no stored message {id}")))?;
            let reading = Reading::of(&raw);
            let mut cache = FeedCache::default();
            let outcome = process(tx, &mut cache, &reading, organisation.id, &operator.actor(), id, now)?;
            record.status = outcome.status;
            record.ack = outcome.ack.clone();
            record.error = outcome.error;
            record.patient = outcome.patient;
            tx.update_hl7_message_outcome(&record, now)?;
            Ok(Ingested { ack: outcome.ack, code: outcome.code, message: Some(id), duplicate: false })
        })
    }
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
    let (organisation, integration, actor) = match sender {
        Hl7Sender::Mllp => match tx.integration_by_facility(&reading.facility)? {
            Some(integration) => (integration.organisation, Some(integration.id), Actor::Integration(integration.id)),
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
                });
            }
        },
        Hl7Sender::Http(integration) => {
            (integration.organisation, Some(integration.id), Actor::Integration(integration.id))
        }
        Hl7Sender::Import { organisation, operator } => {
            (cache.organisation_id(tx, organisation)?, None, operator.actor())
        }
    };
    let control_id = (!reading.control.is_empty()).then_some(reading.control.as_str());
    if let Some(control_id) = control_id
        && let Some(stored) =
            tx.hl7_message_by_key(organisation, &reading.application, &reading.facility, control_id)?
    {
        let code = if stored.status == Hl7MessageStatus::Accepted { AckCode::Accept } else { AckCode::Reject };
        return Ok(Ingested { ack: stored.ack, code, message: Some(stored.id), duplicate: true });
    }
    let message_id = Hl7MessageId::from_uuid(new_uuid());
    let outcome = process(tx, cache, reading, organisation, &actor, message_id, now)?;
    let record = Hl7MessageRecord {
        id: message_id,
        organisation,
        integration,
        sending_application: reading.application.clone(),
        sending_facility: reading.facility.clone(),
        control_id: control_id.map(str::to_owned),
        message_type: reading.message_type.clone(),
        status: outcome.status,
        ack: outcome.ack.clone(),
        error: outcome.error,
        patient: outcome.patient,
        received_at: now,
    };
    tx.insert_hl7_message(&NewHl7Message { record: &record, raw, processed_at: now })?;
    Ok(Ingested { ack: outcome.ack, code: outcome.code, message: Some(record.id), duplicate: false })
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
        let parse_rejection = parsed.first_error().map(|problem| {
            let (code, code_text) = problem.kind.hl7_error_code();
            Rejection { text: problem.to_string(), location: problem.location.clone().map(Box::new), code, code_text }
        });
        Reading {
            application: header(3),
            facility: header(4),
            control: header(10),
            message_type,
            parse_rejection,
            parsed,
        }
    }

    /// The acknowledgement of this message.
    pub(crate) fn respond(&self, now: Timestamp, code: AckCode, rejection: Option<&Rejection>) -> String {
        let ack = build_ack(
            self.parsed.message.as_ref(),
            &AckContent {
                code,
                text: rejection.map(|r| r.text.as_str()),
                error: rejection.map(|r| AckError {
                    location: r.location.as_deref().cloned(),
                    code: r.code,
                    code_text: r.code_text,
                }),
                control_id: &format!("K{}", &new_uuid().simple().to_string()[13..]),
                timestamp: &hl7_timestamp(now),
            },
        );
        encode(&ack)
    }
}

/// What processing a message came to.
struct Outcome {
    code: AckCode,
    status: Hl7MessageStatus,
    ack: String,
    error: Option<String>,
    patient: Option<PatientId>,
}

/// Applies a message inside a savepoint and says what became of it. Only a conflict with
/// another transaction is an `Err` (the whole ingestion runs again).
fn process(
    tx: &mut Tx<'_>,
    cache: &mut FeedCache,
    reading: &Reading,
    organisation: kith_core::OrganisationId,
    actor: &Actor,
    message_id: Hl7MessageId,
    now: Timestamp,
) -> AppResult<Outcome> {
    let outcome = match (&reading.parse_rejection, reading.parsed.message.as_ref()) {
        (Some(rejection), _) => Err(Stop::Reject(rejection.clone())),
        (None, None) => Err(Stop::Internal("the parser returned no message and no error".to_owned())),
        (None, Some(message)) => {
            let filing = Filing { facts: cache.facts(tx, organisation)?, actor, message: message_id, now };
            tx.savepoint(|tx| apply(tx, &filing, message))
        }
    };
    let (code, status, rejection, error, patient) = match outcome {
        Ok(patient) => (AckCode::Accept, Hl7MessageStatus::Accepted, None, None, patient),
        Err(Stop::Retry(error)) => return Err(AppError::Store(error)),
        Err(Stop::Reject(rejection)) => {
            let text = rejection.text.clone();
            (AckCode::Reject, Hl7MessageStatus::Rejected, Some(rejection), Some(text), None)
        }
        Err(Stop::Internal(detail)) => {
            tracing::error!(%detail, "HL7 message failed inside Kith");
            let rejection = Rejection::new(
                adt::APPLICATION_INTERNAL_ERROR,
                None,
                "internal error: nothing was applied; send it again",
            );
            (AckCode::Error, Hl7MessageStatus::Error, Some(rejection), Some(detail), None)
        }
    };
    Ok(Outcome { ack: reading.respond(now, code, rejection.as_ref()), code, status, error, patient })
}

/// What ingestion needs to know about an organisation. Read once per transaction: applying
/// messages never changes it.
pub(crate) struct FeedFacts {
    pub(crate) organisation: Organisation,
    pub(crate) prt: Team,
    authorities: Vec<String>,
    label_rules: Vec<(String, String, kith_core::PrivacyLabel)>,
    pub(crate) create_on_any_adt: bool,
}

impl FeedFacts {
    pub(crate) fn is_local_authority(&self, authority: &str) -> bool {
        self.authorities.iter().any(|known| known.eq_ignore_ascii_case(authority))
    }
}

/// Organisation facts read within one transaction, by id and by code.
#[derive(Default)]
pub(crate) struct FeedCache {
    facts: std::collections::HashMap<kith_core::OrganisationId, FeedFacts>,
    codes: std::collections::HashMap<OrganisationCode, kith_core::OrganisationId>,
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
struct Filing<'a> {
    facts: &'a FeedFacts,
    actor: &'a Actor,
    message: Hl7MessageId,
    now: Timestamp,
}

/// Applies a readable message; returns the patient it was about.
fn apply(tx: &mut Tx<'_>, filing: &Filing<'_>, message: &Message) -> Result<Option<PatientId>, Stop> {
    let (code, trigger) = message.message_type();
    let at_msh9 = Some(kith_hl7::Location::field(1, "MSH", 9));
    let organisation = &filing.facts.organisation;
    let is_local = |authority: &str| filing.facts.is_local_authority(authority);
    let unsupported_event = |supported: &str| {
        Err(Stop::Reject(Rejection::new(
            adt::UNSUPPORTED_EVENT_CODE,
            at_msh9.clone(),
            format!("MSH-9: {code}^{trigger} is not supported (Kith reads {supported})"),
        )))
    };
    match code {
        "ADT" if trigger == "A40" => {
            let merge = adt::read_merge(message, &is_local).map_err(Stop::Reject)?;
            apply_merge(tx, filing, &merge).map(Some)
        }
        "ADT" => {
            let Some(event) = AdtEvent::from_trigger(trigger) else {
                return unsupported_event("ADT^A01, A04, A05, A08, A28, A31, A40");
            };
            let adt = read_adt(message, event, &is_local).map_err(Stop::Reject)?;
            apply_adt(tx, filing, &adt).map(Some)
        }
        "ORU" if trigger == "R01" => {
            let result = clinical::read_oru(message, &is_local).map_err(Stop::Reject)?;
            let patient = existing_patient(tx, organisation, &result.identity, result.pid_segment)?;
            let rules = &filing.facts.label_rules;
            for report in &result.reports {
                let draft = Draft {
                    kind: EntryKind::Result,
                    label: report.label(rules, &result.provenance),
                    title: &report.title,
                    body: report.body(),
                    effective_at: report.effective_at,
                    ends_at: None,
                    status: report.status,
                    source_key: &report.source_key,
                };
                file_entry(tx, filing, &patient, &draft, Some(&report.observations))?;
            }
            Ok(Some(patient.id))
        }
        "ORU" => unsupported_event("ORU^R01"),
        "MDM" if trigger == "T02" => {
            let document = clinical::read_mdm(message, &is_local).map_err(Stop::Reject)?;
            let patient = existing_patient(tx, organisation, &document.identity, document.pid_segment)?;
            let rules = &filing.facts.label_rules;
            let draft = Draft {
                kind: if document.is_care_plan() { EntryKind::CarePlan } else { EntryKind::Document },
                label: document.label(rules),
                title: &document.title,
                body: document.body.clone(),
                effective_at: document.effective_at,
                ends_at: None,
                status: document.status,
                source_key: &document.source_key,
            };
            file_entry(tx, filing, &patient, &draft, None)?;
            Ok(Some(patient.id))
        }
        "MDM" => unsupported_event("MDM^T02"),
        "SIU" => {
            let Some(event) = SiuEvent::from_trigger(trigger) else {
                return unsupported_event("SIU^S12, S13, S14, S15");
            };
            let appointment = clinical::read_siu(message, event, &is_local).map_err(Stop::Reject)?;
            let patient = existing_patient(tx, organisation, &appointment.identity, appointment.pid_segment)?;
            let rules = &filing.facts.label_rules;
            // S15 cancels (an unknown appointment is filed already cancelled); the others
            // book or change it, which also makes a cancelled appointment active again.
            let status = if event == SiuEvent::S15 { EntryStatus::Cancelled } else { EntryStatus::Booked };
            let draft = Draft {
                kind: EntryKind::Appointment,
                label: appointment.label(rules),
                title: &appointment.title,
                body: appointment.body.clone(),
                effective_at: appointment.start,
                ends_at: appointment.end,
                status,
                source_key: &appointment.source_key,
            };
            file_entry(tx, filing, &patient, &draft, None)?;
            Ok(Some(patient.id))
        }
        "" => Err(Stop::Reject(Rejection::new(
            adt::REQUIRED_FIELD_MISSING,
            at_msh9,
            "MSH-9: the message type is missing",
        ))),
        other => Err(Stop::Reject(Rejection::new(
            adt::UNSUPPORTED_MESSAGE_TYPE,
            at_msh9,
            format!("MSH-9: message type {other} is not supported"),
        ))),
    }
}

/// ADT^A40: the record named by MRG-1 goes into the record named by PID-3. Its local
/// identifiers, care links and entries move; its NHS number, email and account move when the
/// survivor has none; it then resolves to the survivor. A repeat (already merged) changes
/// nothing.
fn apply_merge(tx: &mut Tx<'_>, filing: &Filing<'_>, merge: &adt::MergeMessage) -> Result<PatientId, Stop> {
    let organisation = &filing.facts.organisation;
    let Some(mut survivor) = find_patient(tx, organisation, &merge.survivor, merge.pid_segment)? else {
        return reject(
            adt::UNKNOWN_KEY_IDENTIFIER,
            Some(kith_hl7::Location::field(merge.pid_segment, "PID", 3)),
            "PID-3: the record to keep was not found",
        );
    };
    let mrg1 = Some(kith_hl7::Location::field(merge.mrg_segment, "MRG", 1));
    // The record that goes, found without following merges.
    let mut candidates: Vec<Patient> = Vec::new();
    if let Some(nhs_number) = &merge.merged.nhs_number {
        candidates.extend(tx.patient_by_nhs_number(nhs_number)?);
    }
    for identifier in &merge.merged.local_identifiers {
        candidates.extend(tx.patient_by_local_identifier(organisation.id, identifier)?);
    }
    candidates.sort_by_key(|p| p.id);
    candidates.dedup_by_key(|p| p.id);
    let mut merged = match candidates.as_slice() {
        [] => return reject(adt::UNKNOWN_KEY_IDENTIFIER, mrg1, "MRG-1: the record to merge was not found"),
        [one] if one.id == survivor.id || one.merged_into == Some(survivor.id) => return Ok(survivor.id),
        [one] => one.clone(),
        _ => return reject(adt::DUPLICATE_KEY_IDENTIFIER, mrg1, "MRG-1: the identifiers match different records"),
    };
    if merged.account.is_some() && survivor.account.is_some() {
        return reject(
            adt::DUPLICATE_KEY_IDENTIFIER,
            mrg1,
            "MRG-1: both records belong to registered patients; they must be merged by hand",
        );
    }
    let counts = tx.move_patient_data(merged.id, survivor.id)?;
    // Unique values move only when the survivor lacks them (cleared first: they are unique).
    let nhs_number = if survivor.nhs_number.is_none() { merged.nhs_number.take() } else { None };
    let email = if survivor.demographics.email.is_none() { merged.demographics.email.take() } else { None };
    let account = if survivor.account.is_none() { merged.account.take() } else { None };
    merged.merged_into = Some(survivor.id);
    merged.updated_at = filing.now;
    tx.put_patient(&merged)?;
    survivor.nhs_number = survivor.nhs_number.or(nhs_number);
    survivor.demographics.email = survivor.demographics.email.or(email);
    if let Some(account) = account {
        survivor.account = Some(account);
        survivor.registration = merged.registration;
    }
    // Privacy first: a locked-down record keeps its lock-down in the survivor.
    survivor.sharing_disabled |= merged.sharing_disabled;
    survivor.updated_at = filing.now;
    tx.put_patient(&survivor)?;
    let detail = format!(
        "{} identifiers, {} care links, {} entries moved",
        counts.identifiers, counts.care_links, counts.entries
    );
    for (patient, other) in [(survivor.id, merged.id), (merged.id, survivor.id)] {
        tx.audit(
            AuditBuilder::new(filing.now, filing.actor.clone(), Channel::Hl7, "patient.merge")
                .organisation(organisation.id)
                .patient(patient)
                .subject(other)
                .reason(&detail)
                .basis("administration")
                .build(),
        );
    }
    Ok(survivor.id)
}

/// An entry as a message describes it.
struct Draft<'a> {
    kind: EntryKind,
    label: kith_core::PrivacyLabel,
    title: &'a str,
    body: String,
    effective_at: Timestamp,
    /// When the entry's period ends (an appointment's end), if the message says.
    ends_at: Option<Timestamp>,
    status: EntryStatus,
    source_key: &'a str,
}

/// Files an entry under its source key, authored by the organisation's Patient Record Team:
/// a new entry, or a new version of the one filed before (the earlier version is kept).
fn file_entry(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    patient: &Patient,
    draft: &Draft<'_>,
    observations: Option<&[Observation]>,
) -> Result<(), Stop> {
    let prt = &filing.facts.prt;
    let title: String = draft.title.chars().take(300).collect();
    let title = Title::parse(&title).or_else(|_| Title::parse("Untitled")).map_err(AppError::from)?;
    let (entry, action) = match tx.entry_by_source_key(patient.id, draft.source_key)? {
        Some(existing) => {
            let entry = Entry {
                kind: draft.kind,
                label: Some(draft.label),
                title,
                body: draft.body.clone(),
                effective_at: draft.effective_at,
                recorded_at: filing.now,
                version: existing.version + 1,
                status: Some(draft.status),
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
    tx.audit(
        AuditBuilder::new(filing.now, filing.actor.clone(), Channel::Hl7, action)
            .organisation(filing.facts.organisation.id)
            .team(prt.id)
            .patient(patient.id)
            .basis("administration")
            .data(entry.kind.code().to_owned(), kith_core::LabelSet::EMPTY.with(draft.label))
            .subject(format!("{} v{}", entry.id, entry.version))
            .build(),
    );
    Ok(())
}

/// The one record the identifiers name (following merges), or an error saying why not.
fn find_patient(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    identity: &PatientIdentity,
    pid_segment: usize,
) -> Result<Option<Patient>, Stop> {
    let mut found: Vec<Patient> = Vec::new();
    if let Some(nhs_number) = &identity.nhs_number {
        found.extend(tx.patient_by_nhs_number(nhs_number)?);
    }
    for identifier in &identity.local_identifiers {
        found.extend(tx.patient_by_local_identifier(organisation.id, identifier)?);
    }
    let mut ids: Vec<PatientId> = found.iter().map(|p| p.merged_into.unwrap_or(p.id)).collect();
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(tx.patient(*one)?.ok_or_else(|| Stop::Internal("a matched record vanished".to_owned()))?)),
        _ => reject(
            adt::DUPLICATE_KEY_IDENTIFIER,
            Some(kith_hl7::Location::field(pid_segment, "PID", 3)),
            "PID-3: the identifiers match different records; merge them (ADT^A40) or correct the identifiers",
        ),
    }
}

/// The patient a result, document or appointment is about: they must be known already.
fn existing_patient(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    identity: &PatientIdentity,
    pid_segment: usize,
) -> Result<Patient, Stop> {
    match find_patient(tx, organisation, identity, pid_segment)? {
        Some(patient) => Ok(patient),
        None => reject(
            adt::UNKNOWN_KEY_IDENTIFIER,
            Some(kith_hl7::Location::field(pid_segment, "PID", 3)),
            "patient not found: send their ADT^A28 first (the message is kept and can be reprocessed)",
        ),
    }
}

fn reject<T>(
    code: (&'static str, &'static str),
    location: Option<kith_hl7::Location>,
    text: impl Into<String>,
) -> Result<T, Stop> {
    Err(Stop::Reject(Rejection::new(code, location, text)))
}

/// Creates or updates the patient, then applies ZTM team changes.
fn apply_adt(tx: &mut Tx<'_>, filing: &Filing<'_>, adt: &AdtMessage) -> Result<PatientId, Stop> {
    let (organisation, actor, now) = (&filing.facts.organisation, filing.actor, filing.now);
    let who = LinkActor::Feed(actor.clone());
    let prt = &filing.facts.prt;
    let patient = match find_patient(tx, organisation, &adt.identity, adt.pid_segment)? {
        None => {
            if !adt.event.is_person_information() && !filing.facts.create_on_any_adt {
                return reject(
                    adt::UNKNOWN_KEY_IDENTIFIER,
                    Some(kith_hl7::Location::field(adt.pid_segment, "PID", 3)),
                    "patient not found: this organisation creates records from A28 and A31 only",
                );
            }
            let d = &adt.details;
            let (Some(family_name), Some(given_name)) = (d.family_name.clone(), d.given_name.clone()) else {
                let pid5 = Some(kith_hl7::Location::field(adt.pid_segment, "PID", 5));
                return reject(
                    adt::REQUIRED_FIELD_MISSING,
                    pid5,
                    "PID-5: a new record needs the family and given names",
                );
            };
            let Some(birth_date) = d.birth_date else {
                let pid7 = Some(kith_hl7::Location::field(adt.pid_segment, "PID", 7));
                return reject(adt::REQUIRED_FIELD_MISSING, pid7, "PID-7: a new record needs the date of birth");
            };
            let demographics = Demographics {
                family_name,
                given_name,
                birth_date,
                sex: d.sex.unwrap_or(Sex::Unknown),
                email: d.email.clone(),
                mobile: d.mobile.clone(),
                address: d.address.clone(),
            };
            insert_patient_record(
                tx,
                &who,
                organisation,
                prt,
                &demographics,
                adt.identity.nhs_number.as_ref(),
                &adt.identity.local_identifiers,
                // find_patient looked every identifier up just now and found no record.
                IdentifierCheck::DoneByCaller,
                now,
            )?
        }
        Some(patient) => update_from_adt(tx, organisation, prt, &who, actor, patient, adt, now)?,
    };
    apply_team_changes(tx, organisation, &who, actor, &patient, adt, now)?;
    Ok(patient.id)
}

#[allow(clippy::too_many_arguments)]
fn update_from_adt(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    prt: &Team,
    who: &LinkActor<'_>,
    actor: &Actor,
    mut patient: Patient,
    adt: &AdtMessage,
    now: Timestamp,
) -> Result<Patient, Stop> {
    let mut changed = Vec::new();
    let previous_email = patient.demographics.email.clone();
    let d = &adt.details;
    let demographics = &mut patient.demographics;
    if let Some(family) = d.family_name.as_ref().filter(|v| **v != demographics.family_name) {
        demographics.family_name = family.clone();
        changed.push("family_name");
    }
    if let Some(given) = d.given_name.as_ref().filter(|v| **v != demographics.given_name) {
        demographics.given_name = given.clone();
        changed.push("given_name");
    }
    if let Some(birth_date) = d.birth_date.filter(|v| *v != demographics.birth_date) {
        demographics.birth_date = birth_date;
        changed.push("birth_date");
    }
    if let Some(sex) = d.sex.filter(|v| *v != demographics.sex) {
        demographics.sex = sex;
        changed.push("sex");
    }
    if let Some(mobile) = d.mobile.as_ref().filter(|v| demographics.mobile.as_ref() != Some(v)) {
        demographics.mobile = Some(mobile.clone());
        changed.push("mobile");
    }
    if let Some(address) = d.address.as_ref().filter(|v| demographics.address.as_ref() != Some(v)) {
        demographics.address = Some(address.clone());
        changed.push("address");
    }
    if let Some(email) = d.email.as_ref().filter(|v| demographics.email.as_ref() != Some(v)) {
        ensure_email_free(tx, email, Some(patient.id))?;
        demographics.email = Some(email.clone());
        changed.push("email");
    }
    if let Some(nhs_number) = adt.identity.nhs_number.as_ref().filter(|n| patient.nhs_number.as_ref() != Some(n)) {
        // Matched on a local identifier with a new NHS number that no other record has (it
        // would have matched that record): the number is corrected, as the modelled system allows.
        patient.nhs_number = Some(nhs_number.clone());
        changed.push("nhs_number");
    }
    for identifier in &adt.identity.local_identifiers {
        if tx.patient_by_local_identifier(organisation.id, identifier)?.is_none() {
            tx.insert_patient_identifier(patient.id, organisation.id, identifier, now)?;
            changed.push("local_identifier");
        }
    }
    if !changed.is_empty() {
        changed.dedup();
        patient.updated_at = now;
        tx.put_patient(&patient)?;
        tx.audit(
            AuditBuilder::new(now, actor.clone(), Channel::Hl7, "patient.update")
                .organisation(organisation.id)
                .patient(patient.id)
                .basis("administration")
                .subject(changed.join(","))
                .build(),
        );
    }
    // A record known from elsewhere enters this organisation through its PRT.
    if !tx.patient_in_organisation(patient.id, organisation.id)? {
        write_link(tx, who, &patient, prt, prt.default_labels, LinkBasis::OrganisationRecord, now)?;
    }
    if changed.contains(&"email") {
        crate::invitations::invite_on_new_email(
            tx,
            actor.clone(),
            Channel::Hl7,
            organisation,
            previous_email.as_ref(),
            &mut patient,
            now,
        )?;
    }
    Ok(patient)
}

/// ZTM-1: link the patient to each team (its default labels, HL7 implied consent) unless
/// already in it; ZTM-2: discharge from each team. Unknown aliases and impossible changes
/// reject the whole message (the savepoint undoes what was done).
fn apply_team_changes(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    who: &LinkActor<'_>,
    actor: &Actor,
    patient: &Patient,
    adt: &AdtMessage,
    now: Timestamp,
) -> Result<(), Stop> {
    let team = |tx: &mut Tx<'_>,
                alias: &kith_core::text::TeamAlias,
                location: &kith_hl7::Location|
     -> Result<Team, Stop> {
        match tx.team_by_alias(organisation.id, alias)? {
            Some(team) => Ok(team),
            None => reject(
                adt::TABLE_VALUE_NOT_FOUND,
                Some(location.clone()),
                format!("ZTM-{}: no team has the alias {alias} in {}", location.field.unwrap_or(1), organisation.code),
            ),
        }
    };
    for (alias, location) in &adt.teams.add {
        let team = team(tx, alias, location)?;
        if team.kind == TeamKind::PatientRecord
            || tx.care_link(patient.id, team.id)?.is_some_and(|link| link.is_active())
        {
            continue;
        }
        let facts = NewLinkFacts {
            team_kind: team.kind,
            team_status: team.status,
            sharing_disabled: patient.sharing_disabled,
            patient_in_organisation: true,
        };
        if let Err(refusal) = check_new_link(&facts) {
            return reject(
                adt::TABLE_VALUE_NOT_FOUND,
                Some(location.clone()),
                format!("ZTM-1: team {alias}: {refusal}"),
            );
        }
        write_link(tx, who, patient, &team, team.default_labels, LinkBasis::Hl7ImpliedConsent, now)?;
    }
    for (alias, location) in &adt.teams.discharge {
        let team = team(tx, alias, location)?;
        if team.kind == TeamKind::PatientRecord {
            return reject(
                adt::TABLE_VALUE_NOT_FOUND,
                Some(location.clone()),
                format!("ZTM-2: {alias} is the Patient Record Team; a patient is not discharged from the organisation"),
            );
        }
        let Some(mut link) = tx.care_link(patient.id, team.id)?.filter(CareLink::is_active) else {
            return reject(
                adt::TABLE_VALUE_NOT_FOUND,
                Some(location.clone()),
                format!("ZTM-2: the patient is not in team {alias}"),
            );
        };
        link.discharged_at = Some(now);
        link.updated_at = now;
        tx.put_care_link(&link)?;
        tx.audit(
            AuditBuilder::new(now, actor.clone(), Channel::Hl7, "care_link.discharge")
                .organisation(organisation.id)
                .team(team.id)
                .patient(patient.id)
                .basis("administration")
                .build(),
        );
    }
    Ok(())
}
