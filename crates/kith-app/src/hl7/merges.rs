//! ADT^A40: merging two records when the merge rule allows.

use kith_core::audit::Channel;
use kith_core::identity::{
    Conflict, Creation, MergeDecision, MergeFacts, MergeRefusal, MergedRecordFacts, decide_merge,
};
use kith_core::model::Patient;
use kith_core::patient::RegistrationStatus;
use kith_hl7::Message;
use kith_hl7::adt::{self, Rejection, read_pid_names_and_birth_date};
use kith_store::Tx;

use super::feed::Filing;
use super::matching::{Resolved, resolve};
use super::stop::{Applied, Held, Stop, pid3, reject};
use crate::AuditBuilder;

/// ADT^A40: the record named by MRG-1 goes into the record named by PID-3, when the merge
/// rule allows (both the organisation's alone). Its local identifiers, care links and
/// entries move; its NHS number, email and account move when the survivor has none; it
/// then resolves to the survivor. A repeat (already merged) changes nothing.
pub(crate) fn apply_merge(
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
