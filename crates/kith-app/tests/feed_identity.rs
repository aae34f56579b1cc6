//! The feed's identity and trust boundaries, on both backends, as an attacker and a busy
//! hospital would meet them: a hospital number never moves a record to another person; a
//! second organisation's feed cannot change, merge, link or file into the first
//! organisation's patients; a message about a merged-away record reaches the survivor (and
//! is never `AE`); an email another record has does not stop a registration; impossible
//! birth dates and merges are refused with the field; a sender is its credentials.
//! Held messages are listed and resolved in each of the three ways, each audited.

mod support;

use kith_app::*;
use kith_core::model::{Hl7MessageStatus, Integration};
use kith_core::patient::NhsNumber;
use kith_core::text::{Name, OrganisationCode, Reason};
use kith_core::{PatientId, PrivacyLabel};
use kith_hl7::ack::AckCode;
use kith_test_support::{TestDatabase, each_engine};
use support::*;

/// Okafor's NHS number (the world's patient, in RXH only, linked to mh).
const OKAFOR: &str = "9434765919";

fn nhs_numbers(count: usize) -> Vec<String> {
    valid_nhs_numbers("41", count)
}

fn msa(ack: &str) -> (String, String) {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap();
    let msa = message.segment("MSA").unwrap();
    (msa.value(1).to_owned(), msa.value(3).to_owned())
}

/// ERR-4, the severity (`W` for a warning).
fn severity(ack: &str) -> String {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap();
    message.segment("ERR").map(|err| err.value(4).to_owned()).unwrap_or_default()
}

struct Feeds {
    world: World,
    a: Integration,
    b: Integration,
}

fn rxb() -> OrganisationCode {
    OrganisationCode::parse("RXB").unwrap()
}

impl Feeds {
    /// RXH (the world) with the feed RXH-PAS, and a second organisation RXB with its own
    /// feed RXB-PAS and assigning authority.
    fn new(database: TestDatabase) -> Self {
        let world = world(database);
        let app = &world.app;
        let op = operator();
        let a = app.create_integration(&op, &code(), &Name::parse("n", "PAS").unwrap(), "RXH-PAS", None).unwrap();
        app.add_assigning_authority(&op, &code(), "RXH-MRN").unwrap();
        app.create_organisation(
            &op,
            &NewOrganisation {
                code: rxb(),
                name: Name::parse("name", "Other Trust").unwrap(),
                break_glass_duration: None,
            },
        )
        .unwrap();
        let b = app.create_integration(&op, &rxb(), &Name::parse("n", "PAS").unwrap(), "RXB-PAS", None).unwrap();
        app.add_assigning_authority(&op, &rxb(), "RXB-MRN").unwrap();
        Feeds { world, a: a.integration, b: b.integration }
    }

    fn send(&self, integration: &Integration, message: &str) -> Ingested {
        let ingested = self.world.app.ingest_hl7(Hl7Sender::Integration(integration), message.as_bytes());
        assert_ne!(ingested.code, AckCode::Error, "never AE while the database is up: {}", ingested.ack);
        ingested
    }

    fn patient(&self, nhs: &str) -> kith_core::model::Patient {
        self.world.app.patient_by_nhs_number(&NhsNumber::parse(nhs).unwrap()).unwrap()
    }

    fn record(&self, id: PatientId) -> kith_core::model::Patient {
        self.world.app.store().read(|tx| tx.patient(id)).unwrap().unwrap()
    }

    fn in_organisation(&self, id: PatientId, organisation: &OrganisationCode) -> bool {
        self.world
            .app
            .store()
            .read(|tx| {
                let organisation = tx.organisation_by_code(organisation)?.unwrap();
                tx.patient_in_organisation(id, organisation.id)
            })
            .unwrap()
    }
}

fn header(facility: &str, kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|PAS|{facility}|KITH|KITH|20261125101500||{kind}|{control}|P|2.4\r")
}

fn adt(facility: &str, trigger: &str, control: &str, pid: &str) -> String {
    format!("{}EVN|{trigger}\r{pid}\r", header(facility, &format!("ADT^{trigger}^ADT_A05"), control))
}

fn oru(facility: &str, control: &str, pid: &str, filler: &str, service: &str) -> String {
    format!(
        "{}{pid}\rOBR|1||{filler}|{service}^Test|||20261124\rOBX|1|NM|{service}^Test||5.0|mmol/L\r",
        header(facility, "ORU^R01", control)
    )
}

#[test]
fn a_hospital_number_never_moves_a_record_to_another_person() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let other = &nhs_numbers(1)[0];
        // Okafor gets RXH's hospital number K1 from an agreeing A31.
        let linked = feeds.send(
            &feeds.a,
            &adt(
                "RXH-PAS",
                "A31",
                "L1",
                &format!("PID|1||{OKAFOR}^^^NHS^NH~K1^^^RXH-MRN^MR||Okafor^Ngozi||19710914|F"),
            ),
        );
        assert_eq!(msa(&linked.ack), ("AA".into(), String::new()));
        let before = feeds.patient(OKAFOR);

        // K1 with another person's NHS number, name and birth date: held, nothing changes.
        let someone_else = format!("PID|1||{other}^^^NHS^NH~K1^^^RXH-MRN^MR||Nobody^Else||20010101|M");
        let held = feeds.send(&feeds.a, &adt("RXH-PAS", "A31", "W1", &someone_else));
        let (answer, text) = msa(&held.ack);
        assert_eq!(answer, "AA", "held messages are accepted, so the sender does not resend");
        assert_eq!(severity(&held.ack), "W");
        assert!(text.starts_with("held for review by the data-quality team: PID-3"), "{text}");
        assert!(!text.contains(&before.id.to_string()), "the sender is not told Kith's record ids: {text}");
        assert_eq!(held.status, Some(Hl7MessageStatus::Held));
        assert_eq!(feeds.patient(OKAFOR), before, "the record is untouched");
        assert!(app.patient_by_nhs_number(&NhsNumber::parse(other).unwrap()).is_err(), "and no new record");

        // The data-quality staff see it, with the record in question and what they may do.
        let listed = app.held_hl7_messages(&code(), 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].conflict.as_deref(), Some("nhs_number_differs"));
        assert_eq!(listed[0].conflict_records, vec![before.id]);
        assert!(listed[0].error.as_deref().unwrap().contains(&before.id.to_string()));
        // Another organisation cannot resolve (or even see) it.
        let elsewhere =
            app.resolve_held_hl7(&operator(), &rxb(), listed[0].id, &Resolution::ApplyWithoutConflictingField);
        assert!(matches!(elsewhere, Err(AppError::NotFound(_))), "{elsewhere:?}");
        assert!(app.held_hl7_messages(&rxb(), 10).unwrap().is_empty());

        // Resolved without the conflicting field: the NHS number, then the name and birth
        // date that disagree, are left out; nothing of the other person reaches the record.
        let resolved = app
            .resolve_held_hl7(&operator(), &code(), listed[0].id, &Resolution::ApplyWithoutConflictingField)
            .unwrap();
        assert_eq!(resolved.status, Hl7MessageStatus::Accepted);
        let kept = feeds.patient(OKAFOR);
        assert_eq!(
            (&kept.demographics.family_name, &kept.demographics.given_name, kept.demographics.birth_date),
            (&before.demographics.family_name, &before.demographics.given_name, before.demographics.birth_date)
        );
        assert_eq!(kept.nhs_number, before.nhs_number);
        let again = app.resolve_held_hl7(&operator(), &code(), listed[0].id, &Resolution::ApplyWithoutConflictingField);
        assert!(matches!(again, Err(AppError::Conflict(_))), "a resolved message is not held: {again:?}");

        // The same message again (another control id), rejected by a person with a reason.
        let second = feeds.send(&feeds.a, &adt("RXH-PAS", "A31", "W2", &someone_else));
        let second = second.message.unwrap();
        let rejected = app
            .resolve_held_hl7(
                &operator(),
                &code(),
                second,
                &Resolution::Reject(Reason::parse("Wrong patient keyed on the PAS").unwrap()),
            )
            .unwrap();
        assert_eq!(rejected.status, Hl7MessageStatus::Rejected);
        assert!(rejected.resolution.unwrap().contains("Wrong patient keyed on the PAS"));

        // And a third, applied to the chosen record after a person checked: the name and
        // birth date follow, the NHS number never changes by a message.
        let third = feeds.send(&feeds.a, &adt("RXH-PAS", "A31", "W3", &someone_else)).message.unwrap();
        let stranger = PatientId::from_uuid(uuid::Uuid::now_v7());
        let wrong = app.resolve_held_hl7(&operator(), &code(), third, &Resolution::ApplyTo(stranger));
        assert!(matches!(wrong, Err(AppError::Invalid(_))), "only the records in question: {wrong:?}");
        app.resolve_held_hl7(&operator(), &code(), third, &Resolution::ApplyTo(before.id)).unwrap();
        let after = feeds.patient(OKAFOR);
        assert_eq!(after.nhs_number, before.nhs_number);
        assert_eq!(after.demographics.family_name.as_str(), "Nobody");

        // Every resolution is an audit event.
        let resolutions = app
            .audit_events(None, 10_000)
            .unwrap()
            .into_iter()
            .filter(|event| event.record.action == "hl7.resolve")
            .count();
        assert_eq!(resolutions, 3);
    });
}

#[test]
fn another_organisation_s_feed_cannot_change_or_claim_a_patient() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let op = operator();
        let okafor = feeds.patient(OKAFOR);
        app.register_patient_account(&op, &code(), okafor.id, &email("ngozi@example.org"), FAKE_HASH).unwrap();
        let okafor = feeds.patient(OKAFOR);
        let numbers = nhs_numbers(2);
        // A second patient of RXH only, known by NHS number and hospital number.
        let second_pid = format!("PID|1||{}^^^NHS^NH~K2^^^RXH-MRN^MR||Adeyemi^Tunde||19800101|M", numbers[0]);
        assert_eq!(feeds.send(&feeds.a, &adt("RXH-PAS", "A28", "A1", &second_pid)).code, AckCode::Accept);
        let second = feeds.patient(&numbers[0]);

        // RXB with Okafor's NHS number alone (and an attacker's birth date and email): held.
        let attempt =
            format!("PID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19900101|F|||||^NET^Internet^attacker@example.org");
        let held = feeds.send(&feeds.b, &adt("RXB-PAS", "A31", "B1", &attempt));
        assert_eq!(held.status, Some(Hl7MessageStatus::Held), "{}", held.ack);
        let nhs_only = feeds.send(&feeds.b, &adt("RXB-PAS", "A08", "B2", &format!("PID|1||{OKAFOR}^^^NHS^NH")));
        assert_eq!(nhs_only.status, Some(Hl7MessageStatus::Held), "{}", nhs_only.ack);
        assert_eq!(feeds.patient(OKAFOR), okafor, "nothing of Okafor changed");
        assert!(!feeds.in_organisation(okafor.id, &rxb()), "not linked to RXB");

        // With the name and birth date that agree, RXB's record joins: but a registered
        // patient's email is theirs, and stays.
        let agreeing = format!(
            "PID|1||{OKAFOR}^^^NHS^NH~B77^^^RXB-MRN^MR||OKAFOR^Ngozi||19710914|F|||||^NET^Internet^attacker@example.org"
        );
        let joined = feeds.send(&feeds.b, &adt("RXB-PAS", "A31", "B3", &agreeing));
        let (answer, text) = msa(&joined.ack);
        assert_eq!((answer.as_str(), severity(&joined.ack).as_str()), ("AA", "W"));
        // The sender learns that something was not applied, not what or why (that the
        // patient is registered, or that another organisation shares the record).
        assert_eq!(text, "applied; some details were not applied (the data-quality team sees which and why)");
        assert!(feeds.in_organisation(okafor.id, &rxb()));
        assert_eq!(feeds.patient(OKAFOR).demographics.email, okafor.demographics.email);
        let noted = app.hl7_messages(&rxb(), Some(Hl7MessageStatus::Accepted), 10).unwrap();
        assert!(
            noted
                .iter()
                .any(|m| m.error.as_deref().is_some_and(|e| e.contains("email (PID-13): the patient is registered"))),
            "the precise note is kept for the data-quality staff: {noted:?}"
        );

        // RXB cannot merge RXH's patients (Okafor is now shared; the second is RXH's alone).
        let merge = format!(
            "{}EVN|A40\rPID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19710914\rMRG|{}^^^NHS^NH\r",
            header("RXB-PAS", "ADT^A40^ADT_A39", "B4"),
            numbers[0]
        );
        let merge = feeds.send(&feeds.b, &merge);
        // RXB does not have the second patient: to RXB it is as unknown as a number nobody has.
        assert_eq!(msa(&merge.ack), ("AR".into(), "MRG-1: the record to merge was not found".into()));
        assert_eq!(feeds.record(second.id).merged_into, None);
        // Nor can RXH merge a record RXB shares now.
        let merge_in_a = format!(
            "{}EVN|A40\rPID|1||K2^^^RXH-MRN^MR\rMRG|{OKAFOR}^^^NHS^NH\r",
            header("RXH-PAS", "ADT^A40^ADT_A39", "A2")
        );
        assert_eq!(feeds.send(&feeds.a, &merge_in_a).status, Some(Hl7MessageStatus::Held));
        assert_eq!(feeds.record(okafor.id).merged_into, None);

        // RXH files a sexual-health result under filler number F1; RXB reusing F1 files its
        // own entry and never replaces RXH's.
        app.add_label_rule(&op, &code(), "OBR-4", "HIV", PrivacyLabel::SexualHealth).unwrap();
        let okafor_pid = format!("PID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19710914|F");
        assert_eq!(feeds.send(&feeds.a, &oru("RXH-PAS", "A3", &okafor_pid, "F1", "HIV")).code, AckCode::Accept);
        assert_eq!(feeds.send(&feeds.b, &oru("RXB-PAS", "B5", &okafor_pid, "F1", "GLU")).code, AckCode::Accept);
        let results: Vec<_> = app
            .store()
            .read(|tx| tx.entries(okafor.id))
            .unwrap()
            .into_iter()
            .filter(|e| e.source_key.as_deref() == Some("ORU:F1"))
            .collect();
        assert_eq!(results.len(), 2, "one entry per organisation");
        assert!(results.iter().all(|e| e.version == 1));
        assert!(results.iter().any(|e| e.label == Some(PrivacyLabel::SexualHealth)));

        // RXB cannot file a result into RXH's other patient without showing it is them.
        let bare = format!("PID|1||{}^^^NHS^NH", numbers[0]);
        let filed = feeds.send(&feeds.b, &oru("RXB-PAS", "B6", &bare, "F9", "GLU"));
        assert_eq!(filed.status, Some(Hl7MessageStatus::Rejected), "{}", filed.ack);
        assert!(app.store().read(|tx| tx.entries(second.id)).unwrap().is_empty());
        assert!(!feeds.in_organisation(second.id, &rxb()));
        // No existence oracle: the same answer as for an NHS number nobody has (only the
        // ACK's own control id differs); the data-quality staff see why it was refused.
        let nobody = format!("PID|1||{}^^^NHS^NH", numbers[1]);
        let unknown = feeds.send(&feeds.b, &oru("RXB-PAS", "B7", &nobody, "F9", "GLU"));
        assert_eq!(msa(&filed.ack), msa(&unknown.ack));
        let body = |ack: &str| ack.split('\r').skip(1).collect::<Vec<_>>().join("\r").replace("B6", "B7");
        assert_eq!(body(&filed.ack), body(&unknown.ack));
        let stored = app.hl7_messages(&rxb(), Some(Hl7MessageStatus::Rejected), 10).unwrap();
        let b6 = stored.iter().find(|m| m.control_id.as_deref() == Some("B6")).unwrap();
        assert!(b6.error.as_deref().unwrap().contains("is not in this organisation"), "{b6:?}");
        // A visit event about RXH's patient from RXB: nothing, as for an unknown patient.
        let visit = feeds.send(&feeds.b, &adt("RXB-PAS", "A02", "B8", &bare));
        assert_eq!(msa(&visit.ack), ("AA".into(), String::new()));
        assert!(!feeds.in_organisation(second.id, &rxb()));
    });
}

#[test]
fn another_organisation_s_feed_cannot_give_a_patient_an_email() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        // Okafor is RXH's, unregistered, with no email, mobile or address.
        let before = feeds.patient(OKAFOR);
        assert_eq!((&before.demographics.email, before.account), (&None, None));
        // RXB knows the NHS number, name and birth date, and sends its own email address: the
        // record joins RXB, but its contact details stay empty and no invitation is sent.
        let claim = format!(
            "PID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19710914|F|||9 Other Rd^^Leeds^^LS2 2BB||07700 900999^PRN^CP~^NET^Internet^attacker@example.org"
        );
        let joined = feeds.send(&feeds.b, &adt("RXB-PAS", "A31", "B1", &claim));
        assert_eq!(joined.status, Some(Hl7MessageStatus::Accepted), "{}", joined.ack);
        assert!(feeds.in_organisation(before.id, &rxb()));
        let after = feeds.patient(OKAFOR);
        assert_eq!(
            (&after.demographics.email, &after.demographics.mobile, &after.demographics.address),
            (&None, &None, &None)
        );
        let invited = app
            .audit_events(Some(before.id), 1000)
            .unwrap()
            .into_iter()
            .any(|event| event.record.action == "patient.invite");
        assert!(!invited, "no invitation went anywhere");
        // RXH's own feed may give its own patient an email (and so an invitation) — but not
        // now: RXB shares the record.
        let own = format!("PID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19710914|F|||||^NET^Internet^ngozi@example.org");
        feeds.send(&feeds.a, &adt("RXH-PAS", "A31", "A1", &own));
        assert_eq!(feeds.patient(OKAFOR).demographics.email, None);
    });
}

#[test]
fn messages_about_a_merged_away_record_reach_the_survivor_and_merges_are_checked() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let n = nhs_numbers(6);
        let pid =
            |i: usize, local: &str| format!("PID|1||{}^^^NHS^NH~{local}^^^RXH-MRN^MR||Duplicate^Dee||19800101|F", n[i]);
        for (i, local) in [(0, "H0"), (1, "H1"), (2, "H2"), (3, "H3"), (4, "H4"), (5, "H5")] {
            assert_eq!(
                feeds.send(&feeds.a, &adt("RXH-PAS", "A28", &format!("C{i}"), &pid(i, local))).code,
                AckCode::Accept
            );
        }
        let merge = |control: &str, keep: &str, away: &str| {
            format!("{}EVN|A40\rPID|1||{keep}\rMRG|{away}\r", header("RXH-PAS", "ADT^A40^ADT_A39", control))
        };
        // H1 merged into H0.
        let merged =
            feeds.send(&feeds.a, &merge("M1", "H0^^^RXH-MRN^MR", &format!("{}^^^NHS^NH~H1^^^RXH-MRN^MR", n[1])));
        assert_eq!(msa(&merged.ack).0, "AA", "{}", merged.ack);
        let survivor = feeds.patient(&n[0]);
        assert_eq!(feeds.record(feeds.patient(&n[1]).id).merged_into, Some(survivor.id));
        // An update about the merged-away patient (its NHS number and hospital number)
        // reaches the survivor: AA, never AE, and the next message is applied.
        let later = feeds.send(
            &feeds.a,
            &adt(
                "RXH-PAS",
                "A08",
                "M2",
                &format!("PID|1||{}^^^NHS^NH~H1^^^RXH-MRN^MR||Duplicate^Deirdre||19800101|F", n[1]),
            ),
        );
        assert_eq!(msa(&later.ack), ("AA".into(), String::new()), "{}", later.ack);
        assert_eq!(later.status, Some(Hl7MessageStatus::Accepted));
        let after = feeds.record(survivor.id);
        assert_eq!(after.demographics.given_name.as_str(), "Deirdre");
        assert_eq!(after.nhs_number, survivor.nhs_number, "the survivor keeps its NHS number");
        let next = feeds.send(&feeds.a, &oru("RXH-PAS", "M3", &pid(1, "H1"), "F5", "GLU"));
        assert_eq!(next.code, AckCode::Accept);
        assert_eq!(next.status, Some(Hl7MessageStatus::Accepted));
        // The same merge again changes nothing.
        assert_eq!(msa(&feeds.send(&feeds.a, &merge("M4", "H0^^^RXH-MRN^MR", "H1^^^RXH-MRN^MR")).ack).0, "AA");

        // A record merged into itself, and a merge of a record merged elsewhere before: AR,
        // naming MRG-1.
        let itself = feeds.send(&feeds.a, &merge("M5", "H2^^^RXH-MRN^MR", "H2^^^RXH-MRN^MR"));
        assert_eq!(
            msa(&itself.ack),
            ("AR".into(), "MRG-1: names the same record as PID-3; a record is not merged into itself".into())
        );
        feeds.send(&feeds.a, &merge("M6", "H3^^^RXH-MRN^MR", &format!("{}^^^NHS^NH", n[4])));
        let elsewhere = feeds.send(&feeds.a, &merge("M7", "H5^^^RXH-MRN^MR", &format!("{}^^^NHS^NH", n[4])));
        assert_eq!(msa(&elsewhere.ack).0, "AR");
        assert!(msa(&elsewhere.ack).1.starts_with("MRG-1: that record was already merged into another record"));
        assert_eq!(feeds.record(feeds.patient(&n[5]).id).merged_into, None);
    });
}

#[test]
fn emails_and_birth_dates() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let n = nhs_numbers(4);
        let with_email = |i: usize, family: &str, email: &str| {
            format!("PID|1||{}^^^NHS^NH||{family}^Ann||19800101|F|||||^NET^Internet^{email}", n[i])
        };
        assert_eq!(
            feeds.send(&feeds.a, &adt("RXH-PAS", "A28", "E1", &with_email(0, "First", "shared@example.org"))).code,
            AckCode::Accept
        );
        // The same email on another person's registration: the record is made without it,
        // and the sender and the data-quality staff are told.
        let second = feeds.send(&feeds.a, &adt("RXH-PAS", "A28", "E2", &with_email(1, "Second", "shared@example.org")));
        let (answer, text) = msa(&second.ack);
        assert_eq!((answer.as_str(), severity(&second.ack).as_str()), ("AA", "W"));
        assert!(!text.contains("another record"), "no email oracle: {text}");
        let stored = app.hl7_messages(&code(), Some(Hl7MessageStatus::Accepted), 10).unwrap();
        assert!(
            stored.iter().any(|m| m.error.as_deref()
                == Some("email (PID-13): another record has it (one email belongs to one record)")),
            "{stored:?}"
        );
        let made = feeds.patient(&n[1]);
        assert_eq!(made.demographics.email, None);
        assert_eq!(made.demographics.family_name.as_str(), "Second");
        // Its results are filed as anyone's.
        let pid = format!("PID|1||{}^^^NHS^NH||Second^Ann||19800101|F", n[1]);
        assert_eq!(
            feeds.send(&feeds.a, &oru("RXH-PAS", "E3", &pid, "F1", "GLU")).status,
            Some(Hl7MessageStatus::Accepted)
        );

        // Impossible birth dates are refused naming PID-7, and change nothing.
        for (control, date, reason) in [
            ("E4", "21000101", "PID-7: the date of birth is in the future"),
            ("E5", "18791231", "PID-7: the date of birth is before 1880"),
        ] {
            let refused = feeds.send(
                &feeds.a,
                &adt("RXH-PAS", "A28", control, &format!("PID|1||{}^^^NHS^NH||Late^Ann||{date}|F", n[2])),
            );
            assert_eq!(msa(&refused.ack), ("AR".into(), reason.into()));
            assert!(app.patient_by_nhs_number(&NhsNumber::parse(&n[2]).unwrap()).is_err());
        }
    });
}

#[test]
fn a_sender_is_its_credentials() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let n = nhs_numbers(1);
        let pid = format!("PID|1||{}^^^NHS^NH||Sender^Sam||19800101|M", n[0]);
        // RXB's integration claiming RXH's facility: AR naming MSH-4, stored without its
        // control id, so that RXH's own message with that id is no repeat.
        let spoofed = feeds.send(&feeds.b, &adt("RXH-PAS", "A28", "S1", &pid));
        let (answer, text) = msa(&spoofed.ack);
        assert_eq!(
            (answer.as_str(), text.as_str()),
            ("AR", "MSH-4: this integration sends as RXB-PAS, not as RXH-PAS")
        );
        assert!(app.patient_by_nhs_number(&NhsNumber::parse(&n[0]).unwrap()).is_err());
        let real = feeds.send(&feeds.a, &adt("RXH-PAS", "A28", "S1", &pid));
        assert_eq!((real.code, real.duplicate), (AckCode::Accept, false));
        assert!(feeds.in_organisation(feeds.patient(&n[0]).id, &code()));

        // Tokens: rotated (the old one stops), revoked, expired.
        let op = operator();
        let created =
            app.create_integration(&op, &code(), &Name::parse("n", "Lab").unwrap(), "RXH-LAB", Some(1)).unwrap();
        let token = created.token.expose().to_owned();
        assert!(app.integration_for_token(&token).unwrap().is_some());
        feeds.world.clock.advance(std::time::Duration::from_secs(2 * 86_400));
        assert!(app.integration_for_token(&token).unwrap().is_none(), "expired");
        let rotated = app.rotate_integration_token(&op, &code(), "rxh-lab", None).unwrap();
        assert!(app.integration_for_token(&token).unwrap().is_none());
        assert!(app.integration_for_token(rotated.token.expose()).unwrap().is_some());
        app.revoke_integration(&op, &code(), "RXH-LAB").unwrap();
        assert!(app.integration_for_token(rotated.token.expose()).unwrap().is_none(), "revoked");
        // Another organisation's operator path cannot touch RXH's integration.
        assert!(matches!(app.revoke_integration(&op, &rxb(), "RXH-PAS"), Err(AppError::NotFound(_))));
        let actions: Vec<String> = app
            .audit_events(None, 10_000)
            .unwrap()
            .into_iter()
            .map(|event| event.record.action.to_owned())
            .filter(|action| action.starts_with("integration."))
            .collect();
        assert!(
            actions.contains(&"integration.rotate_token".to_owned())
                && actions.contains(&"integration.revoke".to_owned())
        );
    });
}

#[test]
fn a_nul_in_the_header_is_refused_and_never_fails_the_rest_of_its_batch() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let n = nhs_numbers(1);
        // MSH-10 carries an escaped NUL (which PostgreSQL refuses in text).
        let bad = adt("RXH-PAS", "A28", "N\\X00\\1", &format!("PID|1||{}^^^NHS^NH||Nul^Ned||19800101|M", n[0]));
        let good = adt("RXH-PAS", "A28", "N2", &format!("PID|1||{OKAFOR}^^^NHS^NH||Okafor^Ngozi||19710914|F"));
        let batch =
            [(Hl7Sender::Integration(&feeds.a), bad.as_bytes()), (Hl7Sender::Integration(&feeds.a), good.as_bytes())];
        let answers = app.ingest_hl7_batch(&batch);
        assert_eq!(answers[0].code, AckCode::Reject, "{}", answers[0].ack);
        assert!(!answers[0].ack.contains('\0'));
        assert_eq!(answers[1].code, AckCode::Accept, "{}", answers[1].ack);
        assert!(app.patient_by_nhs_number(&NhsNumber::parse(&n[0]).unwrap()).is_err());
        // Sent again, the same answer: never AE.
        assert_eq!(feeds.send(&feeds.a, &bad).code, AckCode::Reject);
    });
}

#[test]
fn a_locked_down_record_joins_no_further_organisation_and_authorities_are_spelled_as_hospitals_do() {
    each_engine(|database| {
        let feeds = Feeds::new(database);
        let app = &feeds.world.app;
        let op = operator();
        // RXH's privacy officer locks Okafor's record down.
        let officer =
            feeds.world.add_member("gum", "privacy@example.org", kith_core::team::MembershipRole::Professional);
        app.appoint_privacy_officer(&op, &code(), &email("privacy@example.org")).unwrap();
        let reason = Reason::parse("Patient request after safeguarding concern").unwrap();
        let okafor = feeds.patient(OKAFOR);
        app.set_sharing_disabled(officer.account.id, okafor.id, true, &reason).unwrap();
        // RXB, with the name and birth date that agree, under an authority written as the
        // hospital writes it: held (answered as a registration), not linked.
        app.add_assigning_authority(&op, &rxb(), "Good Health Hospital").unwrap();
        let claim = format!("PID|1||{OKAFOR}^^^NHS^NH~GH1^^^GOOD  health HOSPITAL^MR||Okafor^Ngozi||19710914|F");
        let held = feeds.send(&feeds.b, &adt("RXB-PAS", "A31", "B1", &claim));
        assert_eq!((held.status, msa(&held.ack)), (Some(Hl7MessageStatus::Held), ("AA".into(), String::new())));
        assert!(!feeds.in_organisation(okafor.id, &rxb()));
        let listed = app.held_hl7_messages(&rxb(), 10).unwrap();
        assert_eq!(listed[0].conflict.as_deref(), Some("sharing_disabled"));
        // A new patient under that authority: the identifier is kept under its one spelling.
        let n = nhs_numbers(1);
        let pid = format!("PID|1||{}^^^NHS^NH~GH2^^^good health hospital^MR||New^Person||19900101|M", n[0]);
        assert_eq!(feeds.send(&feeds.b, &adt("RXB-PAS", "A28", "B2", &pid)).status, Some(Hl7MessageStatus::Accepted));
        let made = feeds.patient(&n[0]);
        let identifiers = app.store().read(|tx| tx.patient_identifiers(made.id)).unwrap();
        assert_eq!(identifiers[0].identifier.to_string(), "GOOD HEALTH HOSPITAL:GH2");
    });
}
