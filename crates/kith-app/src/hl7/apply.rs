//! Applying one readable message: the events table (`kith_hl7::events`) says what kind of
//! change it is; the matching rule (`kith_core::identity`) says which record, and what of
//! it the message may change. Everything here runs inside the message's savepoint: a
//! rejection or a hold undoes whatever was written.

use kith_core::PatientId;
use kith_core::identity::Creation;
use kith_core::patient::EntryKind;
use kith_hl7::adt::{self, read_adt};
use kith_hl7::events::Action;
use kith_hl7::{Message, clinical};
use kith_store::Tx;

use super::adt::apply_adt;
use super::feed::Filing;
use super::filing::{Draft, apply_appointment, apply_document, file_entry};
use super::matching::{clinical_patient, find};
use super::merges::apply_merge;
use super::stop::{Applied, Held, Stop, reject};

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
