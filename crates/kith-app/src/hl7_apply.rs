//! Applying one readable message: the events table (`kith_hl7::events`) says what kind of
//! change it is; the matching rule (`kith_core::identity`) says which record, and what of
//! it the message may change. Everything here runs inside the message's savepoint: a
//! rejection or a hold undoes whatever was written.

use kith_core::audit::Channel;
use kith_core::consent::{LinkBasis, NewLinkFacts, check_new_link};
use kith_core::identity::{
    Candidate, Conflict, Creation, Current, Field, FieldDecision, FieldFacts, FoundBy, KeepReason, Match, MatchFacts,
    MergeDecision, MergeFacts, MergeRefusal, MergedRecordFacts, MessagePatient, RecordFacts, check_birth_date,
    decide_field, decide_match, decide_merge,
};
use kith_core::model::{CareLink, Entry, EntryStatus, Observation, Organisation, Patient, Team};
use kith_core::patient::{Demographics, EntryKind, NhsNumber, RegistrationStatus, Sex};
use kith_core::team::TeamKind;
use kith_core::text::{Name, Title};
use kith_core::{Date, EntryId, PatientId, PrivacyLabel, Timestamp};
use kith_hl7::Message;
use kith_hl7::adt::{self, AdtMessage, PatientIdentity, Rejection, read_adt, read_pid_names_and_birth_date};
use kith_hl7::clinical;
use kith_hl7::events::{Action, AppointmentAction, DocumentAction};
use kith_store::Tx;

use crate::hl7::{Filing, Held, Stop};
use crate::patients::{IdentifierCheck, LinkActor, insert_patient_record, write_link};
use crate::{AppError, AuditBuilder, new_uuid};

/// How a person resolving a held message overrides the matching rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Override {
    /// As the rule says.
    None,
    /// The message is about this record (the person checked); held field changes apply.
    ApplyTo(PatientId),
    /// Without the field that conflicts: the NHS number when identifiers disagree; the name
    /// and birth date changes otherwise.
    WithoutConflictingField,
}

/// What applying a message came to.
pub(crate) struct Applied {
    pub(crate) patient: Option<PatientId>,
    /// What the message gave that was not applied, and why (told to the sender in the ACK
    /// and kept with the message for the data-quality staff).
    pub(crate) notices: Vec<String>,
}

impl Applied {
    fn about(patient: PatientId, notices: Vec<String>) -> Self {
        Applied { patient: Some(patient), notices }
    }
}

fn reject<T>(
    code: (&'static str, &'static str),
    location: Option<kith_hl7::Location>,
    text: impl Into<String>,
) -> Result<T, Stop> {
    Err(Stop::Reject(Rejection::new(code, location, text)))
}

fn pid3(pid_segment: usize) -> Option<kith_hl7::Location> {
    Some(kith_hl7::Location::field(pid_segment, "PID", 3))
}

/// Applies a readable message; returns the patient it was about and what was not applied.
pub(crate) fn apply(tx: &mut Tx<'_>, filing: &Filing<'_>, message: &Message) -> Result<Applied, Stop> {
    let (code, trigger) = message.message_type();
    let at_msh9 = Some(kith_hl7::Location::field(1, "MSH", 9));
    let is_local = |authority: &str| filing.facts.is_local_authority(authority);
    let Some(action) = kith_hl7::events::action(code, trigger) else {
        return match code {
            "" => reject(adt::REQUIRED_FIELD_MISSING, at_msh9, "MSH-9: the message type is missing"),
            "ADT" | "ORU" | "MDM" | "SIU" => reject(
                adt::UNSUPPORTED_EVENT_CODE,
                at_msh9,
                format!("MSH-9: {code}^{trigger} is not an event Kith knows"),
            ),
            other => reject(
                adt::UNSUPPORTED_MESSAGE_TYPE,
                at_msh9,
                format!("MSH-9: message type {other} is not supported (Kith reads ADT, ORU^R01, MDM and SIU)"),
            ),
        };
    };
    match action {
        Action::Register { person_information } => {
            let adt = read_adt(message, &is_local).map_err(Stop::Reject)?;
            let creation = if person_information || filing.facts.create_on_any_adt {
                Creation::Allowed
            } else {
                Creation::NotAllowed
            };
            apply_adt(tx, filing, &adt, creation, true)
        }
        Action::Update => {
            let adt = read_adt(message, &is_local).map_err(Stop::Reject)?;
            apply_adt(tx, filing, &adt, Creation::NotAllowed, false)
        }
        Action::Merge => {
            let merge = adt::read_merge(message, &is_local).map_err(Stop::Reject)?;
            apply_merge(tx, filing, message, &merge)
        }
        Action::Result => {
            let result = clinical::read_oru(message, &is_local).map_err(Stop::Reject)?;
            let patient = clinical_patient(tx, filing, message, &result.identity, result.pid_segment)?;
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
                file_entry(tx, filing, &patient, None, &draft, Some(&report.observations))?;
            }
            Ok(Applied::about(patient.id, Vec::new()))
        }
        Action::Document(what) => {
            let document = clinical::read_mdm(message, &is_local).map_err(Stop::Reject)?;
            let patient = clinical_patient(tx, filing, message, &document.identity, document.pid_segment)?;
            apply_document(tx, filing, &patient, &document, what)
        }
        Action::Appointment(what) => {
            let appointment = clinical::read_siu(message, &is_local).map_err(Stop::Reject)?;
            let patient = clinical_patient(tx, filing, message, &appointment.identity, appointment.pid_segment)?;
            apply_appointment(tx, filing, &patient, &appointment, what)
        }
        Action::StoreOnly => Ok(Applied { patient: None, notices: Vec::new() }),
        Action::StoreForReview(reason) => {
            // The records it names, so that the reviewer sees which; a PID Kith cannot read
            // names none.
            let records = match adt::read_patient_identity(message, &is_local) {
                Ok((_, identity, _)) => {
                    let mut records: Vec<PatientId> =
                        find(tx, &filing.facts.organisation, &identity)?.iter().map(|c| c.record.id).collect();
                    records.sort();
                    records.dedup();
                    records
                }
                Err(_) => Vec::new(),
            };
            Err(Stop::Hold(Held { code: "review", text: reason.to_owned(), summary: Some(reason.to_owned()), records }))
        }
    }
}

// ----- which record -------------------------------------------------------------------

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
fn find(tx: &mut Tx<'_>, organisation: &Organisation, identity: &PatientIdentity) -> Result<Vec<Candidate>, Stop> {
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
enum Resolved {
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
fn resolve(
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
fn join_organisation(tx: &mut Tx<'_>, filing: &Filing<'_>, patient: &Patient) -> Result<(), Stop> {
    let prt = &filing.facts.prt;
    let who = LinkActor::Feed(filing.actor.clone());
    write_link(tx, &who, patient, prt, prt.default_labels, LinkBasis::OrganisationRecord, filing.now)?;
    Ok(())
}

const PATIENT_NOT_FOUND: &str =
    "patient not found: send their ADT^A28 first (the message is kept and can be reprocessed)";

/// The patient a result, document or appointment is about: known already, and in the
/// organisation (or shown to be the same person, and linked to it now).
fn clinical_patient(
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

// ----- ADT ----------------------------------------------------------------------------

/// Creates or updates the patient as the matching rule allows, then applies ZTM team
/// changes. `registration`: an event that creates records (when `creation` allows);
/// otherwise a visit event, which about an unknown patient changes nothing.
fn apply_adt(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    adt: &AdtMessage,
    creation: Creation,
    registration: bool,
) -> Result<Applied, Stop> {
    let d = &adt.details;
    if let Some(birth_date) = d.birth_date
        && let Err(problem) = check_birth_date(birth_date, filing.now.date())
    {
        return reject(
            adt::DATA_TYPE_ERROR,
            Some(kith_hl7::Location::field(adt.pid_segment, "PID", 7)),
            format!("PID-7: {problem}"),
        );
    }
    let mut notices = Vec::new();
    let patient = match resolve(tx, filing, &adt.identity, d.family_name.as_ref(), d.birth_date, creation)? {
        Resolved::Unknown if registration => {
            return reject(
                adt::UNKNOWN_KEY_IDENTIFIER,
                pid3(adt.pid_segment),
                "patient not found: this organisation creates records from A28 and A31 only",
            );
        }
        // A visit of a patient Kith does not know: nothing to update.
        Resolved::Unknown => return Ok(Applied { patient: None, notices }),
        // A registration naming a record the sender has not shown is its patient: held for
        // the data-quality staff, answered as a registration would be. A visit event: as
        // unknown, nothing.
        Resolved::NotTheSendersRecord { held, .. } if registration => return Err(Stop::Hold(held)),
        Resolved::NotTheSendersRecord { .. } => return Ok(Applied { patient: None, notices }),
        Resolved::New => create_record(tx, filing, adt, &mut notices)?,
        Resolved::Record { patient, facts, join, give_nhs_number } => {
            let nhs_number = adt.identity.nhs_number.as_ref().filter(|_| give_nhs_number);
            let patient = update_record(tx, filing, *patient, &facts, adt, nhs_number, &mut notices)?;
            if join {
                join_organisation(tx, filing, &patient)?;
            }
            patient
        }
    };
    apply_team_changes(tx, filing, &patient, adt)?;
    Ok(Applied::about(patient.id, notices))
}

/// A new record from a registration (its identifiers were looked up just now: no record
/// has them). An email another record has is left out, and said.
fn create_record(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    adt: &AdtMessage,
    notices: &mut Vec<String>,
) -> Result<Patient, Stop> {
    let d = &adt.details;
    let (Some(family_name), Some(given_name)) = (d.family_name.clone(), d.given_name.clone()) else {
        let pid5 = Some(kith_hl7::Location::field(adt.pid_segment, "PID", 5));
        return reject(adt::REQUIRED_FIELD_MISSING, pid5, "PID-5: a new record needs the family and given names");
    };
    let Some(birth_date) = d.birth_date else {
        let pid7 = Some(kith_hl7::Location::field(adt.pid_segment, "PID", 7));
        return reject(adt::REQUIRED_FIELD_MISSING, pid7, "PID-7: a new record needs the date of birth");
    };
    let mut email = d.email.clone();
    if let Some(taken) = &email
        && tx.patient_by_email(taken)?.is_some()
    {
        notices.push(format!("{}: {}", Field::Email.describe(), KeepReason::TakenByAnotherRecord));
        email = None;
    }
    let demographics = Demographics {
        family_name,
        given_name,
        birth_date,
        sex: d.sex.unwrap_or(Sex::Unknown),
        email,
        mobile: d.mobile.clone(),
        address: d.address.clone(),
    };
    let who = LinkActor::Feed(filing.actor.clone());
    Ok(insert_patient_record(
        tx,
        &who,
        &filing.facts.organisation,
        &filing.facts.prt,
        &demographics,
        adt.identity.nhs_number.as_ref(),
        &adt.identity.local_identifiers,
        IdentifierCheck::DoneByCaller,
        filing.now,
    )?)
}

/// How a record's value compares with the message's.
fn compare<T: PartialEq>(current: Option<&T>, given: &T) -> Current {
    match current {
        None => Current::Empty,
        Some(value) if value == given => Current::Same,
        Some(_) => Current::Differs,
    }
}

/// A name written another way (case, punctuation) is the same name.
fn compare_name(current: &Name, given: &Name) -> Current {
    if kith_core::identity::same_name(current.as_str(), given.as_str()) { Current::Same } else { Current::Differs }
}

/// Updates a matched record with what the message may change (see
/// `kith_core::identity::decide_field`), its new local identifiers, and the NHS number the
/// rule gives it (a record that had none). Changes the rule holds hold the whole message.
fn update_record(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    mut patient: Patient,
    facts: &RecordFacts,
    adt: &AdtMessage,
    nhs_number: Option<&NhsNumber>,
    notices: &mut Vec<String>,
) -> Result<Patient, Stop> {
    let (organisation, now) = (&filing.facts.organisation, filing.now);
    let d = &adt.details;
    let previous_email = patient.demographics.email.clone();
    let current = &patient.demographics;
    let email_taken = match &d.email {
        Some(email) => tx.patient_by_email(email)?.is_some_and(|other| other.id != patient.id),
        None => false,
    };
    let given: [(Field, Option<Current>); 7] = [
        (Field::FamilyName, d.family_name.as_ref().map(|v| compare_name(&current.family_name, v))),
        (Field::GivenName, d.given_name.as_ref().map(|v| compare_name(&current.given_name, v))),
        (Field::BirthDate, d.birth_date.as_ref().map(|v| compare(Some(&current.birth_date), v))),
        (Field::Sex, d.sex.as_ref().map(|v| compare(Some(&current.sex).filter(|s| **s != Sex::Unknown), v))),
        (Field::Email, d.email.as_ref().map(|v| compare(current.email.as_ref(), v))),
        (Field::Mobile, d.mobile.as_ref().map(|v| compare(current.mobile.as_ref(), v))),
        (Field::Address, d.address.as_ref().map(|v| compare(current.address.as_ref(), v))),
    ];
    let mut apply: Vec<Field> = Vec::new();
    let mut held: Vec<&'static str> = Vec::new();
    for (field, current) in given {
        let Some(current) = current else { continue };
        let decision = decide_field(&FieldFacts {
            field,
            current,
            registered: facts.registered,
            shared_with_other_organisation: facts.shared_with_other_organisation,
            taken_by_another_record: field == Field::Email && email_taken,
        });
        match (decision, filing.how) {
            (FieldDecision::Unchanged, _) => {}
            (FieldDecision::Apply, Override::WithoutConflictingField)
                if matches!(field, Field::FamilyName | Field::GivenName | Field::BirthDate) => {}
            (FieldDecision::Apply, _) => apply.push(field),
            // A person confirmed who it is, for a record only this organisation holds; a
            // shared record's name and birth date are not a feed's to change.
            (FieldDecision::Hold, Override::ApplyTo(_)) if !facts.shared_with_other_organisation => apply.push(field),
            (FieldDecision::Hold, Override::ApplyTo(_)) => {
                notices.push(format!("{}: {}", field.describe(), KeepReason::Shared));
            }
            (FieldDecision::Hold, Override::WithoutConflictingField) => {}
            (FieldDecision::Hold, Override::None) => held.push(field.describe()),
            (FieldDecision::Keep(reason), _) => notices.push(format!("{}: {reason}", field.describe())),
        }
    }
    if !held.is_empty() {
        return Err(Stop::Hold(Conflict::SharedRecordChange { record: patient.id, fields: held }.into()));
    }
    let mut changed: Vec<&str> = Vec::new();
    let demographics = &mut patient.demographics;
    for field in apply {
        match field {
            Field::FamilyName => {
                demographics.family_name = d.family_name.clone().unwrap_or_else(|| demographics.family_name.clone())
            }
            Field::GivenName => {
                demographics.given_name = d.given_name.clone().unwrap_or_else(|| demographics.given_name.clone())
            }
            Field::BirthDate => demographics.birth_date = d.birth_date.unwrap_or(demographics.birth_date),
            Field::Sex => demographics.sex = d.sex.unwrap_or(demographics.sex),
            Field::Email => demographics.email = d.email.clone(),
            Field::Mobile => demographics.mobile = d.mobile.clone(),
            Field::Address => demographics.address = d.address.clone(),
        }
        changed.push(field_code(field));
    }
    if let Some(nhs_number) = nhs_number {
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
            AuditBuilder::new(now, filing.actor.clone(), Channel::Hl7, "patient.update")
                .organisation(organisation.id)
                .patient(patient.id)
                .basis("administration")
                .subject(changed.join(","))
                .build(),
        );
    }
    if changed.contains(&"email") {
        crate::invitations::invite_on_new_email(
            tx,
            filing.actor.clone(),
            Channel::Hl7,
            organisation,
            previous_email.as_ref(),
            &mut patient,
            now,
        )?;
    }
    Ok(patient)
}

fn field_code(field: Field) -> &'static str {
    match field {
        Field::FamilyName => "family_name",
        Field::GivenName => "given_name",
        Field::BirthDate => "birth_date",
        Field::Sex => "sex",
        Field::Email => "email",
        Field::Mobile => "mobile",
        Field::Address => "address",
    }
}

/// ZTM-1: link the patient to each team (its default labels, HL7 implied consent) unless
/// already in it; ZTM-2: discharge from each team. Unknown aliases and impossible changes
/// reject the whole message (the savepoint undoes what was done).
fn apply_team_changes(tx: &mut Tx<'_>, filing: &Filing<'_>, patient: &Patient, adt: &AdtMessage) -> Result<(), Stop> {
    let (organisation, actor, now) = (&filing.facts.organisation, filing.actor, filing.now);
    let who = LinkActor::Feed(actor.clone());
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
            by_professional: false,
        };
        if let Err(refusal) = check_new_link(&facts) {
            return reject(
                adt::TABLE_VALUE_NOT_FOUND,
                Some(location.clone()),
                format!("ZTM-1: team {alias}: {refusal}"),
            );
        }
        write_link(tx, &who, patient, &team, team.default_labels, LinkBasis::Hl7ImpliedConsent, now)?;
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

// ----- merges -------------------------------------------------------------------------

/// ADT^A40: the record named by MRG-1 goes into the record named by PID-3, when the merge
/// rule allows (both the organisation's alone). Its local identifiers, care links and
/// entries move; its NHS number, email and account move when the survivor has none; it
/// then resolves to the survivor. A repeat (already merged) changes nothing.
fn apply_merge(
    tx: &mut Tx<'_>,
    filing: &Filing<'_>,
    message: &Message,
    merge: &adt::MergeMessage,
) -> Result<Applied, Stop> {
    let organisation = &filing.facts.organisation;
    let mrg1 = Some(kith_hl7::Location::field(merge.mrg_segment, "MRG", 1));
    let (family_name, birth_date) = read_pid_names_and_birth_date(message);
    let (mut survivor, survivor_facts) =
        match resolve(tx, filing, &merge.survivor, family_name.as_ref(), birth_date, Creation::NotAllowed)? {
            Resolved::Record { patient, facts, .. } => (*patient, facts),
            Resolved::NotTheSendersRecord { detail, .. } => {
                return Err(Stop::RejectWithDetail(
                    Rejection::new(
                        adt::UNKNOWN_KEY_IDENTIFIER,
                        pid3(merge.pid_segment),
                        "PID-3: the record to keep was not found",
                    ),
                    detail,
                ));
            }
            Resolved::New | Resolved::Unknown => {
                return reject(
                    adt::UNKNOWN_KEY_IDENTIFIER,
                    pid3(merge.pid_segment),
                    "PID-3: the record to keep was not found",
                );
            }
        };
    // The records MRG-1 names, without following merges.
    let mut named: Vec<Patient> = Vec::new();
    if let Some(nhs_number) = &merge.merged.nhs_number {
        named.extend(tx.patient_by_nhs_number(nhs_number)?);
    }
    for identifier in &merge.merged.local_identifiers {
        named.extend(tx.patient_by_local_identifier(organisation.id, identifier)?);
    }
    named.sort_by_key(|p| p.id);
    named.dedup_by_key(|p| p.id);
    let mut merged_facts = Vec::with_capacity(named.len());
    for patient in &named {
        let (in_organisation, elsewhere) = tx.record_organisations(patient.id, organisation.id)?;
        // A record merged before has moved its links: it is the sender's when the record it
        // went into is.
        let known_to_sender = match patient.merged_into {
            None => in_organisation,
            Some(into) => tx.record_organisations(into, organisation.id)?.0,
        };
        merged_facts.push(MergedRecordFacts {
            id: patient.id,
            merged_into: patient.merged_into,
            known_to_sender,
            only_sending_organisations: in_organisation && !elsewhere,
            registered: patient.registration == RegistrationStatus::Registered,
        });
    }
    // Only asked when MRG-1 names the survivor itself (a merge seen again, or a self-merge).
    let survivor_took_in_records =
        named.iter().any(|patient| patient.id == survivor.id) && tx.has_merged_records(survivor.id)?;
    let merged_id = match decide_merge(&MergeFacts {
        survivor: &survivor_facts,
        survivor_took_in_records,
        merged: &merged_facts,
    }) {
        MergeDecision::Merge { merged, .. } => merged,
        MergeDecision::AlreadyDone => return Ok(Applied::about(survivor.id, Vec::new())),
        MergeDecision::Refuse(refusal) => {
            let code = if refusal == MergeRefusal::NotFound {
                adt::UNKNOWN_KEY_IDENTIFIER
            } else {
                adt::DUPLICATE_KEY_IDENTIFIER
            };
            return reject(code, mrg1, refusal.to_string());
        }
        // Says nothing to the sender about another organisation's share of the records.
        MergeDecision::Conflict(conflict @ Conflict::MergeAcrossOrganisations { .. }) => {
            return Err(Stop::Hold(Held::silent(conflict)));
        }
        MergeDecision::Conflict(conflict) => return Err(Stop::Hold(conflict.into())),
    };
    let mut merged = named
        .into_iter()
        .find(|patient| patient.id == merged_id)
        .ok_or_else(|| Stop::Internal("the record to merge vanished".to_owned()))?;
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
    Ok(Applied::about(survivor.id, Vec::new()))
}

// ----- results, documents and appointments ----------------------------------------------

/// An entry as a message describes it.
struct Draft<'a> {
    kind: EntryKind,
    label: PrivacyLabel,
    title: &'a str,
    body: String,
    effective_at: Timestamp,
    /// When the entry's period ends (an appointment's end), if the message says.
    ends_at: Option<Timestamp>,
    status: EntryStatus,
    source_key: &'a str,
}

/// Files an entry authored by the organisation's Patient Record Team: a new version of
/// `existing` (found under the organisation's own source key; the earlier version kept, a
/// sensitive label kept), or a new entry.
fn file_entry(
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
fn apply_document(
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
fn apply_appointment(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparing_values() {
        assert_eq!(compare(None::<&u8>, &1), Current::Empty);
        assert_eq!(compare(Some(&1), &1), Current::Same);
        assert_eq!(compare(Some(&2), &1), Current::Differs);
    }
}
