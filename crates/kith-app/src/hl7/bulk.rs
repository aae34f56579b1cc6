//! An import batch's new records, written in bulk.
//!
//! Most of a backfill registers people Kith has never seen: an ADT that may create a record,
//! naming no record Kith has, no team (ZTM) and no email (which would invite the patient).
//! For such a message the outcome is known before anything is written — a new record with
//! its identifiers, linked to the organisation's Patient Record Team, both audited, and the
//! message stored with its AA — so a batch's worth of them is checked with a few look-ups
//! and written with multi-row inserts instead of about ten statements each.
//!
//! A message goes this way only when nothing else in its batch could affect it or be
//! affected by it: no other message of the batch shares its control id, an identifier value
//! or an email (compared as coarsely as the parallel import compares them, see
//! [`super::import`]). The others are then applied one by one, in file order, exactly as
//! the live feed applies them; since the two sets share nothing, each message gets the
//! outcome a one-by-one import gives it.
//!
//! Should another writer take one of their identifiers between the look-up and the insert,
//! the unique index refuses the insert and the whole transaction runs again, as any
//! transaction that meets a conflict does, and this time the look-up finds that record.
//! Any other failure of the bulk writes is undone by their savepoint and those messages are
//! applied one by one, each then getting the answer it would have had alone.

use std::collections::{HashMap, HashSet};

use kith_core::audit::Channel;
use kith_core::consent::LinkBasis;
use kith_core::model::{CareLink, Hl7MessageRecord, Hl7MessageStatus, Patient};
use kith_core::patient::{Demographics, LocalIdentifier, NhsNumber, Sex};
use kith_core::text::OrganisationCode;
use kith_core::{Hl7MessageId, Timestamp};
use kith_hl7::ack::AckCode;
use kith_hl7::adt::read_adt;
use kith_hl7::events::Action;
use kith_store::{NewHl7Message, NewPatientIdentifier, Tx};

use super::feed::{FeedCache, FeedFacts};
use super::ingest::{Hl7Sender, Ingested, ingest_in};
use super::ordering::ordering_keys;
use super::reading::Reading;
use crate::patients::{link_created_event, new_link, new_patient_record, patient_created_event};
use crate::{AppResult, Operator, new_uuid};

/// A message that registers a new person, as read.
struct Registration {
    demographics: Demographics,
    nhs_number: Option<NhsNumber>,
    local_identifiers: Vec<LocalIdentifier>,
}

/// The registration a message makes when it names no record Kith has, if it is one that
/// can go in bulk (see the module's documentation).
fn registration(reading: &Reading, facts: &FeedFacts, now: Timestamp) -> Option<Registration> {
    if reading.parse_rejection.is_some() || reading.control.is_empty() {
        return None;
    }
    let message = reading.parsed.message.as_ref()?;
    let (code, trigger) = message.message_type();
    if code != "ADT" {
        return None;
    }
    // Only registrations that may create a record (a merge, a visit or another event is not).
    match kith_hl7::events::action(code, trigger)? {
        Action::Register { person_information } if person_information || facts.create_on_any_adt => {}
        _ => return None,
    }
    let adt = read_adt(message, &|authority: &str| facts.is_local_authority(authority)).ok()?;
    let d = adt.details;
    if !adt.teams.add.is_empty() || !adt.teams.discharge.is_empty() || d.email.is_some() {
        return None;
    }
    // An impossible birth date is refused one by one, with its reason.
    let today = now.date();
    if d.birth_date.is_some_and(|date| kith_core::identity::check_birth_date(date, today).is_err()) {
        return None;
    }
    Some(Registration {
        demographics: Demographics {
            family_name: d.family_name?,
            given_name: d.given_name?,
            birth_date: d.birth_date?,
            sex: d.sex.unwrap_or(Sex::Unknown),
            email: None,
            mobile: d.mobile,
            address: d.address,
        },
        nhs_number: adt.identity.nhs_number,
        local_identifiers: adt.identity.local_identifiers,
    })
}

/// Ingests one batch of an organisation's import inside the caller's transaction: the
/// registrations that can go in bulk first, then the rest one by one in file order. The
/// outcomes come back in the order given.
pub(crate) fn ingest_import_batch(
    tx: &mut Tx<'_>,
    cache: &mut FeedCache,
    organisation: &OrganisationCode,
    operator: &Operator,
    batch: &[(&Reading, &[u8])],
    now: Timestamp,
) -> AppResult<Vec<Ingested>> {
    let sender = Hl7Sender::Import { organisation, operator };
    let mut outcomes: Vec<Option<Ingested>> = vec![None; batch.len()];
    let organisation_id = cache.organisation_id(tx, organisation)?;
    let facts = cache.facts(tx, organisation_id)?;
    let bulk = registrations(tx, facts, batch, now)?;
    if !bulk.is_empty()
        && let Some(written) = write_registrations(tx, facts, operator, batch, &bulk, now)?
    {
        for (index, ingested) in written {
            outcomes[index] = Some(ingested);
        }
    }
    for (index, (reading, raw)) in batch.iter().enumerate() {
        if outcomes[index].is_none() {
            outcomes[index] = Some(ingest_in(tx, cache, sender, reading, raw, now)?);
        }
    }
    Ok(outcomes.into_iter().map(|outcome| outcome.expect("every message has its outcome")).collect())
}

/// The messages of the batch that go in bulk, by index, with what they register.
fn registrations(
    tx: &mut Tx<'_>,
    facts: &FeedFacts,
    batch: &[(&Reading, &[u8])],
    now: Timestamp,
) -> AppResult<Vec<(usize, Registration)>> {
    // Keys shared within the batch order their messages: those stay one by one.
    let keys: Vec<Vec<String>> = batch.iter().map(|(reading, _)| ordering_keys(reading, &[])).collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for key in keys.iter().flatten() {
        *uses.entry(key.as_str()).or_default() += 1;
    }
    let mut candidates: Vec<(usize, Registration)> = batch
        .iter()
        .enumerate()
        .filter(|(index, _)| keys[*index].iter().all(|key| uses[key.as_str()] == 1))
        .filter_map(|(index, (reading, _))| registration(reading, facts, now).map(|found| (index, found)))
        .collect();
    if candidates.is_empty() {
        return Ok(candidates);
    }
    // Known to Kith already (a repeat, or a record the message names): one by one.
    let organisation = facts.organisation.id;
    let mut repeats: HashSet<(String, String, String)> = HashSet::new();
    let mut senders: Vec<(&str, &str)> =
        candidates.iter().map(|(i, _)| (batch[*i].0.application.as_str(), batch[*i].0.facility.as_str())).collect();
    senders.sort_unstable();
    senders.dedup();
    for (application, facility) in senders {
        let controls: Vec<&str> = candidates
            .iter()
            .map(|(i, _)| batch[*i].0)
            .filter(|reading| reading.application == application && reading.facility == facility)
            .map(|reading| reading.control.as_str())
            .collect();
        for control in tx.stored_control_ids(organisation, application, facility, &controls)? {
            repeats.insert((application.to_owned(), facility.to_owned(), control));
        }
    }
    let numbers: Vec<&NhsNumber> = candidates.iter().filter_map(|(_, r)| r.nhs_number.as_ref()).collect();
    let known_numbers = tx.records_by_nhs_number(&numbers)?;
    let identifiers: Vec<&LocalIdentifier> = candidates.iter().flat_map(|(_, r)| &r.local_identifiers).collect();
    let known_identifiers = tx.records_by_local_identifier(organisation, &identifiers)?;
    candidates.retain(|(index, found)| {
        let reading = batch[*index].0;
        let repeat =
            repeats.contains(&(reading.application.clone(), reading.facility.clone(), reading.control.clone()));
        let known = found.nhs_number.as_ref().is_some_and(|number| known_numbers.contains_key(number.as_str()))
            || found.local_identifiers.iter().any(|identifier| {
                known_identifiers.contains_key(&(identifier.authority().to_owned(), identifier.value().to_owned()))
            });
        !repeat && !known
    });
    Ok(candidates)
}

/// Writes the registrations, their audit events and their stored messages with their AAs,
/// in a savepoint: `None` when the writes failed and were undone (the messages are then
/// applied one by one); a conflict (a unique index, a deadlock) is returned, so that the
/// transaction runs again.
fn write_registrations(
    tx: &mut Tx<'_>,
    facts: &FeedFacts,
    operator: &Operator,
    batch: &[(&Reading, &[u8])],
    bulk: &[(usize, Registration)],
    now: Timestamp,
) -> AppResult<Option<Vec<(usize, Ingested)>>> {
    let (organisation, prt) = (&facts.organisation, &facts.prt);
    let actor = operator.actor();
    let mut patients: Vec<Patient> = Vec::with_capacity(bulk.len());
    let mut links: Vec<CareLink> = Vec::with_capacity(bulk.len());
    let mut events = Vec::with_capacity(2 * bulk.len());
    let mut records: Vec<Hl7MessageRecord> = Vec::with_capacity(bulk.len());
    for (index, registration) in bulk {
        let reading = batch[*index].0;
        let patient = new_patient_record(&registration.demographics, registration.nhs_number.as_ref(), now);
        // As the feed records a new record: created, then linked to the PRT, as the sender.
        let link = new_link(patient.id, prt, prt.default_labels, LinkBasis::OrganisationRecord, None, now);
        events.push(patient_created_event(actor.clone(), Channel::Hl7, organisation, prt, patient.id, now));
        events.push(link_created_event(actor.clone(), Channel::Hl7, &link, prt, false));
        records.push(Hl7MessageRecord {
            id: Hl7MessageId::from_uuid(new_uuid()),
            organisation: organisation.id,
            integration: None,
            sending_application: reading.application.clone(),
            sending_facility: reading.facility.clone(),
            control_id: Some(reading.control.clone()),
            message_type: reading.message_type.clone(),
            status: Hl7MessageStatus::Accepted,
            ack: reading.respond(now, AckCode::Accept, None),
            error: None,
            patient: Some(patient.id),
            received_at: now,
            conflict: None,
            conflict_records: Vec::new(),
            resolution: None,
        });
        patients.push(patient);
        links.push(link);
    }
    let identifiers: Vec<NewPatientIdentifier<'_>> = bulk
        .iter()
        .zip(&patients)
        .flat_map(|((_, registration), patient)| {
            registration.local_identifiers.iter().map(|identifier| NewPatientIdentifier {
                patient: patient.id,
                organisation: organisation.id,
                identifier,
                created_at: now,
            })
        })
        .collect();
    let stored: Vec<NewHl7Message<'_>> = records
        .iter()
        .zip(bulk)
        .map(|(record, (index, _))| NewHl7Message { record, raw: batch[*index].1, processed_at: now })
        .collect();
    let written = tx.savepoint(|tx| {
        tx.insert_new_patients(&patients)?;
        tx.insert_patient_identifiers(&identifiers)?;
        tx.insert_care_links(&links)?;
        tx.insert_hl7_messages(&stored)?;
        for event in events {
            tx.audit(event);
        }
        Ok::<_, kith_store::StoreError>(())
    });
    match written {
        Ok(()) => Ok(Some(
            bulk.iter()
                .zip(records)
                .map(|((index, _), record)| {
                    let ingested = Ingested {
                        ack: record.ack,
                        code: AckCode::Accept,
                        message: Some(record.id),
                        duplicate: false,
                        status: Some(Hl7MessageStatus::Accepted),
                    };
                    (*index, ingested)
                })
                .collect(),
        )),
        Err(error) if error.is_retryable() => Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "bulk registrations undone; the messages are applied one by one");
            Ok(None)
        }
    }
}
