//! ADT: creating or updating the record as the matching rule allows, and ZTM team changes.

use kith_core::audit::Channel;
use kith_core::consent::{LinkBasis, NewLinkFacts, check_new_link};
use kith_core::identity::{
    Conflict, Creation, Current, Field, FieldDecision, FieldFacts, KeepReason, RecordFacts, check_birth_date,
    decide_field,
};
use kith_core::model::{CareLink, Patient, Team};
use kith_core::patient::{Demographics, NhsNumber, Sex};
use kith_core::team::TeamKind;
use kith_core::text::Name;
use kith_hl7::adt::{self, AdtMessage};
use kith_store::Tx;

use super::feed::{Filing, Override};
use super::matching::{Resolved, join_organisation, resolve};
use super::stop::{Applied, Stop, pid3, reject};
use crate::AuditBuilder;
use crate::patients::{IdentifierCheck, LinkActor, insert_patient_record, write_link};

/// Creates or updates the patient as the matching rule allows, then applies ZTM team
/// changes. `registration`: an event that creates records (when `creation` allows);
/// otherwise a visit event, which about an unknown patient changes nothing.
pub(crate) fn apply_adt(
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
