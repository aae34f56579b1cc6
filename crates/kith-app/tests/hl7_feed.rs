//! The HL7 feed at the use-case level, on both backends: ADT creates and updates records,
//! ZTM adds and discharges teams, a repeated control id returns the stored ACK and changes
//! nothing, and every refusal is an AR that names the field and leaves nothing half-done.

mod support;

use kith_app::*;
use kith_core::consent::LinkBasis;
use kith_core::model::Hl7MessageStatus;
use kith_core::patient::NhsNumber;
use kith_core::text::Name;
use kith_hl7::ack::AckCode;
use kith_test_support::{TestDatabase, each_engine};
use support::*;

const NHS: &str = "9434765919";

fn adt(trigger: &str, control: &str, pid: &str, ztm: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^{trigger}^ADT_A05|{control}|P|2.4\rEVN|{trigger}|20261125101500\r{pid}\r{ztm}"
    )
    .into_bytes()
}

fn pid(family: &str) -> String {
    format!("PID|1||{NHS}^^^NHS^NH~K1234567^^^RXH-MRN^MR||{family}^Ngozi||19710914|F")
}

struct Feed {
    world: World,
    integration: kith_core::model::Integration,
}

impl Feed {
    fn new(database: TestDatabase) -> Self {
        let world = world(database);
        let op = operator();
        let created =
            world.app.create_integration(&op, &code(), &Name::parse("n", "PAS").unwrap(), "RXH-PAS", None).unwrap();
        world.app.add_assigning_authority(&op, &code(), "rxh-mrn").unwrap();
        Feed { world, integration: created.integration }
    }

    fn send(&self, bytes: &[u8]) -> Ingested {
        self.world.app.ingest_hl7(Hl7Sender::UnauthenticatedMllp, bytes)
    }

    /// Everything a message could change, to show that a refused one changed nothing.
    fn snapshot(&self) -> (usize, Vec<String>) {
        let store = self.world.app.store();
        store
            .read(|tx| {
                let patient = tx.patient_by_nhs_number(&NhsNumber::parse(NHS).unwrap())?;
                let links = match &patient {
                    Some(p) => tx
                        .care_links(p.id)?
                        .iter()
                        .map(|l| format!("{:?}:{}:{:?}", l.team, l.labels, l.discharged_at))
                        .collect(),
                    None => vec![],
                };
                let name = patient.map(|p| p.demographics.family_name.to_string()).unwrap_or_default();
                Ok::<_, AppError>((tx.audit_head()?.0 as usize, [vec![name], links].concat()))
            })
            .unwrap()
    }
}

/// The entry RXH's feed filed under `key` (its Patient Record Team writes the feed's entries).
fn by_source_key(
    tx: &mut kith_store::Tx<'_>,
    patient: kith_core::PatientId,
    key: &str,
) -> Result<Option<kith_core::model::Entry>, kith_store::StoreError> {
    let organisation = tx.organisation_by_code(&code())?.expect("RXH exists");
    let prt = tx.patient_record_team(organisation.id)?.expect("RXH has its PRT");
    tx.entry_by_source_key(patient, prt.id, key)
}

fn msa(ack: &str) -> (String, String, String) {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap();
    let msa = message.segment("MSA").unwrap();
    (msa.value(1).to_owned(), msa.value(2).to_owned(), msa.value(3).to_owned())
}

fn err_location(ack: &str) -> String {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap();
    let err = message.segment("ERR").unwrap();
    format!("{}-{}", err.component(1, 1), err.component(1, 3))
}

#[test]
fn adt_creates_updates_and_moves_teams_and_repeats_change_nothing() {
    each_engine(|database| {
        let feed = Feed::new(database);
        let app = &feed.world.app;

        // A28 for a known NHS number updates that record; ZTM-1 teams are linked by implied consent.
        let first = feed.send(&adt("A28", "MSG1", &pid("Okafor"), "ZTM|mh\r"));
        assert_eq!(msa(&first.ack), ("AA".into(), "MSG1".into(), String::new()), "{}", first.ack);
        let patient = app.patient_by_nhs_number(&NhsNumber::parse(NHS).unwrap()).unwrap();
        // The world's patient already has this NHS number: the feed matched that record.
        assert_eq!(patient.id, feed.world.patient.id);
        assert_eq!(patient.demographics.family_name.as_str(), "Okafor");

        // A repeat of the same control id: the same ACK, nothing changed.
        let before = feed.snapshot();
        let again = feed.send(&adt("A28", "MSG1", &pid("Changed"), "ZTM|gum\r"));
        assert!(again.duplicate);
        assert_eq!(again.ack, first.ack);
        assert_eq!(feed.snapshot(), before);

        // A31 renames, adds gum, discharges mh.
        let update = feed.send(&adt("A31", "MSG2", &pid("Okafor-Smith"), "ZTM|gum|mh\r"));
        assert_eq!(msa(&update.ack).0, "AA", "{}", update.ack);
        let links = app.store().read(|tx| tx.care_links(patient.id)).unwrap();
        let gum = feed.world.context("gum", "gum@example.org").team;
        let mh = feed.world.context("mh", "pro@example.org").team;
        let gum_link = links.iter().find(|l| l.team == gum).unwrap();
        assert_eq!((gum_link.basis, gum_link.is_active()), (LinkBasis::Hl7ImpliedConsent, true));
        assert!(!links.iter().find(|l| l.team == mh).unwrap().is_active());
        assert_eq!(
            app.patient_by_nhs_number(&NhsNumber::parse(NHS).unwrap()).unwrap().demographics.family_name.as_str(),
            "Okafor-Smith"
        );

        // Every change is audited as the integration, on the hl7 channel.
        let events = app.audit_events(Some(patient.id), 1000).unwrap();
        let by_feed: Vec<&str> =
            events.iter().filter(|e| e.record.channel == "hl7").map(|e| e.record.action.as_str()).collect();
        assert_eq!(by_feed, ["patient.update", "patient.update", "care_link.create", "care_link.discharge"]);
        assert!(events.iter().filter(|e| e.record.channel == "hl7").all(|e| e.record.actor_kind == "integration"));

        let stored = app.hl7_messages(&code(), None, 10).unwrap();
        assert_eq!(stored.len(), 2, "the repeat is not stored twice");
        assert!(
            stored.iter().all(|m| m.status == Hl7MessageStatus::Accepted && m.integration == Some(feed.integration.id))
        );
    });
}

#[test]
fn refusals_are_ar_with_the_field_and_change_nothing() {
    each_engine(|database| {
        let feed = Feed::new(database);
        feed.send(&adt("A28", "SETUP", &pid("Okafor"), "ZTM|mh\r"));
        let before = feed.snapshot();
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (adt("A31", "R1", &pid("Renamed"), "ZTM|nope\r"), "ZTM-1: no team has the alias nope in RXH", "ZTM-1"),
            (
                adt("A31", "R2", &pid("Renamed"), "ZTM|gum~mh|gum\r"),
                "ZTM: team gum is in both ZTM-1 (add) and ZTM-2 (discharge)",
                "ZTM-2",
            ),
            (
                adt("A31", "R3", &pid("Renamed"), "ZTM||prt\r"),
                "ZTM-2: prt is the Patient Record Team; a patient is not discharged from the organisation",
                "ZTM-2",
            ),
            (adt("A31", "R4", &pid("Renamed"), "ZTM||gum\r"), "ZTM-2: the patient is not in team gum", "ZTM-2"),
            (
                adt("A31", "R5", "PID|1||9434765918^^^NHS^NH||Renamed^N||19710914", ""),
                "PID-3: this is not a valid NHS number: its check digit does not match (mistyped?)",
                "PID-3",
            ),
            (adt("Z99", "R6", &pid("Renamed"), ""), "MSH-9: ADT^Z99 is not an event Kith knows", "MSH-9"),
        ];
        for (message, text, location) in cases {
            let result = feed.send(&message);
            let (code, control, reason) = msa(&result.ack);
            assert_eq!(code, "AR", "{}", result.ack);
            assert!(control.starts_with('R'));
            assert_eq!(reason, text);
            assert_eq!(err_location(&result.ack), location, "{}", result.ack);
            assert_eq!(feed.snapshot(), before, "{text}: nothing changed");
        }
        let rejected = feed.world.app.hl7_messages(&code(), Some(Hl7MessageStatus::Rejected), 100).unwrap();
        assert_eq!(rejected.len(), 6, "rejected messages are kept for reprocessing");
        assert!(rejected.iter().all(|m| m.error.is_some()));
    });
}

#[test]
fn unknown_patients_senders_and_unreadable_messages() {
    each_engine(|database| {
        let feed = Feed::new(database);
        let app = &feed.world.app;
        let stranger = "PID|1||4010232137^^^NHS^NH||Stranger^Sam||19800101|M";
        // Creation may be restricted to A28/A31.
        app.set_hl7_create_on_any_adt(&operator(), &code(), false).unwrap();
        let a08 = feed.send(&adt("A08", "U1", stranger, ""));
        assert_eq!(msa(&a08.ack).2, "patient not found: this organisation creates records from A28 and A31 only");
        assert_eq!(a08.code, AckCode::Reject);
        let a28 = feed.send(&adt("A28", "U2", stranger, ""));
        assert_eq!(a28.code, AckCode::Accept, "{}", a28.ack);
        app.set_hl7_create_on_any_adt(&operator(), &code(), true).unwrap();
        let a04 = feed.send(&adt("A04", "U3", "PID|1||K999^^^RXH-MRN^MR||New^Nia||20010203|F", ""));
        assert_eq!(a04.code, AckCode::Accept, "{}", a04.ack);
        // A new record needs a date of birth.
        let no_dob = feed.send(&adt("A28", "U4", "PID|1||K998^^^RXH-MRN^MR||New^Nia", ""));
        assert_eq!(msa(&no_dob.ack).2, "PID-7: a new record needs the date of birth");

        // An unregistered sending facility is rejected and not stored.
        let foreign = b"MSH|^~\\&|PAS|ELSEWHERE|KITH|KITH|20261125||ADT^A28|F1|P|2.4\rPID|1\r";
        let result = feed.send(foreign);
        assert_eq!(
            msa(&result.ack),
            ("AR".into(), "F1".into(), "MSH-4: the sending facility is not registered with Kith".into())
        );
        assert_eq!(result.message, None);

        // An unknown character set: AR, still echoing the control id.
        let charset = b"MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125||ADT^A28|C1|P|2.4||||||ISO IR87\rPID|1\r";
        let result = feed.send(charset);
        let (code, control, reason) = msa(&result.ack);
        assert_eq!((code.as_str(), control.as_str()), ("AR", "C1"));
        assert!(reason.contains("unsupported character set"), "{reason}");

        // Not HL7 at all: AR with no control id to echo.
        let garbage = app.ingest_hl7(Hl7Sender::Integration(&feed.integration), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            msa(&garbage.ack),
            ("AR".into(), String::new(), "the message does not start with an MSH segment".into())
        );
        assert!(garbage.message.is_some(), "a message from a known integration is stored even when unreadable");
    });
}

fn clinical(kind: &str, control: &str, body: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|RXH-PAS|KITH|KITH|20261125101500||{kind}|{control}|P|2.4\rPID|1||{NHS}^^^NHS^NH||Okafor^Ngozi||19710914|F\r{body}"
    )
    .into_bytes()
}

/// Entries the feed filed for the world's patient, by source key: (kind, label, title, status, version).
fn filed(feed: &Feed) -> Vec<(String, String, String, String, String, i64)> {
    let patient = feed.world.patient.id;
    let mut entries: Vec<_> = feed
        .world
        .app
        .store()
        .read(|tx| tx.entries(patient))
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            Some((
                e.source_key?,
                e.kind.code().to_owned(),
                e.label.map_or("none", |l| l.code()).to_owned(),
                e.title.to_string(),
                e.status.map_or("", |s| s.code()).to_owned(),
                e.version,
            ))
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn results_documents_and_appointments_are_filed_with_their_history() {
    each_engine(|database| {
        let feed = Feed::new(database);
        let app = &feed.world.app;
        app.add_label_rule(&operator(), &code(), "pv1-3", "GUM", kith_core::PrivacyLabel::SexualHealth).unwrap();
        app.add_label_rule(&operator(), &code(), "TXA-2", "MHCP", kith_core::PrivacyLabel::MentalHealth).unwrap();
        assert!(app.add_label_rule(&operator(), &code(), "PID-3", "X", kith_core::PrivacyLabel::General).is_err());

        // A result, then its correction: one entry, two versions, the first kept.
        let oru = |control: &str, status: &str, value: &str| {
            clinical(
                "ORU^R01",
                control,
                &format!(
                    "PV1|1|O|GUM^^^RXH\rOBR|1|P1|F1|HIV^HIV antibody^L|||20261124093000||||||||||||||||||{status}\rOBX|1|ST|HIV^HIV Ab^L||{value}||||||{status}\rNTE|1||Confirmed by second assay\r"
                ),
            )
        };
        assert_eq!(feed.send(&oru("O1", "F", "Reactive")).code, AckCode::Accept);
        let corrected = feed.send(&oru("O2", "C", "Negative"));
        assert_eq!(corrected.code, AckCode::Accept, "{}", corrected.ack);
        let entry = app.store().read(|tx| by_source_key(tx, feed.world.patient.id, "ORU:F1")).unwrap().unwrap();
        assert_eq!((entry.version, entry.status.map(|s| s.code())), (2, Some("corrected")));
        assert_eq!(entry.label, Some(kith_core::PrivacyLabel::SexualHealth), "labelled by the PV1-3 rule");
        assert_eq!(entry.body, "HIV Ab: Negative\nConfirmed by second assay");
        let history = app.store().read(|tx| tx.entry_history(feed.world.patient.id, entry.id)).unwrap();
        assert_eq!(
            history.iter().map(|e| (e.version, e.body.as_str())).collect::<Vec<_>>(),
            [(1, "HIV Ab: Reactive\nConfirmed by second assay")]
        );
        let first_observations = app.store().read(|tx| tx.observations(feed.world.patient.id, entry.id, 1)).unwrap();
        assert_eq!(first_observations[0].value, "Reactive");
        assert_eq!(
            app.store().read(|tx| tx.observations(feed.world.patient.id, entry.id, 2)).unwrap()[0].value,
            "Negative"
        );

        // A document, replaced by a repeat of its TXA-12; a care plan by TXA-2 CP or a rule.
        let mdm = |control: &str, kind: &str, number: &str, text: &str| {
            clinical(
                "MDM^T02",
                control,
                &format!("TXA|1|{kind}|TX|20261120101500||||||||{number}||||||AU\rOBX|1|TX|||{text}\r"),
            )
        };
        assert_eq!(feed.send(&mdm("D1", "DS^Discharge summary", "DOC-1", "First draft")).code, AckCode::Accept);
        assert_eq!(feed.send(&mdm("D2", "DS^Discharge summary", "DOC-1", "Final text")).code, AckCode::Accept);
        assert_eq!(feed.send(&mdm("D3", "CP^Crisis plan", "DOC-2", "Call the crisis line")).code, AckCode::Accept);
        assert_eq!(
            feed.send(&mdm("D4", "MHCP^Mental health care plan", "DOC-3", "Weekly review")).code,
            AckCode::Accept
        );

        // Appointments: booked, moved and lengthened, cancelled; an unknown one cancelled is
        // filed cancelled. SCH-9/SCH-10 give the length.
        let siu = |trigger: &str, control: &str, id: &str, when: &str, minutes: &str| {
            clinical(
                &format!("SIU^{trigger}"),
                control,
                &format!(
                    "SCH|{id}||||||FU^Follow-up||{minutes}|MIN|^^^{when}\rAIS|1||CARD^Cardiology clinic\rAIL|1||OPD2\r"
                ),
            )
        };
        assert_eq!(feed.send(&siu("S12", "A1", "APT-1", "202612011030", "30")).code, AckCode::Accept);
        assert_eq!(feed.send(&siu("S13", "A2", "APT-1", "202612081030", "45")).code, AckCode::Accept);
        assert_eq!(feed.send(&siu("S15", "A3", "APT-1", "202612081030", "45")).code, AckCode::Accept);
        assert_eq!(feed.send(&siu("S15", "A4", "APT-9", "202612091030", "")).code, AckCode::Accept);
        let wrong = feed.send(&siu("S13", "A5", "APT-1", "202612081030", "-45"));
        assert_eq!(wrong.code, AckCode::Reject, "a negative length is refused and changes nothing");

        let expected = [
            ("MDM:DOC-1", "document", "general", "Discharge summary", "final", 2),
            ("MDM:DOC-2", "care_plan", "general", "Crisis plan", "final", 1),
            ("MDM:DOC-3", "document", "mental_health", "Mental health care plan", "final", 1),
            ("ORU:F1", "result", "sexual_health", "HIV antibody", "corrected", 2),
            ("SIU:APT-1", "appointment", "general", "Cardiology clinic", "cancelled", 3),
            ("SIU:APT-9", "appointment", "general", "Cardiology clinic", "cancelled", 1),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, kind, label, title, status, v)| {
                (k.to_string(), kind.to_string(), label.to_string(), title.to_string(), status.to_string(), *v)
            })
            .collect();
        assert_eq!(filed(&feed), expected);
        let moved = app.store().read(|tx| by_source_key(tx, feed.world.patient.id, "SIU:APT-1")).unwrap().unwrap();
        assert_eq!(moved.effective_at.to_string(), "2026-12-08T10:30:00Z");
        assert_eq!(moved.ends_at.map(|end| end.to_string()).as_deref(), Some("2026-12-08T11:15:00Z"));
        let history = app.store().read(|tx| tx.entry_history(feed.world.patient.id, moved.id)).unwrap();
        let ends: Vec<Option<String>> = history.iter().map(|v| v.ends_at.map(|end| end.to_string())).collect();
        assert_eq!(ends, [Some("2026-12-01T11:00:00Z".to_owned()), Some("2026-12-08T11:15:00Z".to_owned())]);
        let unknown = app.store().read(|tx| by_source_key(tx, feed.world.patient.id, "SIU:APT-9")).unwrap().unwrap();
        assert_eq!(unknown.ends_at, None, "no length given: none made up");

        // The team sees what the rule allows: mh (general, mental health) sees the general
        // and mental health entries, not the sexual health result.
        let pro = feed.world.context("mh", "pro@example.org");
        let seen: Vec<String> = app
            .read_record(&pro, feed.world.patient.id)
            .unwrap()
            .entries
            .iter()
            .filter_map(|v| v.entry.source_key.clone())
            .collect();
        assert!(seen.contains(&"MDM:DOC-3".to_owned()) && !seen.contains(&"ORU:F1".to_owned()), "{seen:?}");

        // For a patient Kith does not know: AR, kept for reprocessing, nothing filed.
        let stranger = "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|X1|P|2.4\rPID|1||4010232137^^^NHS^NH\rOBR|1||F9|X|||20261125\rOBX|1|ST|A||b\r";
        let result = feed.send(stranger.as_bytes());
        assert_eq!(
            msa(&result.ack).2,
            "patient not found: send their ADT^A28 first (the message is kept and can be reprocessed)"
        );
        assert_eq!(err_location(&result.ack), "PID-3");
        // A result without an observation time is refused with the field.
        let untimed = clinical("ORU^R01", "X2", "OBR|1||F10|X\rOBX|1|ST|A||b\r");
        assert_eq!(msa(&feed.send(&untimed).ack).2, "OBR[1]: no observation time in OBR-7 or OBX-14");
    });
}

#[test]
fn a40_merges_one_record_into_another() {
    each_engine(|database| {
        let feed = Feed::new(database);
        let app = &feed.world.app;
        let survivor = feed.world.patient.id;
        // A second record for the same person, known only by a hospital number, in gum, with a result.
        let duplicate_pid = "PID|1||K555^^^RXH-MRN^MR||Okafor^N||19710914|F";
        assert_eq!(feed.send(&adt("A28", "M1", duplicate_pid, "ZTM|gum\r")).code, AckCode::Accept);
        let oru = format!(
            "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|M2|P|2.4\r{duplicate_pid}\rOBR|1||F77|GLU^Glucose^L|||20261124\rOBX|1|NM|GLU^Glucose^L||5.4|mmol/L||N|||F\r"
        );
        assert_eq!(feed.send(oru.as_bytes()).code, AckCode::Accept);
        let duplicate = app
            .store()
            .read(|tx| {
                let organisation = tx.organisation_by_code(&code())?.unwrap().id;
                tx.patient_by_local_identifier(
                    organisation,
                    &kith_core::patient::LocalIdentifier::parse("RXH-MRN:K555").unwrap(),
                )
            })
            .unwrap()
            .unwrap();
        assert_ne!(duplicate.id, survivor);

        let a40 = |control: &str, mrg: &str| {
            format!(
                "MSH|^~\\&|PAS|RXH-PAS|||20261125||ADT^A40^ADT_A39|{control}|P|2.4\rEVN|A40\rPID|1||{NHS}^^^NHS^NH\rMRG|{mrg}\r"
            )
            .into_bytes()
        };
        let merged = feed.send(&a40("M3", "K555^^^RXH-MRN^MR"));
        assert_eq!(merged.code, AckCode::Accept, "{}", merged.ack);

        let (old, links, entries, identifiers) = app
            .store()
            .read(|tx| {
                Ok::<_, AppError>((
                    tx.patient(duplicate.id)?.unwrap(),
                    tx.care_links(survivor)?,
                    tx.entries(survivor)?,
                    tx.patient_identifiers(survivor)?,
                ))
            })
            .unwrap();
        assert_eq!(old.merged_into, Some(survivor));
        let gum = feed.world.context("gum", "gum@example.org").team;
        assert!(links.iter().any(|l| l.team == gum && l.is_active()), "the duplicate's team moved");
        assert!(entries.iter().any(|e| e.source_key.as_deref() == Some("ORU:F77")), "its result moved");
        assert!(identifiers.iter().any(|i| i.identifier.to_string() == "RXH-MRN:K555"));
        assert!(app.store().read(|tx| tx.entries(duplicate.id)).unwrap().is_empty());
        let observations = app.store().read(|tx| {
            let entry = by_source_key(tx, survivor, "ORU:F77")?.unwrap();
            tx.observations(survivor, entry.id, 1)
        });
        assert_eq!(observations.unwrap()[0].value, "5.4");

        // Later messages for the old identifier reach the survivor.
        let later = format!(
            "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|M4|P|2.4\r{duplicate_pid}\rOBR|1||F78|GLU^Glucose^L|||20261125\rOBX|1|NM|GLU^Glucose^L||6.1|mmol/L|||||F\r"
        );
        assert_eq!(feed.send(later.as_bytes()).code, AckCode::Accept);
        assert!(app.store().read(|tx| by_source_key(tx, survivor, "ORU:F78")).unwrap().is_some());

        // The merge is audited on both records; a second merge of the same records changes nothing.
        let events = app.audit_events(Some(duplicate.id), 100).unwrap();
        assert!(
            events.iter().any(|e| e.record.action == "patient.merge" && e.record.subject == Some(survivor.to_string()))
        );
        let head = app.store().read(|tx| tx.audit_head()).unwrap().0;
        assert_eq!(feed.send(&a40("M5", "K555^^^RXH-MRN^MR")).code, AckCode::Accept);
        assert_eq!(app.store().read(|tx| tx.audit_head()).unwrap().0, head);
        let unknown = feed.send(&a40("M6", "K999^^^RXH-MRN^MR"));
        assert_eq!(msa(&unknown.ack).2, "MRG-1: the record to merge was not found");
        assert_eq!(err_location(&unknown.ack), "MRG-1");
    });
}

/// A batch (one transaction) gives each message the outcome it would have alone: a repeat
/// within the batch is a repeat, a refusal undoes only its own message, and a later message
/// sees what an earlier one created.
#[test]
fn a_batch_keeps_each_message_s_own_outcome() {
    each_engine(|database| {
        let feed = Feed::new(database);
        let app = &feed.world.app;
        let new_pid = "PID|1||4010232137^^^NHS^NH||Batch^Bea||19900101|F";
        let a28 = adt("A28", "B1", new_pid, "ZTM|gum\r");
        let repeat = adt("A28", "B1", new_pid, "ZTM|mh\r");
        let refused = adt("A31", "B2", new_pid, "ZTM|nope\r");
        let oru = format!(
            "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|B3|P|2.4\r{new_pid}\rOBR|1||F5|GLU^Glucose|||20261124\rOBX|1|NM|GLU^Glucose||5.0|mmol/L\r"
        )
        .into_bytes();
        let batch: Vec<(Hl7Sender<'_>, &[u8])> = [&a28, &repeat, &refused, &oru]
            .into_iter()
            .map(|bytes| (Hl7Sender::UnauthenticatedMllp, bytes.as_slice()))
            .collect();
        let outcomes = app.ingest_hl7_batch(&batch);
        let codes: Vec<(AckCode, bool)> = outcomes.iter().map(|o| (o.code, o.duplicate)).collect();
        assert_eq!(
            codes,
            [(AckCode::Accept, false), (AckCode::Accept, true), (AckCode::Reject, false), (AckCode::Accept, false)]
        );
        assert_eq!(outcomes[1].ack, outcomes[0].ack);
        let patient = app.patient_by_nhs_number(&NhsNumber::parse("4010232137").unwrap()).unwrap();
        let teams = app.store().read(|tx| tx.care_links(patient.id)).unwrap().len();
        assert_eq!(teams, 2, "the PRT and gum: the repeat's ZTM changed nothing");
        assert!(app.store().read(|tx| by_source_key(tx, patient.id, "ORU:F5")).unwrap().is_some());
        assert_eq!(app.hl7_messages(&code(), None, 100).unwrap().len(), 3);
    });
}

/// Valid NHS numbers (modulus 11) in the 400 range, none of them the world's patient's.
fn nhs_numbers(count: usize) -> Vec<String> {
    valid_nhs_numbers("40", count)
}

/// A backfill whose messages depend on one another in every way the feed knows: records
/// created then updated, results filed then corrected, each through identifiers the others
/// do not share (the NHS number alone, the hospital number alone), repeats of control ids,
/// merges and results filed after them through the merged record's number, refusals, and
/// the world's existing patient named by NHS number. Imported with one worker and with
/// four (in two runs, so that the second run's groups are found through the records the
/// first created), every message gets the same answer and the records end up the same.
#[test]
fn an_import_with_several_workers_ends_as_one_with_one() {
    const PATIENTS: usize = 24;
    let nhs = nhs_numbers(PATIENTS);
    let mrn = |p: usize| format!("H{p:05}^^^RXH-MRN^MR");
    let nhs_cx = |p: usize| format!("{}^^^NHS^NH", nhs[p]);
    let message = |kind: &str, control: String, pid3: String, family: &str, body: &str| {
        let evn = if kind.starts_with("ADT") { "EVN|A01|20261125101500\r" } else { "" };
        format!(
            "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||{kind}|{control}|P|2.4\r{evn}PID|1||{pid3}||{family}^Giv||19800101|F\r{body}"
        )
        .into_bytes()
    };
    let oru = |control: String, pid3: String, filler: String, value: &str| {
        message(
            "ORU^R01",
            control,
            pid3,
            "Any",
            &format!("OBR|1||{filler}|GLU^Glucose^L|||20261124\rOBX|1|NM|GLU^Glucose^L||{value}|mmol/L||N|||F\r"),
        )
    };
    // First run: every record is created (some into gum too).
    let first: Vec<Vec<u8>> = (0..PATIENTS)
        .map(|p| {
            let ztm = if p % 2 == 0 { "ZTM|gum\r" } else { "" };
            message("ADT^A28^ADT_A05", format!("A{p}"), format!("{}~{}", nhs_cx(p), mrn(p)), &format!("Fam{p}"), ztm)
        })
        .collect();
    // Second run, round by round over the patients, so that each patient's messages are far
    // apart in the file and in different batches.
    let mut second: Vec<Vec<u8>> = Vec::new();
    for round in 0..7 {
        for p in 0..PATIENTS {
            second.push(match round {
                0 => oru(format!("R{p}"), mrn(p), format!("F{p}"), "5.0"),
                1 => message("ADT^A08^ADT_A01", format!("U{p}"), nhs_cx(p), &format!("Changed{p}"), ""),
                2 => oru(format!("C{p}"), nhs_cx(p), format!("F{p}"), "6.5"),
                3 => message("ADT^A08^ADT_A01", format!("A{p}"), nhs_cx(p), "RepeatOfTheFirstRun", ""),
                4 if p % 6 == 5 => {
                    // Patient p merges into patient p - 1, named by its hospital number.
                    let body = format!("MRG|{}\r", mrn(p));
                    message("ADT^A40^ADT_A39", format!("M{p}"), nhs_cx(p - 1), &format!("Changed{}", p - 1), &body)
                }
                4 => message(
                    "ADT^A08^ADT_A01",
                    format!("W{p}"),
                    "9434765919^^^NHS^NH".to_owned(),
                    &format!("World{p}"),
                    "",
                ),
                5 => oru(format!("X{p}"), mrn(p), format!("G{p}"), "7.1"),
                _ => oru(format!("Z{p}"), format!("Q{p}^^^RXH-MRN^MR"), format!("N{p}"), "1.0"),
            });
        }
    }
    let run = |app: &App, messages: &[Vec<u8>], workers: usize| -> Vec<(String, String)> {
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        app.import_hl7(&code(), &operator(), &messages, workers, 7)
            .unwrap()
            .iter()
            .map(|ingested| {
                let (code, _, text) = msa(&ingested.ack);
                (code, text)
            })
            .collect()
    };
    let state = |app: &App| {
        let mut numbers: Vec<String> = nhs.clone();
        numbers.push("9434765919".to_owned());
        app.store()
            .read(|tx| {
                let mut rows = Vec::new();
                for number in &numbers {
                    let Some(patient) = tx.patient_by_nhs_number(&NhsNumber::parse(number).unwrap())? else {
                        rows.push(format!("{number}: none"));
                        continue;
                    };
                    let links = tx.care_links(patient.id)?.iter().filter(|l| l.discharged_at.is_none()).count();
                    let mut entries: Vec<String> = tx
                        .entries(patient.id)?
                        .iter()
                        .map(|e| format!("{}@{}:{}", e.source_key.clone().unwrap_or_default(), e.version, e.title))
                        .collect();
                    entries.sort();
                    rows.push(format!(
                        "{number}: {} merged={} links={links} entries={entries:?}",
                        patient.demographics.family_name,
                        patient.merged_into.is_some()
                    ));
                }
                Ok::<_, AppError>(rows)
            })
            .unwrap()
    };
    for (one, four) in TestDatabase::all().into_iter().zip(TestDatabase::all()) {
        let (one, four) = (Feed::new(one), Feed::new(four));
        let (one, four) = (&one.world.app, &four.world.app);
        assert_eq!(run(one, &first, 1), run(four, &first, 4));
        let answers = run(one, &second, 1);
        assert_eq!(answers, run(four, &second, 4));
        let accepted = answers.iter().filter(|(code, _)| code == "AA").count();
        let refused = answers.iter().filter(|(code, _)| code == "AR").count();
        // Round 6 names hospital numbers no record has: refused. Everything else is accepted,
        // round 5's results through a merged record's number too (identifiers move to the
        // survivor).
        assert_eq!((accepted, refused), (6 * PATIENTS, PATIENTS), "{answers:?}");
        let state_one = state(one);
        assert_eq!(state_one, state(four));
        assert!(state_one.iter().any(|row| row.contains("merged=true")), "{state_one:?}");
        assert!(state_one.iter().any(|row| row.contains("F3@2")), "a corrected result: {state_one:?}");
    }
}

/// An import writes the batch's plain registrations in bulk and applies the rest one by one
/// (`kith-app`'s `hl7::bulk`). Whatever the mix — registrations with a team or an email, repeats of
/// a control id stored before or within the batch, two messages for one person, a result
/// for a person registered in the same batch, a record Kith has, refusals, unreadable bytes
/// — every message gets the answer, and the database the contents, that ingesting the same
/// messages one by one gives.
#[test]
fn an_import_s_bulk_registrations_end_as_one_by_one_ingestion() {
    let nhs = nhs_numbers(40);
    let a28 = |control: &str, pid3: &str, name: &str, rest: &str| {
        format!(
            "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^A28^ADT_A05|{control}|P|2.4\rEVN|A28|20261125101500\rPID|1||{pid3}||{name}||19800101|M|||1 High St^^Leeds^^LS1 1AA||07700900123{rest}\r"
        )
        .into_bytes()
    };
    let both = |p: usize| format!("{}^^^NHS^NH~H{p:05}^^^RXH-MRN^MR", nhs[p]);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    // A team for the first, so that in file order a message applied one by one comes first.
    messages.push(a28("T1", &both(0), "Teamed^Tia", "\rZTM|gum"));
    for p in 1..25 {
        let pid3 = match p {
            1 => format!("{}^^^NHS^NH", nhs[1]),
            2 => format!("H{p:05}^^^RXH-MRN^MR"),
            _ => both(p),
        };
        messages.push(a28(&format!("N{p}"), &pid3, &format!("Plain{p}^Pat"), ""));
    }
    messages.push(a28("E1", &both(25), "Emailed^Em", "~^NET^Internet^em@example.org"));
    messages.push(a28("D1", &both(26), "Twice^First", ""));
    messages.push(a28("D2", &both(26), "Twice^Second", ""));
    messages.push(a28("S1", &both(27), "Stored^Before", ""));
    messages.push(a28("W1", "9434765919^^^NHS^NH", "World^Known", ""));
    messages.push(a28("G1", &both(28), "NoGiven", ""));
    messages.push(a28("R1", &both(29), "Repeat^InBatch", ""));
    messages.push(a28("R1", &both(30), "Repeat^Other", ""));
    messages.push(a28("O1", &both(31), "Resulted^Rae", ""));
    messages.push(
        "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|O2|P|2.4\rPID|1||H00031^^^RXH-MRN^MR\rOBR|1||F31|GLU^Glucose|||20261124\rOBX|1|NM|GLU^Glucose||5.0|mmol/L\r"
            .as_bytes()
            .to_vec(),
    );
    messages.push(b"not an HL7 message at all".to_vec());
    messages.push(
        "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125||ADT^A01^ADT_A01|A1|P|2.4\rEVN|A01\rPID|1||H00032^^^RXH-MRN^MR||Admitted^Ann||19800101|F\r"
            .as_bytes()
            .to_vec(),
    );
    messages.push(a28("N99", &both(33), "Last^Plain", ""));

    let answers = |outcomes: Vec<Ingested>| -> Vec<(String, String, bool)> {
        outcomes
            .into_iter()
            .map(|ingested| {
                let (code, _, text) = msa(&ingested.ack);
                (code, text, ingested.duplicate)
            })
            .collect()
    };
    for (bulk, one_by_one) in TestDatabase::all().into_iter().zip(TestDatabase::all()) {
        let (bulk, one_by_one) = (Feed::new(bulk), Feed::new(one_by_one));
        let op = operator();
        let sender = Hl7Sender::Import { organisation: &code(), operator: &op };
        for feed in [&bulk, &one_by_one] {
            let stored = feed.world.app.ingest_hl7(sender, &a28("S1", &both(27), "Stored^Before", ""));
            assert_eq!(stored.code, AckCode::Accept);
        }
        let before = bulk.world.app.store().read(|tx| tx.audit_head()).unwrap().0;
        let raw: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let imported = answers(bulk.world.app.import_hl7(&code(), &op, &raw, 1, 500).unwrap());
        let single = answers(raw.iter().map(|message| one_by_one.world.app.ingest_hl7(sender, message)).collect());
        assert_eq!(imported, single);
        let accepted = imported.iter().filter(|(code, _, duplicate)| code == "AA" && !duplicate).count();
        assert_eq!(accepted, 34, "{imported:?}");
        assert_eq!(imported.iter().filter(|(_, _, duplicate)| *duplicate).count(), 2, "{imported:?}");
        assert_eq!(imported.iter().filter(|(code, ..)| code == "AR").count(), 2, "{imported:?}");
        assert_eq!(contents(&bulk), contents(&one_by_one));

        // The plain registrations went in bulk: their events precede those of the first
        // message, which has a team and so was applied after them.
        let events = bulk.world.app.audit_events(None, 100_000).unwrap();
        let created: Vec<i64> = events
            .iter()
            .filter(|event| event.seq > before && event.record.action == "patient.create")
            .map(|event| event.seq)
            .collect();
        let teamed = bulk.world.app.patient_by_nhs_number(&NhsNumber::parse(&nhs[0]).unwrap()).unwrap();
        let teamed_created = events
            .iter()
            .find(|event| event.record.patient == Some(teamed.id) && event.record.action == "patient.create")
            .unwrap()
            .seq;
        assert!(created.iter().filter(|seq| **seq < teamed_created).count() >= 20, "{created:?} {teamed_created}");
    }
}

/// Everything an import may write, without the ids and times that differ between two
/// databases: each record (by its names) with its identifiers, care links and entries; the
/// stored messages; and the audit events (their order aside), with ids replaced by names.
fn contents(feed: &Feed) -> Vec<String> {
    let app = &feed.world.app;
    let messages = app.hl7_messages(&code(), None, 10_000).unwrap();
    let events = app.audit_events(None, 100_000).unwrap();
    app.store()
        .read(|tx| {
            let mut patients: Vec<kith_core::PatientId> = events.iter().filter_map(|e| e.record.patient).collect();
            patients.sort();
            patients.dedup();
            let mut names = std::collections::HashMap::new();
            let mut rows = Vec::new();
            for id in &patients {
                let p = tx.patient(*id)?.unwrap();
                let name = format!("{} {}", p.demographics.given_name, p.demographics.family_name);
                names.insert(id.to_string(), name.clone());
                let mut links: Vec<String> = tx
                    .care_links(p.id)?
                    .iter()
                    .map(|l| {
                        let team = tx.team(l.team).unwrap().unwrap().alias.to_string();
                        format!("{team}:{}:{:?}:{:?}", l.labels, l.basis, l.discharged_at.is_some())
                    })
                    .collect();
                links.sort();
                let identifiers: Vec<String> =
                    tx.patient_identifiers(p.id)?.iter().map(|i| i.identifier.to_string()).collect();
                let entries: Vec<String> = tx
                    .entries(p.id)?
                    .iter()
                    .map(|e| format!("{:?}@{}:{}", e.source_key, e.version, e.title))
                    .collect();
                let demographics = &p.demographics;
                rows.push(format!(
                    "patient {name}: nhs={:?} {demographics:?} {:?} account={} sharing_disabled={} merged={} ids={identifiers:?} links={links:?} entries={entries:?}",
                    p.nhs_number,
                    p.registration,
                    p.account.is_some(),
                    p.sharing_disabled,
                    p.merged_into.is_some(),
                ));
            }
            let mut team_names = std::collections::HashMap::new();
            for event in &events {
                if let Some(team) = event.record.acting_team
                    && let Some(found) = tx.team(team)?
                {
                    team_names.insert(team.to_string(), found.alias.to_string());
                }
            }
            let scrub = |text: &str| {
                let mut text = text.to_owned();
                for (id, name) in names.iter().chain(team_names.iter()) {
                    text = text.replace(id.as_str(), name);
                }
                text
            };
            for m in &messages {
                let patient = m.patient.map(|id| names.get(&id.to_string()).cloned().unwrap_or_default());
                let (code, _, text) = msa(&m.ack);
                let records: Vec<String> = m.conflict_records.iter().map(|id| scrub(&id.to_string())).collect();
                rows.push(format!(
                    "message {}|{}|{:?}|{}|{:?}|{:?}|{patient:?}|{code}|{text}|{:?}|{records:?}",
                    m.sending_application,
                    m.sending_facility,
                    m.control_id,
                    m.message_type,
                    m.status,
                    m.error.as_deref().map(scrub),
                    m.conflict,
                ));
            }
            for e in &events {
                let r = &e.record;
                let mut text = format!(
                    "event {}|{:?}|{:?}|{}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{}|{:?}|{:?}",
                    r.actor_kind,
                    r.actor_account.is_some(),
                    r.actor_name,
                    r.channel,
                    r.organisation.is_some(),
                    r.acting_team,
                    r.patient,
                    r.action,
                    r.outcome,
                    r.basis,
                    r.entry_kinds,
                    r.labels,
                    r.subject,
                    r.reason,
                );
                text = scrub(&text);
                // Ids of things not named above (entries, invitations) differ by design.
                let mut kept = String::new();
                for word in text.split_inclusive(|c: char| !c.is_ascii_hexdigit() && c != '-') {
                    let core = word.trim_end_matches(|c: char| !c.is_ascii_hexdigit() && c != '-');
                    if uuid::Uuid::parse_str(core).is_ok() {
                        kept.push_str("<id>");
                        kept.push_str(&word[core.len()..]);
                    } else {
                        kept.push_str(word);
                    }
                }
                rows.push(kept);
            }
            rows.sort();
            Ok::<_, AppError>(rows)
        })
        .unwrap()
}

/// On PostgreSQL another writer may take an NHS number between an import's bulk look-up and
/// its bulk insert. The insert then waits for that writer, fails on the unique index when it
/// commits, and the import's transaction runs again, this time finding the record: the
/// message updates it (and brings it into the organisation) instead of making a second
/// one, and the batch's other registrations are made as usual.
#[test]
fn an_identifier_taken_during_a_bulk_import_is_found_on_the_second_attempt() {
    let Some(database) = TestDatabase::postgres() else { return };
    let feed = Feed::new(database);
    let app = &feed.world.app;
    let nhs = nhs_numbers(5);
    let messages: Vec<Vec<u8>> = (0..5)
        .map(|p| {
            format!(
                "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^A28^ADT_A05|T{p}|P|2.4\rEVN|A28\rPID|1||{}^^^NHS^NH||Fam{p}^Giv||19800101|F\r",
                nhs[p]
            )
            .into_bytes()
        })
        .collect();
    let raw: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let taken = NhsNumber::parse(&nhs[2]).unwrap();
    let mut other_record = feed.world.patient.clone();
    other_record.id = kith_core::PatientId::from_uuid(uuid::Uuid::now_v7());
    other_record.nhs_number = Some(taken.clone());
    other_record.account = None;
    other_record.demographics.email = None;
    // The same person (name and birth date agree), known to another organisation only.
    other_record.demographics.family_name = Name::parse("family name", "Fam2").unwrap();
    other_record.demographics.birth_date = kith_core::Date::parse("1980-01-01").unwrap();
    let other_id = other_record.id;
    let other = feed.world.database.store();
    let (held, wait_for_hold) = std::sync::mpsc::channel();
    let (release, wait_for_release) = std::sync::mpsc::channel::<()>();
    let outcomes = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            other.write(|tx| {
                tx.put_patient(&other_record)?;
                let _ = held.send(());
                let _ = wait_for_release.recv();
                Ok::<_, kith_store::StoreError>(())
            })
        });
        wait_for_hold.recv().unwrap();
        let import = scope.spawn(|| app.import_hl7(&code(), &operator(), &raw, 1, 500));
        // The import looks the numbers up (the uncommitted record is not visible), then its
        // insert waits on the unique index for the other writer.
        std::thread::sleep(std::time::Duration::from_secs(1));
        release.send(()).unwrap();
        writer.join().unwrap().unwrap();
        import.join().unwrap().unwrap()
    });
    let codes: Vec<AckCode> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(codes, [AckCode::Accept; 5], "{outcomes:?}");
    let found = app.patient_by_nhs_number(&taken).unwrap();
    assert_eq!(found.id, other_id, "the message updated the other writer's record");
    assert_eq!(found.demographics.family_name.as_str(), "Fam2");
    let in_organisation = app.store().read(|tx| tx.care_links(found.id)).unwrap().len();
    assert_eq!(in_organisation, 1, "linked to the organisation's Patient Record Team");
    for number in [&nhs[0], &nhs[1], &nhs[3], &nhs[4]] {
        app.patient_by_nhs_number(&NhsNumber::parse(number).unwrap()).unwrap();
    }
    assert_eq!(app.hl7_messages(&code(), None, 100).unwrap().len(), 5);
}
