//! A generated feed from two organisations, on both engines: random registrations, updates
//! with changed demographics, merges (chains, and messages about merged-away records after
//! the merge), results with reused order numbers, documents, appointments, conflicting
//! identifiers, shared emails, the other organisation's patients, repeats, and patients
//! registering in between.
//!
//! Applied one message at a time (the live feed), every message is checked against the
//! state just before it:
//! - no message is answered `AE` while the database is up;
//! - no record's NHS number, name or birth date changes through a message whose identifiers
//!   do not all agree on that record (and an NHS number only appears where there was none);
//! - no message links a record to its organisation unless its family name and birth date
//!   agree with the record's;
//! - no organisation's message changes another organisation's entries, merges a record any
//!   other organisation holds part of, or changes a registered patient's email or mobile.
//!
//! Then the same sequence through the bulk import and through the parallel import ends in
//! the same final state as one message at a time.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kith_app::*;
use kith_core::model::{Hl7MessageStatus, Integration};
use kith_core::patient::{LocalIdentifier, NhsNumber};
use kith_core::text::{Name, OrganisationCode};
use kith_core::{EntryId, PatientId, PrivacyLabel};
use kith_hl7::ack::AckCode;
use kith_test_support::TestDatabase;
use proptest::prelude::*;
use support::*;

/// People the feed talks about; the last is the world's Okafor (RXH's, registered).
const PEOPLE: usize = 6;
const OKAFOR: usize = PEOPLE - 1;
const ORGS: [&str; 2] = ["RXH", "RXB"];
const FACILITIES: [&str; 2] = ["RXH-PAS", "RXB-PAS"];
const AUTHORITIES: [&str; 2] = ["RXH-MRN", "RXB-MRN"];

fn nhs(person: usize) -> String {
    if person == OKAFOR {
        return "9434765919".to_owned();
    }
    valid_nhs_numbers("42", person + 1).pop().unwrap()
}

fn family(person: usize) -> String {
    if person == OKAFOR { "Okafor".into() } else { format!("Fam{}", (b'a' + person as u8) as char) }
}

fn given(person: usize) -> String {
    if person == OKAFOR { "Ngozi".into() } else { format!("Giv{}", (b'a' + person as u8) as char) }
}

fn birth(person: usize) -> String {
    if person == OKAFOR { "19710914".into() } else { format!("19{}0101", 70 + person) }
}

/// Which of a person's identifiers a message carries.
#[derive(Clone, Copy, Debug)]
enum Via {
    Nhs,
    Local,
    Both,
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        org: usize,
        person: usize,
        via: Via,
        email: Option<u8>,
        team: bool,
    },
    Update {
        org: usize,
        person: usize,
        via: Via,
        change: u8,
        event: u8,
    },
    /// A local identifier of one person with another's NHS number, and the details of one
    /// or the other.
    Conflicting {
        org: usize,
        local_of: usize,
        nhs_of: usize,
        details_of_local: bool,
    },
    Merge {
        org: usize,
        keep: usize,
        away: usize,
        via: Via,
    },
    Result {
        org: usize,
        person: usize,
        order: u8,
        sensitive: bool,
        details: bool,
    },
    Document {
        org: usize,
        person: usize,
        number: u8,
        trigger: u8,
    },
    Appointment {
        org: usize,
        person: usize,
        placer: u8,
        trigger: u8,
    },
    /// The message at this position (modulo) sent again.
    Repeat {
        earlier: usize,
    },
    /// A person registers on their RXH record (between messages, in every mode).
    Account {
        person: usize,
    },
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::Nhs), Just(Via::Local), Just(Via::Both)]
}

fn op() -> impl Strategy<Value = Op> {
    let org = 0..2usize;
    let person = 0..PEOPLE;
    prop_oneof![
        4 => (org.clone(), person.clone(), via(), proptest::option::of(0..3u8), any::<bool>())
            .prop_map(|(org, person, via, email, team)| Op::Register { org, person, via, email, team }),
        3 => (org.clone(), person.clone(), via(), 0..5u8, 0..3u8)
            .prop_map(|(org, person, via, change, event)| Op::Update { org, person, via, change, event }),
        2 => (org.clone(), person.clone(), person.clone(), any::<bool>())
            .prop_map(|(org, local_of, nhs_of, details_of_local)| Op::Conflicting { org, local_of, nhs_of, details_of_local }),
        2 => (org.clone(), person.clone(), person.clone(), via())
            .prop_map(|(org, keep, away, via)| Op::Merge { org, keep, away, via }),
        3 => (org.clone(), person.clone(), 0..3u8, any::<bool>(), any::<bool>())
            .prop_map(|(org, person, order, sensitive, details)| Op::Result { org, person, order, sensitive, details }),
        1 => (org.clone(), person.clone(), 0..2u8, 0..4u8)
            .prop_map(|(org, person, number, trigger)| Op::Document { org, person, number, trigger }),
        1 => (org, person.clone(), 0..2u8, 0..4u8)
            .prop_map(|(org, person, placer, trigger)| Op::Appointment { org, person, placer, trigger }),
        1 => (0..64usize).prop_map(|earlier| Op::Repeat { earlier }),
        1 => person.prop_map(|person| Op::Account { person }),
    ]
}

fn cx(org: usize, person: usize, via: Via) -> String {
    let national = format!("{}^^^NHS^NH", nhs(person));
    let local = format!("L{person}^^^{}^MR", AUTHORITIES[org]);
    match via {
        Via::Nhs => national,
        Via::Local => local,
        Via::Both => format!("{national}~{local}"),
    }
}

fn pid(identifiers: &str, family: &str, given: &str, birth: &str, extra: &str) -> String {
    format!("PID|1||{identifiers}||{family}^{given}||{birth}|F{extra}")
}

fn header(org: usize, kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|PAS|{}|KITH|KITH|20261125101500||{kind}|{control}|P|2.5\r", FACILITIES[org])
}

/// A step of the sequence: a message of one organisation, or a patient registering.
#[derive(Clone, Debug)]
enum Step {
    Message { org: usize, bytes: String },
    Account { person: usize },
}

fn steps(ops: &[Op]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let control = format!("C{n}");
        let message = |org: usize, text: String| Step::Message { org, bytes: text };
        steps.push(match *op {
            Op::Register { org, person, via, email, team } => {
                let email = email.map_or(String::new(), |e| format!("|||||^NET^Internet^shared{e}@example.org"));
                let ztm = if team && org == 0 { "ZTM|gum\r" } else { "" };
                let pid = pid(&cx(org, person, via), &family(person), &given(person), &birth(person), &email);
                message(org, format!("{}EVN|A28\r{pid}\r{ztm}", header(org, "ADT^A28^ADT_A05", &control)))
            }
            Op::Update { org, person, via, change, event } => {
                let (mut f, mut g, mut b) = (family(person), given(person), birth(person));
                match change {
                    0 => f = format!("{f}-Smith"),
                    1 => g = format!("{g}x"),
                    2 => b = format!("19{}0202", 70 + person),
                    3 => (f, b) = ("Stranger".into(), "20000101".into()),
                    _ => {}
                }
                let trigger = ["A31", "A08", "A03"][usize::from(event)];
                let pid = pid(&cx(org, person, via), &f, &g, &b, "|||||07700 900123^PRN^CP");
                message(org, format!("{}EVN|{trigger}\r{pid}\r", header(org, &format!("ADT^{trigger}^ADT_A01"), &control)))
            }
            Op::Conflicting { org, local_of, nhs_of, details_of_local } => {
                let identifiers = format!("{}^^^NHS^NH~L{local_of}^^^{}^MR", nhs(nhs_of), AUTHORITIES[org]);
                let details = if details_of_local { local_of } else { nhs_of };
                let pid = pid(&identifiers, &family(details), &given(details), &birth(details), "");
                message(org, format!("{}EVN|A31\r{pid}\r", header(org, "ADT^A31^ADT_A05", &control)))
            }
            Op::Merge { org, keep, away, via } => message(
                org,
                format!(
                    "{}EVN|A40\r{}\rMRG|{}\r",
                    header(org, "ADT^A40^ADT_A39", &control),
                    pid(&cx(org, keep, via), &family(keep), &given(keep), &birth(keep), ""),
                    cx(org, away, via)
                ),
            ),
            Op::Result { org, person, order, sensitive, details } => {
                let pid = if details {
                    pid(&cx(org, person, Via::Both), &family(person), &given(person), &birth(person), "")
                } else {
                    format!("PID|1||{}", cx(org, person, Via::Nhs))
                };
                let service = if sensitive { "HIV" } else { "GLU" };
                message(
                    org,
                    format!(
                        "{}{pid}\rOBR|1||O{order}|{service}^Test|||2026112{n_mod}\rOBX|1|NM|{service}^Test||{n}|u\r",
                        header(org, "ORU^R01", &control),
                        n_mod = n % 10
                    ),
                )
            }
            Op::Document { org, person, number, trigger } => {
                let trigger = ["T02", "T06", "T10", "T11"][usize::from(trigger)];
                let pid = pid(&cx(org, person, Via::Both), &family(person), &given(person), &birth(person), "");
                message(
                    org,
                    format!(
                        "{}EVN|{trigger}\r{pid}\rTXA|1|CN|TX|20261124||||||||D{number}-{n}|D{number}\rOBX|1|TX|||Text {n}\r",
                        header(org, &format!("MDM^{trigger}^MDM_T02"), &control)
                    ),
                )
            }
            Op::Appointment { org, person, placer, trigger } => {
                let trigger = ["S12", "S13", "S15", "S26"][usize::from(trigger)];
                let pid = pid(&cx(org, person, Via::Both), &family(person), &given(person), &birth(person), "");
                message(
                    org,
                    format!(
                        "{}SCH|P{placer}||||||Review|||30|MIN|^^^2026120{}0900\r{pid}\r",
                        header(org, &format!("SIU^{trigger}^SIU_S12"), &control),
                        1 + n % 8
                    ),
                )
            }
            Op::Repeat { earlier } => match steps.iter().filter(|s| matches!(s, Step::Message { .. })).nth(earlier % n.max(1)) {
                Some(step) => step.clone(),
                None => continue,
            },
            Op::Account { person } => Step::Account { person },
        });
    }
    steps
}

struct Setup {
    world: World,
    integrations: [Integration; 2],
}

fn set_up(database: TestDatabase) -> Setup {
    let world = world(database);
    let app = &world.app;
    let op = operator();
    app.create_organisation(
        &op,
        &NewOrganisation {
            code: org_code(1),
            name: Name::parse("n", "Other Trust").unwrap(),
            break_glass_duration: None,
        },
    )
    .unwrap();
    let mut integrations = Vec::new();
    for org in 0..2 {
        let code = org_code(org);
        app.add_assigning_authority(&op, &code, AUTHORITIES[org]).unwrap();
        app.add_label_rule(&op, &code, "OBR-4", "HIV", PrivacyLabel::SexualHealth).unwrap();
        let name = Name::parse("n", "PAS").unwrap();
        integrations.push(app.create_integration(&op, &code, &name, FACILITIES[org], None).unwrap().integration);
    }
    // Okafor registered, with RXH's hospital number L5.
    let okafor = world.patient.id;
    app.register_patient_account(&op, &code(), okafor, &email("ngozi@example.org"), FAKE_HASH).unwrap();
    let changes = PatientChanges {
        add_local_identifiers: vec![LocalIdentifier::parse(&format!("RXH-MRN:L{OKAFOR}")).unwrap()],
        ..PatientChanges::default()
    };
    app.update_patient(&op, &code(), okafor, &changes).unwrap();
    Setup { world, integrations: integrations.try_into().unwrap() }
}

fn org_code(org: usize) -> OrganisationCode {
    OrganisationCode::parse(ORGS[org]).unwrap()
}

/// A person registering on their RXH record, if they have one that is not registered.
fn register_account(app: &App, person: usize) {
    let Ok(patient) = app.patient_by_nhs_number(&NhsNumber::parse(&nhs(person)).unwrap()) else { return };
    let patient = match patient.merged_into {
        Some(_) => return,
        None => patient,
    };
    if patient.account.is_some() {
        return;
    }
    let _ = app.register_patient_account(
        &operator(),
        &code(),
        patient.id,
        &email(&format!("account{person}@example.org")),
        FAKE_HASH,
    );
}

/// What the checks compare of one record.
#[derive(Clone, Debug, PartialEq)]
struct RecordState {
    nhs: Option<String>,
    family: String,
    given: String,
    birth: String,
    email: Option<String>,
    mobile: Option<String>,
    registered: bool,
    merged_into: Option<PatientId>,
    /// Organisations holding part of it: care links (active or not) and authored entries.
    organisations: BTreeSet<String>,
    /// Organisations whose Patient Record Team it is actively linked to.
    in_organisations: BTreeSet<String>,
    identifiers: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct EntryState {
    author_organisation: String,
    patient: PatientId,
    content: String,
}

#[derive(Clone, Debug, Default)]
struct State {
    records: BTreeMap<PatientId, RecordState>,
    entries: BTreeMap<EntryId, EntryState>,
}

fn state(app: &App) -> State {
    let patients: BTreeSet<PatientId> =
        app.audit_events(None, 100_000).unwrap().into_iter().filter_map(|event| event.record.patient).collect();
    app.store()
        .read(|tx| {
            let mut state = State::default();
            let mut team_org: BTreeMap<kith_core::TeamId, (String, bool)> = BTreeMap::new();
            for (org, name) in ORGS.iter().enumerate() {
                let organisation = tx.organisation_by_code(&org_code(org))?.unwrap();
                for team in tx.teams(organisation.id)? {
                    team_org
                        .insert(team.id, ((*name).to_owned(), team.kind == kith_core::team::TeamKind::PatientRecord));
                }
            }
            for id in &patients {
                let Some(p) = tx.patient(*id)? else { continue };
                let links = tx.care_links(p.id)?;
                let entries = tx.entries(p.id)?;
                let mut organisations: BTreeSet<String> = links.iter().map(|l| team_org[&l.team].0.clone()).collect();
                organisations.extend(entries.iter().map(|e| team_org[&e.authored_by].0.clone()));
                let in_organisations = links
                    .iter()
                    .filter(|l| l.is_active() && team_org[&l.team].1)
                    .map(|l| team_org[&l.team].0.clone())
                    .collect();
                let identifiers = tx.patient_identifiers(p.id)?.iter().map(|i| i.identifier.to_string()).collect();
                for e in &entries {
                    state.entries.insert(
                        e.id,
                        EntryState {
                            author_organisation: team_org[&e.authored_by].0.clone(),
                            patient: e.patient,
                            content: format!(
                                "{:?}|{}|{:?}|{:?}|{}|{}|{:?}",
                                e.source_key, e.version, e.label, e.status, e.title, e.body, e.ends_at
                            ),
                        },
                    );
                }
                let d = &p.demographics;
                state.records.insert(
                    p.id,
                    RecordState {
                        nhs: p.nhs_number.as_ref().map(|n| n.as_str().to_owned()),
                        family: d.family_name.to_string(),
                        given: d.given_name.to_string(),
                        birth: d.birth_date.to_string(),
                        email: d.email.as_ref().map(ToString::to_string),
                        mobile: d.mobile.as_ref().map(|m| m.as_str().to_owned()),
                        registered: p.account.is_some(),
                        merged_into: p.merged_into,
                        organisations,
                        in_organisations,
                        identifiers,
                    },
                );
            }
            Ok::<_, AppError>(state)
        })
        .unwrap()
}

/// The record an identifier leads to in `state`, following merges.
fn resolve(state: &State, found: Option<PatientId>) -> Option<PatientId> {
    let id = found?;
    Some(state.records.get(&id).and_then(|r| r.merged_into).unwrap_or(id))
}

/// What a message says about the patient, read back from its text.
struct Claims {
    nhs: Option<String>,
    locals: Vec<String>,
    family: Option<String>,
    birth: Option<String>,
    merge: bool,
}

fn claims(bytes: &str, org: usize) -> Claims {
    let message = kith_hl7::parse(bytes.as_bytes()).message.unwrap();
    let pid = message.segment("PID").unwrap();
    let mut claims = Claims {
        nhs: None,
        locals: Vec::new(),
        family: Some(pid.component(5, 1).to_owned()).filter(|f| !f.is_empty()),
        birth: Some(pid.value(7).to_owned()).filter(|b| !b.is_empty()),
        merge: message.message_type().1 == "A40",
    };
    for cx in pid.repetitions(3) {
        if cx.component(4) == "NHS" {
            claims.nhs = Some(cx.component(1).to_owned());
        } else if cx.component(4) == AUTHORITIES[org] {
            claims.locals.push(format!("{}:{}", AUTHORITIES[org], cx.component(1)));
        }
    }
    claims
}

fn hl7_date(text: &str) -> String {
    format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..8])
}

/// Every check a message must pass against the state just before it and just after it.
fn check_message(org: usize, bytes: &str, ingested: &Ingested, before: &State, after: &State) {
    assert_ne!(ingested.code, AckCode::Error, "AE while the database is up: {}\n{bytes}", ingested.ack);
    let me = ORGS[org];
    let claims = claims(bytes, org);
    let by_nhs = |state: &State, number: &str| {
        resolve(state, state.records.iter().find(|(_, r)| r.nhs.as_deref() == Some(number)).map(|(id, _)| *id))
    };
    let by_local = |state: &State, identifier: &str| {
        resolve(state, state.records.iter().find(|(_, r)| r.identifiers.contains(identifier)).map(|(id, _)| *id))
    };
    for (id, now) in &after.records {
        let Some(was) = before.records.get(id) else { continue };
        let identity = |r: &RecordState| (r.nhs.clone(), r.family.clone(), r.given.clone(), r.birth.clone());
        if identity(was) != identity(now) && !claims.merge {
            let mut resolved: BTreeSet<PatientId> = BTreeSet::new();
            let nhs_found = claims.nhs.as_deref().and_then(|n| by_nhs(before, n));
            resolved.extend(nhs_found);
            resolved.extend(claims.locals.iter().filter_map(|l| by_local(before, l)));
            assert_eq!(
                resolved,
                BTreeSet::from([*id]),
                "{me}'s message changed a record its identifiers do not all lead to:\n{bytes}\n{was:?}\n{now:?}"
            );
            if was.nhs != now.nhs {
                assert!(was.nhs.is_none() && nhs_found.is_none(), "an NHS number changed:\n{bytes}\n{was:?}\n{now:?}");
            }
        }
        if was.registered && !claims.merge {
            assert_eq!(
                (&was.email, &was.mobile),
                (&now.email, &now.mobile),
                "a registered patient's contact details changed:\n{bytes}"
            );
        }
        if !was.in_organisations.contains(me) && now.in_organisations.contains(me) {
            let agree =
                claims.family.as_deref().is_some_and(|f| kith_core::identity::family_names_agree(f, &was.family))
                    && claims.birth.as_deref().map(hl7_date).as_deref() == Some(was.birth.as_str());
            assert!(agree, "{me} linked a record without agreeing demographics:\n{bytes}\n{was:?}");
        }
        if let (None, Some(into)) = (was.merged_into, now.merged_into) {
            let survivor = &before.records[&into];
            let only_mine = |r: &RecordState| r.organisations == BTreeSet::from([me.to_owned()]);
            assert!(
                claims.merge && only_mine(was) && only_mine(survivor),
                "{me} merged a record not its alone:\n{bytes}"
            );
        }
    }
    for (id, entry) in &before.entries {
        if entry.author_organisation != me {
            let now = after.entries.get(id).unwrap_or_else(|| panic!("{me}'s message removed another's entry"));
            assert_eq!(now.content, entry.content, "{me}'s message changed another organisation's entry:\n{bytes}");
        }
    }
}

/// The final state without Kith's ids: each record named by its identifiers.
fn final_state(app: &App) -> Vec<String> {
    let state = state(app);
    let name = |id: &PatientId| -> String {
        let r = &state.records[id];
        format!("{:?}{:?}{}{}{}", r.nhs, r.identifiers, r.family, r.given, r.birth)
    };
    let mut rows: Vec<String> = state
        .records
        .iter()
        .map(|(id, r)| {
            format!(
                "record {} merged_into={:?} email={:?} mobile={:?} registered={} orgs={:?} in={:?}",
                name(id),
                r.merged_into.as_ref().map(name),
                r.email,
                r.mobile,
                r.registered,
                r.organisations,
                r.in_organisations
            )
        })
        .collect();
    // A merge keeps a clashing source key with the merged record's id appended.
    let scrub = |text: &str| {
        let mut text = text.to_owned();
        for id in state.records.keys() {
            text = text.replace(&id.to_string(), &name(id));
        }
        text
    };
    rows.extend(
        state
            .entries
            .values()
            .map(|e| format!("entry {} {} {}", name(&e.patient), e.author_organisation, scrub(&e.content))),
    );
    for (org, code) in ORGS.iter().enumerate() {
        for m in app.hl7_messages(&org_code(org), None, 10_000).unwrap() {
            // A conflict's text lists its records by id, whose order follows creation order
            // (which bulk writes change): the sorted records stand for it.
            let error =
                if m.conflict.is_some() { String::new() } else { scrub(m.error.as_deref().unwrap_or_default()) };
            let mut records: Vec<String> = m.conflict_records.iter().map(|id| scrub(&id.to_string())).collect();
            records.sort();
            rows.push(format!("message {code} {:?} {:?} {:?} {error} {records:?}", m.control_id, m.status, m.conflict));
        }
    }
    rows.sort();
    rows
}

enum Mode {
    OneAtATime,
    Import { workers: usize, batch: usize },
}

fn run(database: TestDatabase, steps: &[Step], mode: &Mode) -> Vec<String> {
    let setup = set_up(database);
    let app = &setup.world.app;
    match mode {
        Mode::OneAtATime => {
            let mut before = state(app);
            for step in steps {
                match step {
                    Step::Message { org, bytes } => {
                        let ingested =
                            app.ingest_hl7(Hl7Sender::Integration(&setup.integrations[*org]), bytes.as_bytes());
                        let after = state(app);
                        check_message(*org, bytes, &ingested, &before, &after);
                        before = after;
                    }
                    Step::Account { person } => {
                        register_account(app, *person);
                        before = state(app);
                    }
                }
            }
        }
        Mode::Import { workers, batch } => {
            let mut run: Vec<&[u8]> = Vec::new();
            let mut run_org = 0;
            let flush = |run: &mut Vec<&[u8]>, org: usize| {
                if !run.is_empty() {
                    let outcomes = app.import_hl7(&org_code(org), &operator(), run, *workers, *batch).unwrap();
                    assert!(outcomes.iter().all(|o| o.code != AckCode::Error), "AE in an import: {outcomes:?}");
                    run.clear();
                }
            };
            for step in steps {
                match step {
                    Step::Message { org, bytes } => {
                        if *org != run_org {
                            flush(&mut run, run_org);
                            run_org = *org;
                        }
                        run.push(bytes.as_bytes());
                    }
                    Step::Account { person } => {
                        flush(&mut run, run_org);
                        register_account(app, *person);
                    }
                }
            }
            flush(&mut run, run_org);
        }
    }
    final_state(app)
}

fn the_feed_holds(ops: &[Op], databases: impl Fn() -> Option<TestDatabase>) {
    let steps = steps(ops);
    let Some(database) = databases() else { return };
    let one_at_a_time = run(database, &steps, &Mode::OneAtATime);
    let same = |mode: &str, other: &[String]| {
        let only_one: Vec<&String> = one_at_a_time.iter().filter(|row| !other.contains(row)).collect();
        let only_other: Vec<&String> = other.iter().filter(|row| !one_at_a_time.contains(row)).collect();
        assert!(
            only_one.is_empty() && only_other.is_empty(),
            "the {mode} import does not end where one message at a time does:\none at a time only: {only_one:#?}\n{mode} only: {only_other:#?}\nsteps: {steps:#?}"
        );
    };
    same("bulk", &run(databases().unwrap(), &steps, &Mode::Import { workers: 1, batch: 500 }));
    same("parallel", &run(databases().unwrap(), &steps, &Mode::Import { workers: 4, batch: 3 }));
    // The held messages, if any, are where the data-quality staff look.
    let _ = Hl7MessageStatus::Held;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn a_generated_two_organisation_feed_on_sqlite(ops in proptest::collection::vec(op(), 10..45)) {
        the_feed_holds(&ops, || Some(TestDatabase::sqlite()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn a_generated_two_organisation_feed_on_postgres(ops in proptest::collection::vec(op(), 10..45)) {
        the_feed_holds(&ops, TestDatabase::postgres);
    }
}
