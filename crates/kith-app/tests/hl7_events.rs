//! The events table (`kith_hl7::events`) end to end: every ADT, MDM and SIU event of the
//! table is fed, in the v2.3, v2.5 and v2.8 header shapes, each with and without a UTF-8
//! byte-order mark, on both engines, and each answer (MSA-1, MSA-3, ERR-4) and effect (a
//! record created or updated, or nothing changed; a message held for the data-quality
//! team; an entry's versions and status) is checked against the table, written out below
//! one row per event and situation.

mod support;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use kith_app::*;
use kith_core::model::{Entry, EntryStatus, Hl7MessageRecord, Hl7MessageStatus, Integration, Patient};
use kith_core::patient::{LocalIdentifier, NhsNumber};
use kith_core::text::Name;
use kith_core::{EntryId, Hl7MessageId, OrganisationId, PatientId, TeamId};
use kith_store::StoreError;
use kith_test_support::{TestDatabase, each_engine};
use support::*;

// ----- the table ------------------------------------------------------------------------

/// ADT^A28 and A31 (person information) create a record of a patient Kith does not know,
/// whatever the organisation's setting.
const REGISTER_ALWAYS: [&str; 2] = ["A28", "A31"];
/// ADT^A01, A04, A05 and A08 create one too, unless the organisation creates records from
/// A28 and A31 only.
const REGISTER_UNLESS_RESTRICTED: [&str; 4] = ["A01", "A04", "A05", "A08"];
/// Visit events: they update the demographics of a record Kith knows, and create none.
const UPDATE: [&str; 24] = [
    "A02", "A03", "A06", "A07", "A11", "A12", "A13", "A14", "A15", "A16", "A21", "A22", "A25", "A26", "A27", "A32",
    "A33", "A38", "A52", "A53", "A54", "A55", "A61", "A62",
];
/// ADT^A40 merges MRG-1's record into PID-3's.
const MERGE: &str = "A40";
const DELETE_PERSON: &str = "ADT^A29 asks to delete person information; Kith never deletes a record from a feed";
const DELETE_VISIT: &str = "ADT^A23 asks to delete a visit; Kith keeps what it filed";
const OLD_MERGE: &str = "a merge or identifier change Kith does not apply from a feed: merge with ADT^A40 or by hand";
/// Stored, changing nothing, and held for the data-quality team with this reason.
const REVIEW: [(&str, &str); 18] = [
    ("A29", DELETE_PERSON),
    ("A23", DELETE_VISIT),
    ("A18", OLD_MERGE),
    ("A30", OLD_MERGE),
    ("A34", OLD_MERGE),
    ("A35", OLD_MERGE),
    ("A36", OLD_MERGE),
    ("A39", OLD_MERGE),
    ("A41", OLD_MERGE),
    ("A42", OLD_MERGE),
    ("A43", OLD_MERGE),
    ("A44", OLD_MERGE),
    ("A46", OLD_MERGE),
    ("A47", OLD_MERGE),
    ("A48", OLD_MERGE),
    ("A49", OLD_MERGE),
    ("A50", OLD_MERGE),
    ("A51", OLD_MERGE),
];
/// Stored, changing nothing: tracking, bed status, swaps, links, queries, visit moves.
const STORE_ONLY: [&str; 13] =
    ["A09", "A10", "A17", "A19", "A20", "A24", "A37", "A45", "A56", "A57", "A58", "A59", "A60"];
/// ADT events that merge or re-identify: their messages carry an MRG segment.
const WITH_MRG: [&str; 17] = [
    "A18", "A30", "A34", "A35", "A36", "A39", "A41", "A42", "A43", "A44", "A46", "A47", "A48", "A49", "A50", "A51",
    "A40",
];

const HELD: &str = "held for review by the data-quality team: ";
const NOT_APPLIED: &str = "applied; some details were not applied (the data-quality team sees which and why)";
const ONLY_A28_A31: &str = "patient not found: this organisation creates records from A28 and A31 only";

/// What Kith answers.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// AA; no MSA-3, no ERR.
    Accepted,
    /// AA; MSA-3 starts with this; an ERR whose ERR-4 is `W`.
    Warned(&'static str),
    /// AR; MSA-3 starts with this; an ERR naming this field.
    Refused(&'static str, &'static str),
}

/// Whom an ADT message is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// A record Kith has (made by the feed, in RXH only).
    Known,
    /// No record has the message's identifiers.
    Unknown,
}

/// The organisation's setting (`set_hl7_create_on_any_adt`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Creation {
    AnyRegistration,
    A28AndA31Only,
}

/// What an ADT message does.
#[derive(Clone, Copy, Debug)]
enum AdtEffect {
    /// A record with the message's identifiers and demographics; stored accepted.
    Creates,
    /// The known record's given name becomes the message's, nothing else changes; stored
    /// accepted.
    Updates,
    /// No record is created or changed; stored accepted (rejected for an AR).
    Nothing,
    /// Nothing changes; stored held, conflict `review`, with this reason.
    Held(&'static str),
}

#[derive(Clone, Copy, Debug)]
struct AdtRow {
    trigger: &'static str,
    who: Who,
    creation: Creation,
    answer: Answer,
    effect: AdtEffect,
}

fn row(trigger: &'static str, who: Who, creation: Creation, answer: Answer, effect: AdtEffect) -> AdtRow {
    AdtRow { trigger, who, creation, answer, effect }
}

/// A28 and A31 create a record whatever the setting; A01, A04, A05 and A08 unless the
/// organisation creates from A28 and A31 only (then AR). About a known patient, all update it.
fn registration_rows() -> Vec<AdtRow> {
    use AdtEffect::*;
    use Creation::*;
    use Who::*;
    let mut rows = Vec::new();
    for trigger in REGISTER_ALWAYS {
        for creation in [AnyRegistration, A28AndA31Only] {
            rows.push(row(trigger, Unknown, creation, Answer::Accepted, Creates));
            rows.push(row(trigger, Known, creation, Answer::Accepted, Updates));
        }
    }
    for trigger in REGISTER_UNLESS_RESTRICTED {
        rows.push(row(trigger, Unknown, AnyRegistration, Answer::Accepted, Creates));
        rows.push(row(trigger, Unknown, A28AndA31Only, Answer::Refused(ONLY_A28_A31, "PID-3"), Nothing));
        rows.push(row(trigger, Known, AnyRegistration, Answer::Accepted, Updates));
        rows.push(row(trigger, Known, A28AndA31Only, Answer::Accepted, Updates));
    }
    rows
}

/// Visit events update a known record; about an unknown patient they are accepted and
/// change nothing.
fn visit_rows() -> Vec<AdtRow> {
    let mut rows = Vec::new();
    for trigger in UPDATE {
        rows.push(row(trigger, Who::Known, Creation::AnyRegistration, Answer::Accepted, AdtEffect::Updates));
        rows.push(row(trigger, Who::Unknown, Creation::AnyRegistration, Answer::Accepted, AdtEffect::Nothing));
    }
    rows
}

/// Deletions and old merges are accepted with a warning, held for review, and change nothing.
fn review_rows() -> Vec<AdtRow> {
    let mut rows = Vec::new();
    for (trigger, reason) in REVIEW {
        for who in [Who::Known, Who::Unknown] {
            rows.push(row(trigger, who, Creation::AnyRegistration, Answer::Warned(HELD), AdtEffect::Held(reason)));
        }
    }
    rows
}

/// Events Kith stores only are accepted and change nothing.
fn store_only_rows() -> Vec<AdtRow> {
    let mut rows = Vec::new();
    for trigger in STORE_ONLY {
        for who in [Who::Known, Who::Unknown] {
            rows.push(row(trigger, who, Creation::AnyRegistration, Answer::Accepted, AdtEffect::Nothing));
        }
    }
    rows
}

/// What an MDM or SIU message does to the patient's entries.
#[derive(Clone, Copy, Debug)]
enum EntryEffect {
    /// No entry is filed or changed.
    Nothing,
    /// The entry this scenario calls `entry` is found under `key` at `version` with
    /// `status`; its earlier versions are kept.
    Filed { entry: &'static str, key: &'static str, version: i64, status: EntryStatus, body: Body },
}

/// What the filed version's body is.
#[derive(Clone, Copy, Debug)]
enum Body {
    Is(&'static str),
    /// The parent's body (this text), then the addendum's text.
    Addendum {
        parent: &'static str,
        text: &'static str,
    },
    /// The previous version's.
    Kept,
    Mentions(&'static str),
}

/// One message of a document or appointment scenario.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// MSH-9, e.g. `MDM^T02`.
    event: &'static str,
    /// TXA-12 (document number) or SCH-1 (placer appointment id).
    key: &'static str,
    /// TXA-13, the parent document.
    parent: &'static str,
    /// OBX-5 of an MDM (none when empty); SCH-11.4 (the start) of an SIU.
    text: &'static str,
    answer: Answer,
    effect: EntryEffect,
    /// The appointment's start afterwards.
    starts: Option<&'static str>,
}

const fn step(event: &'static str, key: &'static str, text: &'static str, effect: EntryEffect) -> Step {
    Step { event, key, parent: "", text, answer: Answer::Accepted, effect, starts: None }
}

const fn filed(entry: &'static str, key: &'static str, version: i64, status: EntryStatus, body: Body) -> EntryEffect {
    EntryEffect::Filed { entry, key, version, status, body }
}

/// MDM: T02, T04 and T08 file the document of TXA-12 or a new version of it; T06 adds an
/// addendum to the TXA-13 parent; T10 replaces the TXA-13 parent, which takes the new
/// number; T11 cancels (of an unknown document: a warning); T01, T03, T05, T07 and T09 are
/// stored only.
fn mdm_steps() -> Vec<Step> {
    use Body::*;
    use EntryEffect::Nothing;
    use EntryStatus::{Cancelled, Final};
    vec![
        step("MDM^T02", "DOC1", "First text", filed("A", "DOC1", 1, Final, Is("First text"))),
        step("MDM^T04", "DOC1", "Second text", filed("A", "DOC1", 2, Final, Is("Second text"))),
        step("MDM^T08", "DOC1", "Third text", filed("A", "DOC1", 3, Final, Is("Third text"))),
        step("MDM^T04", "DOC4", "Another document", filed("B", "DOC4", 1, Final, Is("Another document"))),
        step("MDM^T08", "DOC5", "A third document", filed("C", "DOC5", 1, Final, Is("A third document"))),
        Step {
            parent: "DOC1",
            ..step(
                "MDM^T06",
                "DOC2",
                "Seen again today",
                filed("A", "DOC1", 4, Final, Addendum { parent: "Third text", text: "Seen again today" }),
            )
        },
        Step {
            parent: "DOC1",
            ..step("MDM^T10", "DOC3", "Replacement text", filed("A", "DOC3", 5, Final, Is("Replacement text")))
        },
        step("MDM^T02", "DOC3", "Replaced again", filed("A", "DOC3", 6, Final, Is("Replaced again"))),
        step("MDM^T11", "DOC3", "", filed("A", "DOC3", 7, Cancelled, Kept)),
        Step { answer: Answer::Warned(NOT_APPLIED), ..step("MDM^T11", "DOC9", "", Nothing) },
        step("MDM^T01", "DOC4", "", Nothing),
        step("MDM^T03", "DOC4", "", Nothing),
        step("MDM^T05", "DOC4", "", Nothing),
        step("MDM^T07", "DOC4", "", Nothing),
        step("MDM^T09", "DOC4", "", Nothing),
        step("MDM^T01", "DOC8", "", Nothing),
    ]
}

/// SIU: S12 books the appointment of SCH-1; S13 and S14 change it (booked again if it was
/// cancelled); S15 and S16 cancel it; S26 marks it not attended; S17 keeps it, cancelled
/// (of an unknown appointment: nothing); S18 to S25 are stored only.
fn siu_steps() -> Vec<Step> {
    use Body::*;
    use EntryEffect::Nothing;
    use EntryStatus::{Booked, Cancelled, NoShow};
    let at = |starts, step: Step| Step { starts: Some(starts), ..step };
    let first = "2026-12-01T09:00:00Z";
    let moved = "2026-12-08T09:00:00Z";
    let mut steps = vec![
        at(first, step("SIU^S12", "APT1", "20261201090000", filed("P", "APT1", 1, Booked, Mentions("OPD2")))),
        at(moved, step("SIU^S13", "APT1", "20261208090000", filed("P", "APT1", 2, Booked, Mentions("OPD2")))),
        at(moved, step("SIU^S14", "APT1", "20261208090000", filed("P", "APT1", 3, Booked, Mentions("OPD2")))),
        at(moved, step("SIU^S15", "APT1", "20261208090000", filed("P", "APT1", 4, Cancelled, Mentions("OPD2")))),
        at(moved, step("SIU^S14", "APT1", "20261208090000", filed("P", "APT1", 5, Booked, Mentions("OPD2")))),
        at(moved, step("SIU^S16", "APT1", "20261208090000", filed("P", "APT1", 6, Cancelled, Mentions("OPD2")))),
        at(first, step("SIU^S13", "APT1", "20261201090000", filed("P", "APT1", 7, Booked, Mentions("OPD2")))),
        at(first, step("SIU^S26", "APT1", "20261201090000", filed("P", "APT1", 8, NoShow, Mentions("OPD2")))),
        at(first, step("SIU^S17", "APT1", "20261201090000", filed("P", "APT1", 9, Cancelled, Mentions("S17")))),
        step("SIU^S17", "APT9", "20261201090000", Nothing),
        at(first, step("SIU^S12", "APT2", "20261201090000", filed("Q", "APT2", 1, Booked, Mentions("OPD2")))),
    ];
    for event in ["SIU^S18", "SIU^S19", "SIU^S20", "SIU^S21", "SIU^S22", "SIU^S23", "SIU^S24", "SIU^S25"] {
        steps.push(step(event, "APT2", "20261215090000", Nothing));
    }
    steps
}

// ----- messages -------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Version {
    V23,
    V25,
    V28,
}

/// How a sender writes its header, and whether a byte-order mark comes first.
#[derive(Clone, Copy, Debug)]
struct Shape {
    version: Version,
    bom: bool,
}

const SHAPES: [Shape; 6] = [
    Shape { version: Version::V23, bom: false },
    Shape { version: Version::V23, bom: true },
    Shape { version: Version::V25, bom: false },
    Shape { version: Version::V25, bom: true },
    Shape { version: Version::V28, bom: false },
    Shape { version: Version::V28, bom: true },
];

impl Shape {
    fn tag(self) -> String {
        let version = match self.version {
            Version::V23 => "v2.3",
            Version::V25 => "v2.5",
            Version::V28 => "v2.8",
        };
        format!("{version}{}", if self.bom { " with BOM" } else { "" })
    }

    /// The message: MSH as the version writes it (v2.3 without the message structure;
    /// v2.8 with MSH-15/16 and MSH-18), then `segments`, each ended by a carriage return.
    fn message(self, message_type: &str, control: &str, segments: &[String]) -> Vec<u8> {
        let (code, trigger) = message_type.split_once('^').expect("CODE^TRIGGER");
        let msh = "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500|";
        let header = match self.version {
            Version::V23 => format!("{msh}|{code}^{trigger}|{control}|P|2.3"),
            Version::V25 => format!("{msh}|{code}^{trigger}^{code}_{trigger}|{control}|P|2.5"),
            Version::V28 => {
                format!("{msh}|{code}^{trigger}^{code}_{trigger}|{control}|P|2.8|||AL|NE||UNICODE UTF-8")
            }
        };
        let mut bytes = if self.bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(header.as_bytes());
        for segment in segments {
            bytes.push(b'\r');
            bytes.extend_from_slice(segment.as_bytes());
        }
        bytes.push(b'\r');
        bytes
    }

    /// EVN: EVN-1 repeats the trigger up to v2.5; v2.8 has withdrawn it.
    fn evn(self, trigger: &str) -> String {
        match self.version {
            Version::V23 | Version::V25 => format!("EVN|{trigger}|20261125101500"),
            Version::V28 => "EVN||20261125101500".to_owned(),
        }
    }
}

/// A patient as a message names them.
#[derive(Clone, Debug)]
struct Person {
    nhs: String,
    mrn: String,
    family: String,
    given: String,
    /// `YYYYMMDD`.
    birth: &'static str,
}

impl Person {
    fn pid(&self) -> String {
        format!(
            "PID|1||{}^^^NHS^NH~{}^^^RXH-MRN^MR||{}^{}||{}|F",
            self.nhs, self.mrn, self.family, self.given, self.birth
        )
    }

    fn birth_date(&self) -> String {
        format!("{}-{}-{}", &self.birth[..4], &self.birth[4..6], &self.birth[6..])
    }
}

/// An acknowledgement, read.
#[derive(Debug)]
struct Ack {
    /// MSA-1, MSA-2, MSA-3.
    code: String,
    control: String,
    text: String,
    /// ERR-1 as `SEG-field`, and ERR-4.
    error: Option<(String, String)>,
    raw: String,
}

impl Ack {
    fn read(ingested: &Ingested) -> Self {
        let message = kith_hl7::parse(ingested.ack.as_bytes()).message.expect("the ACK is HL7");
        let msa = message.segment("MSA").expect("the ACK has an MSA");
        let error = message
            .segment("ERR")
            .map(|err| (format!("{}-{}", err.component(1, 1), err.component(1, 3)), err.value(4).to_owned()));
        Ack {
            code: msa.value(1).to_owned(),
            control: msa.value(2).to_owned(),
            text: msa.value(3).to_owned(),
            error,
            raw: ingested.ack.replace('\r', "\n"),
        }
    }
}

impl Answer {
    fn check(self, ingested: &Ingested, ack: &Ack, control: &str, context: &str) {
        let raw = &ack.raw;
        assert!(!ingested.duplicate, "{context}: not a repeat");
        assert_eq!(ack.control, control, "{context}: MSA-2 is the message's MSH-10\n{raw}");
        assert_eq!(ack.code, ingested.code.code(), "{context}: MSA-1 is the answer's code\n{raw}");
        match self {
            Answer::Accepted => {
                assert_eq!(ack.code, "AA", "{context}: MSA-1\n{raw}");
                assert_eq!(ack.text, "", "{context}: MSA-3\n{raw}");
                assert_eq!(ack.error, None, "{context}: no ERR\n{raw}");
            }
            Answer::Warned(prefix) => {
                assert_eq!(ack.code, "AA", "{context}: MSA-1\n{raw}");
                assert!(ack.text.starts_with(prefix), "{context}: MSA-3 starts {prefix:?}\n{raw}");
                let severity = ack.error.as_ref().map(|(_, severity)| severity.as_str());
                assert_eq!(severity, Some("W"), "{context}: ERR-4 is W\n{raw}");
            }
            Answer::Refused(prefix, location) => {
                assert_eq!(ack.code, "AR", "{context}: MSA-1\n{raw}");
                assert!(ack.text.starts_with(prefix), "{context}: MSA-3 starts {prefix:?}\n{raw}");
                let (at, severity) = ack.error.clone().unwrap_or_else(|| panic!("{context}: an ERR\n{raw}"));
                assert_eq!(at, location, "{context}: ERR-1\n{raw}");
                assert_ne!(severity, "W", "{context}: an error, not a warning\n{raw}");
            }
        }
    }

    fn status(self) -> Hl7MessageStatus {
        match self {
            Answer::Accepted | Answer::Warned(_) => Hl7MessageStatus::Accepted,
            Answer::Refused(..) => Hl7MessageStatus::Rejected,
        }
    }
}

// ----- the feed -------------------------------------------------------------------------

/// See [`Feed::adt_state`].
struct AdtState {
    audit_head: i64,
    known: Patient,
    duplicate: Patient,
    by_nhs_number: Option<Patient>,
    by_mrn: Option<Patient>,
    stored: Option<Hl7MessageRecord>,
}

struct Feed {
    world: World,
    integration: Integration,
    organisation: OrganisationId,
    prt: TeamId,
    /// Control ids and patients' numbers, never used twice.
    next_control: Cell<u32>,
    next_patient: Cell<u32>,
    sent: Cell<usize>,
}

impl Feed {
    fn new(database: TestDatabase) -> Self {
        let world = world(database);
        let op = operator();
        let created =
            world.app.create_integration(&op, &code(), &Name::parse("n", "PAS").unwrap(), "RXH-PAS", None).unwrap();
        world.app.add_assigning_authority(&op, &code(), "RXH-MRN").unwrap();
        let (organisation, prt) = world
            .app
            .store()
            .read(|tx| {
                let organisation = tx.organisation_by_code(&code())?.expect("RXH exists");
                let prt = tx.patient_record_team(organisation.id)?.expect("RXH has its Patient Record Team");
                Ok::<_, StoreError>((organisation.id, prt.id))
            })
            .unwrap();
        Feed {
            world,
            integration: created.integration,
            organisation,
            prt,
            next_control: Cell::new(0),
            next_patient: Cell::new(0),
            sent: Cell::new(0),
        }
    }

    fn app(&self) -> &App {
        &self.world.app
    }

    fn control(&self) -> String {
        let next = self.next_control.get() + 1;
        self.next_control.set(next);
        format!("EV{next:05}")
    }

    /// A person no record has: a new NHS number (valid, modulus 11) and hospital number.
    fn stranger(&self, family: &str, given: &str) -> Person {
        let nhs = loop {
            let serial = self.next_patient.get() + 1;
            self.next_patient.set(serial);
            let base = format!("40{serial:07}");
            let total: u32 = base.chars().zip((2..=10).rev()).map(|(d, w)| d.to_digit(10).unwrap() * w).sum();
            match 11 - total % 11 {
                10 => continue,
                11 => break format!("{base}0"),
                check => break format!("{base}{check}"),
            }
        };
        let mrn = format!("K{}", self.next_patient.get());
        Person { nhs, mrn, family: family.to_owned(), given: given.to_owned(), birth: "19850302" }
    }

    fn send(&self, bytes: &[u8]) -> (Ingested, Ack) {
        let ingested = self.app().ingest_hl7(Hl7Sender::Integration(&self.integration), bytes);
        self.sent.set(self.sent.get() + 1);
        let ack = Ack::read(&ingested);
        (ingested, ack)
    }

    fn set_creation(&self, creation: Creation) {
        self.app().set_hl7_create_on_any_adt(&operator(), &code(), creation == Creation::AnyRegistration).unwrap();
    }

    fn audit_head(&self) -> i64 {
        self.app().store().read(|tx| tx.audit_head()).unwrap().0
    }

    fn stored(&self, ingested: &Ingested) -> Hl7MessageRecord {
        let id = ingested.message.expect("the message is stored");
        self.app().store().read(|tx| tx.hl7_message(id)).unwrap().expect("the stored message")
    }

    fn patient(&self, id: PatientId) -> Patient {
        self.app().store().read(|tx| tx.patient(id)).unwrap().expect("the record exists")
    }

    fn by_nhs_number(&self, nhs: &str) -> Option<Patient> {
        self.app().store().read(|tx| tx.patient_by_nhs_number(&NhsNumber::parse(nhs).unwrap())).unwrap()
    }

    fn by_mrn(&self, mrn: &str) -> Option<Patient> {
        let identifier = LocalIdentifier::parse(&format!("RXH-MRN:{mrn}")).unwrap();
        self.app().store().read(|tx| tx.patient_by_local_identifier(self.organisation, &identifier)).unwrap()
    }

    /// The entry the feed filed under `MDM:<key>` or `SIU:<key>` (its Patient Record Team's).
    fn entry(&self, patient: PatientId, key: &str) -> Option<Entry> {
        self.app().store().read(|tx| tx.entry_by_source_key(patient, self.prt, key)).unwrap()
    }

    fn entries(&self, patient: PatientId) -> Vec<Entry> {
        let mut entries = self.app().store().read(|tx| tx.entries(patient)).unwrap();
        entries.sort_by_key(|entry| entry.id);
        entries
    }

    fn history(&self, patient: PatientId, entry: EntryId) -> Vec<Entry> {
        self.app().store().read(|tx| tx.entry_history(patient, entry)).unwrap()
    }

    /// Everything an ADT message could change, read at once: the audit head, the known and
    /// duplicate records, the records `person`'s identifiers find, and the stored message.
    fn adt_state(
        &self,
        known: PatientId,
        duplicate: PatientId,
        person: &Person,
        message: Option<Hl7MessageId>,
    ) -> AdtState {
        let nhs_number = NhsNumber::parse(&person.nhs).unwrap();
        let mrn = LocalIdentifier::parse(&format!("RXH-MRN:{}", person.mrn)).unwrap();
        self.app()
            .store()
            .read(|tx| {
                Ok::<_, StoreError>(AdtState {
                    audit_head: tx.audit_head()?.0,
                    known: tx.patient(known)?.expect("the known record"),
                    duplicate: tx.patient(duplicate)?.expect("the duplicate record"),
                    by_nhs_number: tx.patient_by_nhs_number(&nhs_number)?,
                    by_mrn: tx.patient_by_local_identifier(self.organisation, &mrn)?,
                    stored: match message {
                        Some(id) => tx.hl7_message(id)?,
                        None => None,
                    },
                })
            })
            .unwrap()
    }

    /// Registers `person` with an A28 in `shape`: a new record.
    fn register(&self, shape: Shape, person: &Person) -> Patient {
        let control = self.control();
        let (ingested, ack) = self.send(&shape.message("ADT^A28", &control, &[shape.evn("A28"), person.pid()]));
        Answer::Accepted.check(&ingested, &ack, &control, &format!("{}: registering {}", shape.tag(), person.nhs));
        self.by_nhs_number(&person.nhs).expect("the A28 created the record")
    }

    /// Every message sent was stored once, as sent by the integration.
    fn check_all_stored(&self) {
        let stored = self.app().hl7_messages(&code(), None, 10_000).unwrap();
        assert_eq!(stored.len(), self.sent.get(), "every message is stored");
        assert!(stored.iter().all(|m| m.integration == Some(self.integration.id)));
    }
}

// ----- ADT ------------------------------------------------------------------------------

/// A given name of its own for row `n`: letters only, since a name that differs only in
/// digits or punctuation is the same name written another way.
fn given_name(n: usize) -> String {
    let letters: String = n.to_string().bytes().map(|digit| char::from(b'a' + (digit - b'0'))).collect();
    format!("Given{letters}")
}

#[test]
fn the_rows_cover_every_adt_event_of_the_standard() {
    let rows = [registration_rows(), visit_rows(), review_rows(), store_only_rows()].concat();
    let mut covered: BTreeSet<&str> = rows.iter().map(|row| row.trigger).collect();
    covered.insert(MERGE);
    let standard: Vec<String> = (1..=62).map(|n| format!("A{n:02}")).collect();
    assert_eq!(covered.into_iter().collect::<Vec<_>>(), standard);
}

#[test]
fn adt_registrations_and_a40_create_update_refuse_and_merge_as_the_table_says() {
    feed_adt_rows(&registration_rows(), true);
}

#[test]
fn adt_visit_events_update_known_records_and_create_none() {
    feed_adt_rows(&visit_rows(), false);
}

#[test]
fn adt_deletions_and_old_merges_are_held_for_review_and_change_nothing() {
    feed_adt_rows(&review_rows(), false);
}

#[test]
fn adt_events_kith_stores_only_are_accepted_and_change_nothing() {
    feed_adt_rows(&store_only_rows(), false);
}

/// Feeds each row in every shape, on both engines, each shape with a known record of its
/// own (and a duplicate of it, known by hospital number only, that MRG-1 names); with
/// `merge`, each shape ends with an A40 merging the duplicate into the known record.
fn feed_adt_rows(rows: &[AdtRow], merge: bool) {
    each_engine(|database| {
        let engine = database.engine;
        let feed = Feed::new(database);
        let mut creation = Creation::AnyRegistration;
        let mut held = BTreeSet::new();
        for shape in SHAPES {
            let known = feed.stranger("Adeyemi", "Tolu");
            let known_record = feed.register(shape, &known);
            // A second record of the same person, by hospital number only: what the merge
            // events name in MRG-1.
            let duplicate_mrn = format!("D{}", feed.next_patient.get());
            let control = feed.control();
            let pid = format!("PID|1||{duplicate_mrn}^^^RXH-MRN^MR||Adeyemi^Tolu||{}|F", known.birth);
            let (ingested, ack) = feed.send(&shape.message("ADT^A28", &control, &[shape.evn("A28"), pid]));
            Answer::Accepted.check(&ingested, &ack, &control, "the duplicate record");
            let duplicate_record = feed.by_mrn(&duplicate_mrn).expect("the duplicate record");
            assert_ne!(duplicate_record.id, known_record.id);

            for (n, row) in rows.iter().enumerate() {
                let context = format!("{engine:?} {} ADT^{} {:?}", shape.tag(), row.trigger, row);
                if row.creation != creation {
                    feed.set_creation(row.creation);
                    creation = row.creation;
                }
                let given = given_name(n);
                let person = match row.who {
                    Who::Known => Person { given: given.clone(), ..known.clone() },
                    Who::Unknown => feed.stranger("Stranger", &given),
                };
                let mut segments = vec![shape.evn(row.trigger), person.pid()];
                let class = if REGISTER_ALWAYS.contains(&row.trigger) { "N" } else { "I" };
                segments.push(format!("PV1|1|{class}|WARD7^BED1^^RXH-PAS"));
                if WITH_MRG.contains(&row.trigger) {
                    segments.push(format!("MRG|{}^^^RXH-MRN^MR", duplicate_mrn));
                }
                let before = feed.adt_state(known_record.id, duplicate_record.id, &person, None);
                let control = feed.control();
                let (ingested, ack) = feed.send(&shape.message(&format!("ADT^{}", row.trigger), &control, &segments));
                row.answer.check(&ingested, &ack, &control, &context);
                let after = feed.adt_state(known_record.id, duplicate_record.id, &person, ingested.message);
                let stored = after.stored.expect("the message is stored");
                assert_eq!(stored.message_type, format!("ADT^{}", row.trigger), "{context}");
                assert_eq!(stored.control_id.as_deref(), Some(control.as_str()), "{context}");
                let expected_status = match row.effect {
                    AdtEffect::Held(_) => Hl7MessageStatus::Held,
                    _ => row.answer.status(),
                };
                assert_eq!(stored.status, expected_status, "{context}");
                assert_eq!(ingested.status, Some(expected_status), "{context}");
                assert_eq!(after.duplicate, before.duplicate, "{context}: the duplicate is untouched");
                match row.effect {
                    AdtEffect::Creates => {
                        let created = after.by_nhs_number.unwrap_or_else(|| panic!("{context}: created"));
                        let d = &created.demographics;
                        assert_eq!(
                            (d.family_name.as_str(), d.given_name.as_str(), d.birth_date.to_string()),
                            (person.family.as_str(), person.given.as_str(), person.birth_date()),
                            "{context}"
                        );
                        assert_eq!(after.by_mrn.map(|p| p.id), Some(created.id), "{context}: PID-3's MRN");
                        assert_eq!(stored.patient, Some(created.id), "{context}");
                        assert_eq!(after.known, before.known, "{context}: the known record is untouched");
                    }
                    AdtEffect::Updates => {
                        let mut expected = before.known.clone();
                        expected.demographics.given_name = Name::parse("given", &given).unwrap();
                        expected.updated_at = after.known.updated_at;
                        assert_eq!(after.known, expected, "{context}: the given name changed, nothing else");
                        assert_eq!(stored.patient, Some(known_record.id), "{context}");
                        assert!(after.audit_head > before.audit_head, "{context}: the update is audited");
                    }
                    AdtEffect::Nothing | AdtEffect::Held(_) => {
                        assert_eq!(after.known, before.known, "{context}: the known record is unchanged");
                        assert_eq!(after.audit_head, before.audit_head, "{context}: nothing written but the message");
                        if row.who == Who::Unknown {
                            assert!(after.by_nhs_number.is_none(), "{context}: no record created");
                            assert!(after.by_mrn.is_none(), "{context}: no record created");
                        }
                    }
                }
                if let AdtEffect::Held(reason) = row.effect {
                    assert_eq!(ack.text, format!("{HELD}{reason}"), "{context}: MSA-3");
                    assert_eq!(stored.conflict.as_deref(), Some("review"), "{context}");
                    assert_eq!(stored.error.as_deref(), Some(reason), "{context}");
                    let named = if row.who == Who::Known { vec![known_record.id] } else { vec![] };
                    assert_eq!(stored.conflict_records, named, "{context}: the records PID-3 names");
                    held.insert(stored.id);
                } else {
                    assert_eq!(stored.conflict, None, "{context}");
                }
            }

            if !merge {
                continue;
            }
            // A40: the duplicate merges into the known record.
            let control = feed.control();
            let segments = [shape.evn(MERGE), known.pid(), format!("MRG|{}^^^RXH-MRN^MR", duplicate_mrn)];
            let (ingested, ack) = feed.send(&shape.message("ADT^A40", &control, &segments));
            let context = format!("{engine:?} {} ADT^A40", shape.tag());
            Answer::Accepted.check(&ingested, &ack, &control, &context);
            assert_eq!(feed.stored(&ingested).status, Hl7MessageStatus::Accepted, "{context}");
            assert_eq!(feed.patient(duplicate_record.id).merged_into, Some(known_record.id), "{context}");
            assert_eq!(feed.patient(known_record.id).merged_into, None, "{context}");
        }
        // The data-quality team's list holds exactly the review events' messages.
        let listed = feed.app().held_hl7_messages(&code(), 10_000).unwrap();
        assert_eq!(listed.iter().map(|m| m.id).collect::<BTreeSet<_>>(), held);
        assert_eq!(listed.len(), held.len());
        let held_rows = rows.iter().filter(|row| matches!(row.effect, AdtEffect::Held(_))).count();
        assert_eq!(held.len(), held_rows * SHAPES.len());
        feed.check_all_stored();
    });
}

// ----- MDM and SIU ----------------------------------------------------------------------

fn mdm_segments(shape: Shape, trigger: &str, person: &Person, step: &Step) -> Vec<String> {
    let mut segments = vec![
        shape.evn(trigger),
        person.pid(),
        "PV1|1|O|OPD2^^^RXH-PAS".to_owned(),
        format!("TXA|1|CN^Clinic note|TX|20261120101500||||||||{}|{}||||AU", step.key, step.parent),
    ];
    if !step.text.is_empty() {
        segments.push(format!("OBX|1|TX|||{}", step.text));
    }
    segments
}

fn siu_segments(person: &Person, step: &Step) -> Vec<String> {
    vec![
        format!("SCH|{}||||||FU^Follow-up||30|MIN|^^^{}", step.key, step.text),
        person.pid(),
        "RGS|1".to_owned(),
        "AIS|1||CARD^Cardiology clinic".to_owned(),
        "AIL|1||OPD2".to_owned(),
    ]
}

#[test]
fn every_mdm_and_siu_event_is_answered_and_applied_as_the_events_table_says() {
    each_engine(|database| {
        let engine = database.engine;
        let feed = Feed::new(database);
        for shape in SHAPES {
            let person = feed.stranger("Mensah", "Kofi");
            let patient = feed.register(shape, &person).id;
            // The scenario's entries: their id and the key they were last found under.
            let mut named: BTreeMap<&str, (EntryId, String)> = BTreeMap::new();
            for step in mdm_steps().iter().chain(siu_steps().iter()) {
                let context = format!("{engine:?} {} {} {}: {step:?}", shape.tag(), step.event, step.key);
                let (code, trigger) = step.event.split_once('^').unwrap();
                let (segments, prefix) = match code {
                    "MDM" => (mdm_segments(shape, trigger, &person, step), "MDM:"),
                    _ => (siu_segments(&person, step), "SIU:"),
                };
                let before = feed.entries(patient);
                let head = feed.audit_head();
                let control = feed.control();
                let (ingested, ack) = feed.send(&shape.message(step.event, &control, &segments));
                step.answer.check(&ingested, &ack, &control, &context);
                let stored = feed.stored(&ingested);
                assert_eq!(stored.status, Hl7MessageStatus::Accepted, "{context}");
                assert_eq!(stored.message_type, step.event, "{context}");
                let after = feed.entries(patient);
                match step.effect {
                    EntryEffect::Nothing => {
                        assert_eq!(after, before, "{context}: no entry filed or changed");
                        assert_eq!(feed.audit_head(), head, "{context}: nothing was written but the message");
                        let key = format!("{prefix}{}", step.key);
                        if !named.values().any(|(_, known)| *known == key) {
                            assert!(feed.entry(patient, &key).is_none(), "{context}: nothing filed under {key}");
                        }
                    }
                    EntryEffect::Filed { entry, key, version, status, body } => {
                        let key = format!("{prefix}{key}");
                        let found = feed.entry(patient, &key).unwrap_or_else(|| panic!("{context}: {key} filed"));
                        assert_eq!(
                            (found.version, found.status, found.source_key.as_deref()),
                            (version, Some(status), Some(key.as_str())),
                            "{context}"
                        );
                        assert_eq!(found.authored_by, feed.prt, "{context}: the Patient Record Team's");
                        assert_eq!(stored.patient, Some(patient), "{context}");
                        match named.get(entry) {
                            Some((id, previous_key)) => {
                                assert_eq!(found.id, *id, "{context}: a new version of entry {entry}");
                                assert_eq!(after.len(), before.len(), "{context}: no new entry");
                                if *previous_key != key {
                                    assert!(
                                        feed.entry(patient, previous_key).is_none(),
                                        "{context}: {previous_key} now names no entry"
                                    );
                                }
                            }
                            None => assert_eq!(after.len(), before.len() + 1, "{context}: a new entry"),
                        }
                        // Every earlier version is kept; the one before is what was current.
                        let history = feed.history(patient, found.id);
                        let versions: Vec<i64> = history.iter().map(|v| v.version).collect();
                        assert_eq!(versions, (1..version).collect::<Vec<_>>(), "{context}: versions kept");
                        let previous = before.iter().find(|e| e.id == found.id);
                        if let Some(previous) = previous {
                            let last = history.last().expect("an earlier version");
                            assert_eq!(
                                (&last.body, last.status, last.version),
                                (&previous.body, previous.status, previous.version),
                                "{context}: the previous version is kept as it was"
                            );
                        }
                        match body {
                            Body::Is(text) => assert_eq!(found.body, text, "{context}"),
                            Body::Addendum { parent, text } => assert!(
                                found.body.starts_with(&format!("{parent}\n\nAddendum")) && found.body.ends_with(text),
                                "{context}: the parent's body, then the addendum: {:?}",
                                found.body
                            ),
                            Body::Kept => {
                                assert_eq!(Some(&found.body), previous.map(|p| &p.body), "{context}: the body is kept")
                            }
                            Body::Mentions(text) => {
                                assert!(found.body.contains(text), "{context}: {text} in {:?}", found.body)
                            }
                        }
                        if let Some(starts) = step.starts {
                            assert_eq!(found.effective_at.to_string(), starts, "{context}: the start");
                        }
                        // No other entry changed.
                        let others = |entries: &[Entry]| -> Vec<Entry> {
                            entries.iter().filter(|e| e.id != found.id).cloned().collect()
                        };
                        assert_eq!(others(&after), others(&before), "{context}: other entries unchanged");
                        named.insert(entry, (found.id, key));
                    }
                }
            }
            let mut filed: Vec<(String, i64, Option<EntryStatus>)> =
                feed.entries(patient).into_iter().filter_map(|e| Some((e.source_key?, e.version, e.status))).collect();
            filed.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                filed,
                [
                    ("MDM:DOC3".to_owned(), 7, Some(EntryStatus::Cancelled)),
                    ("MDM:DOC4".to_owned(), 1, Some(EntryStatus::Final)),
                    ("MDM:DOC5".to_owned(), 1, Some(EntryStatus::Final)),
                    ("SIU:APT1".to_owned(), 9, Some(EntryStatus::Cancelled)),
                    ("SIU:APT2".to_owned(), 1, Some(EntryStatus::Booked)),
                ],
                "{engine:?} {}",
                shape.tag()
            );
        }
        assert!(feed.app().held_hl7_messages(&code(), 100).unwrap().is_empty(), "nothing held");
        feed.check_all_stored();
    });
}

// ----- events Kith does not know ----------------------------------------------------------

#[test]
fn events_kith_does_not_know_are_refused_naming_msh9() {
    each_engine(|database| {
        let engine = database.engine;
        let feed = Feed::new(database);
        // The world's patient, known to RXH, with a new given name: applied, it would show.
        let pid = "PID|1||9434765919^^^NHS^NH||Okafor^Changed||19710914|F".to_owned();
        let before = feed.patient(feed.world.patient.id);
        for shape in SHAPES {
            let rows: [(&str, &str, Vec<String>); 5] = [
                ("ADT^A63", "MSH-9: ADT^A63", vec![shape.evn("A63"), pid.clone()]),
                ("ADT^Z99", "MSH-9: ADT^Z99", vec![shape.evn("Z99"), pid.clone()]),
                (
                    "MDM^T12",
                    "MSH-9: MDM^T12",
                    vec![
                        shape.evn("T12"),
                        pid.clone(),
                        "TXA|1|CN^Clinic note|TX|20261120101500||||||||DOC7||||||AU".to_owned(),
                        "OBX|1|TX|||Text".to_owned(),
                    ],
                ),
                (
                    "SIU^S27",
                    "MSH-9: SIU^S27",
                    vec!["SCH|APT7||||||FU^Follow-up||30|MIN|^^^20261201090000".to_owned(), pid.clone()],
                ),
                (
                    "ORM^O01",
                    "MSH-9: message type ORM",
                    vec![pid.clone(), "ORC|NW|P1".to_owned(), "OBR|1|P1||GLU^Glucose".to_owned()],
                ),
            ];
            for (event, text, segments) in rows {
                let context = format!("{engine:?} {} {event}", shape.tag());
                let head = feed.audit_head();
                let control = feed.control();
                let (ingested, ack) = feed.send(&shape.message(event, &control, &segments));
                Answer::Refused(text, "MSH-9").check(&ingested, &ack, &control, &context);
                let stored = feed.stored(&ingested);
                assert_eq!(stored.status, Hl7MessageStatus::Rejected, "{context}");
                assert_eq!(stored.error.as_deref(), Some(ack.text.as_str()), "{context}");
                assert_eq!(feed.audit_head(), head, "{context}: nothing was written but the message");
                assert_eq!(feed.patient(feed.world.patient.id), before, "{context}");
            }
        }
        assert!(feed.entries(feed.world.patient.id).iter().all(|e| e.source_key.is_none()));
        feed.check_all_stored();
    });
}
