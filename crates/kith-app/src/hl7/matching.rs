//! Which record a message is about: the identifiers looked up, followed through merges,
//! and the matching rule (`kith_core::identity`) asked.

use kith_core::consent::LinkBasis;
use kith_core::identity::{
    Candidate, Conflict, Creation, FoundBy, Match, MatchFacts, MessagePatient, RecordFacts, decide_match,
};
use kith_core::model::{Organisation, Patient};
use kith_core::patient::{NhsNumber, RegistrationStatus};
use kith_core::text::Name;
use kith_core::{Date, PatientId};
use kith_hl7::Message;
use kith_hl7::adt::{self, PatientIdentity, Rejection, read_pid_names_and_birth_date};
use kith_store::Tx;

use super::feed::{Filing, Override};
use super::stop::{Held, Stop, pid3, reject};
use crate::patients::{LinkActor, write_link};

/// What the matching rule knows of a record, loaded.
fn record_facts(tx: &mut Tx<'_>, organisation: &Organisation, patient: &Patient) -> Result<RecordFacts, Stop> {
    let (in_sending_organisation, shared_with_other_organisation) =
        tx.record_organisations(patient.id, organisation.id)?;
    Ok(RecordFacts {
        id: patient.id,
        nhs_number: patient.nhs_number.clone(),
        family_name: patient.demographics.family_name.clone(),
        birth_date: patient.demographics.birth_date,
        in_sending_organisation,
        shared_with_other_organisation,
        registered: patient.registration == RegistrationStatus::Registered,
    })
}

/// The record that survived any merges of `patient`.
fn survivor(tx: &mut Tx<'_>, patient: Patient) -> Result<Patient, Stop> {
    match patient.merged_into {
        None => Ok(patient),
        Some(into) => {
            tx.patient(into)?.ok_or_else(|| Stop::Internal("a merged record's survivor is missing".to_owned()))
        }
    }
}

/// One row per identifier of the message that finds a record: the NHS number anywhere,
/// local identifiers within the sending organisation, each followed through merges.
pub(crate) fn find(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    identity: &PatientIdentity,
) -> Result<Vec<Candidate>, Stop> {
    Ok(find_records(tx, organisation, identity)?.0)
}

/// [`find`], with the records the candidates name.
fn find_records(
    tx: &mut Tx<'_>,
    organisation: &Organisation,
    identity: &PatientIdentity,
) -> Result<(Vec<Candidate>, Vec<Patient>), Stop> {
    let mut found: Vec<(FoundBy, Patient)> = Vec::new();
    if let Some(nhs_number) = &identity.nhs_number
        && let Some(patient) = tx.patient_by_nhs_number(nhs_number)?
    {
        found.push((FoundBy::NhsNumber, patient));
    }
    for identifier in &identity.local_identifiers {
        if let Some(patient) = tx.patient_by_local_identifier(organisation.id, identifier)? {
            found.push((FoundBy::LocalIdentifier, patient));
        }
    }
    let mut candidates: Vec<Candidate> = Vec::with_capacity(found.len());
    let mut records: Vec<Patient> = Vec::with_capacity(found.len());
    for (found_by, patient) in found {
        let patient = survivor(tx, patient)?;
        let record = match candidates.iter().find(|known| known.record.id == patient.id) {
            Some(known) => known.record.clone(),
            None => {
                let facts = record_facts(tx, organisation, &patient)?;
                records.push(patient);
                facts
            }
        };
        candidates.push(Candidate { found_by, record });
    }
    Ok((candidates, records))
}

/// Which record a message is about, as decided.
pub(crate) enum Resolved {
    Record {
        patient: Box<Patient>,
        facts: RecordFacts,
        join: bool,
        give_nhs_number: bool,
    },
    New,
    Unknown,
    /// A record the sender's organisation does not have and has not shown is its patient (or
    /// that is locked down). To the sender it is as unknown as a record that does not exist:
    /// the same answer, so that no feed can learn whether another organisation has someone.
    /// `detail` is for the data-quality staff (stored with the message).
    NotTheSendersRecord {
        held: Held,
        detail: String,
    },
}

/// Applies the matching rule (or a person's override of it) to a message's identifiers.
pub(crate) fn resolve(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    identity: &PatientIdentity,
    family_name: Option<&Name>,
    birth_date: Option<Date>,
    creation: Creation,
) -> Result<Resolved, Stop> {
    let organisation = &filing.facts.organisation;
    if let Override::ApplyTo(id) = filing.how {
        let patient = tx.patient(id)?.ok_or_else(|| Stop::Internal("the chosen record does not exist".to_owned()))?;
        let patient = survivor(tx, patient)?;
        let facts = record_facts(tx, organisation, &patient)?;
        // The person confirmed who it is; still, a record of another organisation joins only
        // when the message's name and birth date agree with it (a person resolving one
        // organisation's queue cannot claim another's patient), a record's NHS number is never
        // changed, and one is given only when no other record has it.
        let join = !facts.in_sending_organisation;
        if join {
            let shown = decide_match(&MatchFacts {
                message: MessagePatient { nhs_number: None, family_name, birth_date },
                candidates: &[Candidate { found_by: FoundBy::LocalIdentifier, record: facts.clone() }],
                creation: Creation::NotAllowed,
            });
            if !matches!(shown, Match::Record { .. }) || patient.sharing_disabled {
                return Err(Stop::Reject(Rejection::new(
                    adt::UNKNOWN_KEY_IDENTIFIER,
                    None,
                    "the chosen record is not this organisation's, and the message's family name and birth date do not show it is the same person",
                )));
            }
        }
        let give_nhs_number = match (&identity.nhs_number, &patient.nhs_number) {
            (Some(number), None) => tx.patient_by_nhs_number(number)?.is_none(),
            _ => false,
        };
        return Ok(Resolved::Record { patient: Box::new(patient), facts, join, give_nhs_number });
    }
    let (candidates, mut records) = find_records(tx, organisation, identity)?;
    let decide = |candidates: &[Candidate], nhs_number: Option<&NhsNumber>| {
        decide_match(&MatchFacts {
            message: MessagePatient { nhs_number, family_name, birth_date },
            candidates,
            creation,
        })
    };
    let mut decided = decide(&candidates, identity.nhs_number.as_ref());
    if filing.how == Override::WithoutConflictingField {
        // Without the NHS number when the identifiers disagree; then, without the name and
        // birth date when those disagree (they are then not applied either).
        if let Match::Conflict(Conflict::IdentifiersDisagree { .. } | Conflict::NhsNumberDiffers { .. }) = decided {
            let without: Vec<Candidate> =
                candidates.iter().filter(|c| c.found_by != FoundBy::NhsNumber).cloned().collect();
            decided = decide(&without, None);
        }
        if let Match::Conflict(Conflict::DemographicsDisagree { record }) = decided {
            decided = Match::Record { id: record, join: false, give_nhs_number: false };
        }
    }
    let in_sending_organisation =
        |id: &PatientId| candidates.iter().any(|c| c.record.id == *id && c.record.in_sending_organisation);
    match decided {
        Match::New => Ok(Resolved::New),
        Match::Unknown => Ok(Resolved::Unknown),
        Match::Conflict(conflict @ Conflict::NotTheSamePerson { .. }) => {
            let [record] = conflict.records()[..] else { return Err(Stop::Internal("one record expected".to_owned())) };
            // The sender's own record, missing its NHS number: a real conflict about its own
            // patient, said as such. Anyone else's: as unknown.
            if in_sending_organisation(&record) {
                return Err(Stop::Hold(conflict.into()));
            }
            let detail = conflict.to_string();
            Ok(Resolved::NotTheSendersRecord { held: Held::silent(conflict), detail })
        }
        Match::Conflict(conflict) => {
            // A conflict that names another organisation's record, or says a record is shared,
            // is held without saying so to the sender (an ACK must not tell one organisation
            // about another's patients).
            let discloses =
                matches!(conflict, Conflict::SharedRecordChange { .. } | Conflict::MergeAcrossOrganisations { .. })
                    || conflict.records().iter().any(|id| !in_sending_organisation(id));
            Err(Stop::Hold(if discloses { Held::silent(conflict) } else { conflict.into() }))
        }
        Match::Record { id, join, give_nhs_number } => {
            let facts = candidates
                .iter()
                .find(|c| c.record.id == id)
                .map(|c| c.record.clone())
                .ok_or_else(|| Stop::Internal("the matched record is not a candidate".to_owned()))?;
            let at = records
                .iter()
                .position(|record| record.id == id)
                .ok_or_else(|| Stop::Internal("the matched record is not a candidate".to_owned()))?;
            let patient = records.swap_remove(at);
            // A locked-down record joins no further organisation from a feed.
            if join && patient.sharing_disabled {
                let detail = format!(
                    "record {id} is locked down (sharing disabled); a feed does not link it to a further organisation"
                );
                let held = Held { code: "sharing_disabled", text: detail.clone(), summary: None, records: vec![id] };
                return Ok(Resolved::NotTheSendersRecord { held, detail });
            }
            Ok(Resolved::Record { patient: Box::new(patient), facts, join, give_nhs_number })
        }
    }
}

/// Links a record that has just been shown to be the same person to the sending
/// organisation, through its Patient Record Team.
pub(crate) fn join_organisation(tx: &mut Tx<'_>, filing: &Filing<'_>, patient: &Patient) -> Result<(), Stop> {
    let prt = &filing.facts.prt;
    let who = LinkActor::Feed(filing.actor.clone());
    write_link(tx, &who, patient, prt, prt.default_labels, LinkBasis::OrganisationRecord, filing.now)?;
    Ok(())
}

const PATIENT_NOT_FOUND: &str =
    "patient not found: send their ADT^A28 first (the message is kept and can be reprocessed)";

/// The patient a result, document or appointment is about: known already, and in the
/// organisation (or shown to be the same person, and linked to it now).
pub(crate) fn clinical_patient(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    message: &Message,
    identity: &PatientIdentity,
    pid_segment: usize,
) -> Result<Patient, Stop> {
    let (family_name, birth_date) = read_pid_names_and_birth_date(message);
    let resolved = match resolve(tx, filing, identity, family_name.as_ref(), birth_date, Creation::NotAllowed) {
        // A result does not give a record its NHS number: a new number on the sender's own
        // record that has none is set aside, and the rest of the rule decides.
        Err(Stop::Hold(held)) if held.code == "not_the_same_person" => {
            let without = PatientIdentity { nhs_number: None, ..identity.clone() };
            match resolve(tx, filing, &without, family_name.as_ref(), birth_date, Creation::NotAllowed)? {
                record @ Resolved::Record { .. } => record,
                _ => return Err(Stop::Hold(held)),
            }
        }
        other => other?,
    };
    match resolved {
        Resolved::Record { patient, join, .. } => {
            if join {
                join_organisation(tx, filing, &patient)?;
            }
            Ok(*patient)
        }
        Resolved::New | Resolved::Unknown => reject(adt::UNKNOWN_KEY_IDENTIFIER, pid3(pid_segment), PATIENT_NOT_FOUND),
        Resolved::NotTheSendersRecord { detail, .. } => Err(Stop::RejectWithDetail(
            Rejection::new(adt::UNKNOWN_KEY_IDENTIFIER, pid3(pid_segment), PATIENT_NOT_FOUND),
            detail,
        )),
    }
}
