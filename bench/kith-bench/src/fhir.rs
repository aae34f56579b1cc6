//! The FHIR read benchmark's fixture and helpers (bench/fhir/run):
//!
//! - `kith-bench fhir-db` fills a fresh database with one organisation, a live speciality
//!   team, its professionals and their API tokens, and many patients with their entries;
//! - `kith-bench fhir-check` asks a running `kith serve` for a few patients' observations
//!   and checks the answers against what `fhir-db` wrote;
//! - `kith-bench pg-scratch` creates and drops the PostgreSQL database a run uses.
//!
//! The set-up (organisation, team, members, tokens) goes through the use cases, audited as
//! usual. The patients and their entries are a fixture, not use cases: they are written
//! straight through the store's transaction layer (`Tx::put_patient`, `Tx::put_care_link`,
//! `Tx::insert_entry`, …), a thousand patients per transaction, without the audit events
//! that creating each of them through `App::create_patient` and `App::add_entry` would add —
//! the benchmark is about reading, and one use case per row would take hours.

use std::fmt::Display;
use std::io::{BufRead, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kith_app::{App, Clock, EntrySelection, NewMember, NewOrganisation, Operator, SystemClock};
use kith_core::audit::Channel;
use kith_core::consent::LinkBasis;
use kith_core::model::{CareLink, Entry, EntryStatus, Observation, Patient};
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, RegistrationStatus, Sex};
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias, Title};
use kith_core::{AccountId, Date, EntryId, LabelSet, PatientId, PrivacyLabel, TeamId, Timestamp};
use kith_store::{DatabaseUrl, Store, StoreError};

use crate::Failure;
use crate::access::{SplitMix, group};

pub const DB_USAGE: &str = "\
usage: kith-bench fhir-db --database URL --tokens-out FILE --patients-out FILE [options]

  --database URL              a fresh database: sqlite:///path/kith.db or postgres://…
                              (migrated here; it must hold no organisation yet)
  --tokens-out FILE           writes the professionals' API tokens, one per line
  --patients-out FILE         writes one line per patient: its id, how many Observation
                              entries a professional of the team sees, and 1 when some
                              are hidden from them (else 0)
  --patients N                patients (default 100000)
  --entries-per-patient N     entries in each record (default 20)
  --observations-per-result N OBX observations stored with each result (default 2)
  --professionals N           professionals of the team, each with a token (default 20)
  --patients-per-transaction N  (default 1000)
  --writers N                 threads building and writing transactions (default 2 on
                              SQLite, whose writes are serialised anyway; 4 on PostgreSQL)

One organisation (BENCH) with its Patient Record Team and one live speciality team (cmht,
default labels general and mental_health, two coordinators, the professionals). Every
patient is in the organisation and linked to the team with its default labels, so the
professionals read on the basis of consent. Entries are authored by the Patient Record
Team: about 40% results, 30% measurements (the kinds a FHIR Observation search returns),
the rest documents, appointments, notes and care plans; labelled general (70%),
mental_health (15%), sexual_health (8%) or social_care (7%), so about 12 of a patient's 20
entries are Observations the team sees and most records also hold some it does not.

The organisation, team, members and tokens are made through the use cases (audited); the
patients and entries are a fixture written through the store's transaction layer in large
transactions, without an audit event per row. Counts are checked at the end, and three
records are read back through App::read_entries_as (three record.read audit events).";

pub const CHECK_USAGE: &str = "\
usage: kith-bench fhir-check --addr HOST:PORT --patients FILE --tokens FILE [--samples N]

Asks `kith serve` at HOST:PORT for GET /fhir/Observation?patient=ID for N patients spread
over the file written by `kith-bench fhir-db --patients-out` (default 20), each with one of
the tokens in turn, and checks every answer: status 200, a searchset Bundle whose total and
Observation entries are what fhir-db wrote, and the hidden flag exactly when some entries
are hidden. Each request is one audited read.";

pub const SCRATCH_USAGE: &str = "\
usage: kith-bench pg-scratch create [--prefix NAME]
       kith-bench pg-scratch drop URL

create: makes a new database PREFIX_<uuid> (default prefix kith_bench_fhir) on the server
of KITH_BENCH_POSTGRES_URL and prints its URL.
drop: drops the database of URL (which must be on that server and named kith_bench_…).

environment:
  KITH_BENCH_POSTGRES_URL  a PostgreSQL server where the benchmark may CREATE DATABASE,
                           e.g. postgres://postgres@127.0.0.1:5432/postgres";

/// What a FHIR `Observation` search selects (kith-web's `OBSERVATION` entry type).
const OBSERVATION_KINDS: [EntryKind; 2] = [EntryKind::Result, EntryKind::Measurement];
/// The team's default labels: what its professionals see through consent.
const TEAM_LABELS: [PrivacyLabel; 2] = [PrivacyLabel::General, PrivacyLabel::MentalHealth];
const ORGANISATION: &str = "BENCH";
const TEAM: &str = "cmht";
const AUTHORITY: &str = "BENCH-MRN";
/// The FHIR search's page size when `_count` is not given (kith-web's `DEFAULT_COUNT`).
const DEFAULT_PAGE: usize = 50;
/// kith-web's `HIDDEN_EXTENSION`: on `Bundle.meta` when some selected entries are hidden.
const HIDDEN_EXTENSION: &str = "https://kith.dev/fhir/StructureDefinition/some-entries-hidden";

struct DbOptions {
    database: DatabaseUrl,
    tokens_out: PathBuf,
    patients_out: PathBuf,
    patients: usize,
    entries_per_patient: usize,
    observations_per_result: usize,
    professionals: usize,
    chunk: usize,
    writers: Option<usize>,
}

/// The value after a flag.
fn value<'a>(flag: &str, args: &mut impl Iterator<Item = &'a String>) -> Result<&'a String, Failure> {
    args.next().ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
}

fn whole(flag: &str, value: &str, allow_zero: bool) -> Result<usize, Failure> {
    value.parse::<usize>().ok().filter(|n| allow_zero || *n > 0).ok_or_else(|| {
        Failure::Usage(format!(
            "{flag} needs a {} whole number, not {value:?}",
            if allow_zero { "non-negative" } else { "positive" }
        ))
    })
}

impl DbOptions {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut database = None;
        let mut tokens_out = None;
        let mut patients_out = None;
        let mut options = DbOptions {
            database: DatabaseUrl::Sqlite(PathBuf::new()),
            tokens_out: PathBuf::new(),
            patients_out: PathBuf::new(),
            patients: 100_000,
            entries_per_patient: 20,
            observations_per_result: 2,
            professionals: 20,
            chunk: 1000,
            writers: None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{DB_USAGE}");
                std::process::exit(0);
            }
            let value = value(flag, &mut args)?;
            match flag.as_str() {
                "--database" => database = Some(DatabaseUrl::parse(value).map_err(Failure::Usage)?),
                "--tokens-out" => tokens_out = Some(PathBuf::from(value)),
                "--patients-out" => patients_out = Some(PathBuf::from(value)),
                "--patients" => options.patients = whole(flag, value, false)?,
                "--entries-per-patient" => options.entries_per_patient = whole(flag, value, false)?,
                "--observations-per-result" => options.observations_per_result = whole(flag, value, true)?,
                "--professionals" => options.professionals = whole(flag, value, false)?,
                "--patients-per-transaction" => options.chunk = whole(flag, value, false)?,
                "--writers" => options.writers = Some(whole(flag, value, false)?),
                other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
            }
        }
        options.database = database.ok_or_else(|| Failure::Usage("--database is required".to_owned()))?;
        options.tokens_out = tokens_out.ok_or_else(|| Failure::Usage("--tokens-out is required".to_owned()))?;
        options.patients_out = patients_out.ok_or_else(|| Failure::Usage("--patients-out is required".to_owned()))?;
        if options.patients > 9_000_000 {
            return Err(Failure::Usage("--patients: at most 9,000,000 (NHS numbers are numbered)".to_owned()));
        }
        Ok(options)
    }
}

fn text<T, E: Display>(result: Result<T, E>) -> Result<T, Failure> {
    result.map_err(|error| Failure::Run(format!("invalid fixture data: {error}")))
}

/// What the set-up made, for the bulk load.
struct Fixture {
    organisation: kith_core::OrganisationId,
    prt: TeamId,
    team: TeamId,
    team_labels: LabelSet,
    now: Timestamp,
    observations_per_result: usize,
    entries_per_patient: usize,
    titles: Titles,
}

/// What a professional of the team should see of one patient's observations.
#[derive(Clone, Copy)]
struct Expected {
    patient: PatientId,
    visible: usize,
    hidden: bool,
}

/// One transaction's worth of rows.
#[derive(Default)]
struct Chunk {
    patients: Vec<Patient>,
    identifiers: Vec<(PatientId, kith_core::OrganisationId, LocalIdentifier, Timestamp)>,
    links: Vec<CareLink>,
    entries: Vec<Entry>,
    /// Index into `entries` and the observations of that result.
    observations: Vec<(usize, Vec<Observation>)>,
    expected: Vec<Expected>,
}

/// What one transaction wrote: its place among the chunks, what a professional should see
/// of each of its patients, and its counts.
struct Written {
    index: usize,
    expected: Vec<Expected>,
    totals: Totals,
}

#[derive(Default)]
struct Totals {
    patients: usize,
    entries: usize,
    observations: usize,
    visible: usize,
    with_hidden: usize,
}

pub fn generate(args: &[String]) -> Result<(), Failure> {
    let options = DbOptions::parse(args)?;
    let started = Instant::now();
    println!("kith-bench fhir-db — started {} on {}", SystemClock.now(), options.database);
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; loading will be slow (build with --release)");
    }
    let store = try_to!("open and migrate the database", Store::open_and_migrate(&options.database));
    let dialect = store.dialect();
    let app = App::new(store.clone(), Arc::new(SystemClock));
    let existing = try_to!("look at the database", store.read(|tx| tx.organisations()));
    if !existing.is_empty() {
        return Err(Failure::Run(format!(
            "{} already holds {} organisation(s): fhir-db needs a fresh database",
            options.database,
            existing.len()
        )));
    }

    let (fixture, professionals) = set_up(&app, &options)?;
    let set_up_seconds = started.elapsed().as_secs_f64();
    println!(
        "  set-up through the use cases: organisation {ORGANISATION}, team {TEAM} (live), 2 coordinators, {} professionals with API tokens ({set_up_seconds:.1} s)",
        professionals.len()
    );

    let writers = options.writers.unwrap_or(match dialect {
        kith_store::Dialect::Sqlite => 2,
        kith_store::Dialect::Postgres => 4,
    });
    let chunks = options.patients.div_ceil(options.chunk);
    println!(
        "  loading {} patients with {} entries each: {chunks} transactions of up to {} patients, {writers} writer thread(s)",
        group(options.patients as u64),
        options.entries_per_patient,
        group(options.chunk as u64)
    );
    let load_started = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<Vec<Written>, Failure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= chunks {
                            return Ok(mine);
                        }
                        let first = index * options.chunk;
                        let last = (first + options.chunk).min(options.patients);
                        let chunk = build_chunk(&fixture, first..last)?;
                        try_to!("write a transaction of patients", write_chunk(&store, &chunk));
                        let totals = Totals {
                            patients: chunk.patients.len(),
                            entries: chunk.entries.len(),
                            observations: chunk.observations.iter().map(|(_, o)| o.len()).sum(),
                            visible: chunk.expected.iter().map(|e| e.visible).sum(),
                            with_hidden: chunk.expected.iter().filter(|e| e.hidden).count(),
                        };
                        mine.push(Written { index, expected: chunk.expected, totals });
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if finished.is_multiple_of((chunks / 10).max(1)) || finished == chunks {
                            let patients = (finished * options.chunk).min(options.patients);
                            let seconds = load_started.elapsed().as_secs_f64();
                            println!(
                                "    {:>11} patients ({:>3}%) after {seconds:>6.1} s",
                                group(patients as u64),
                                100 * finished / chunks
                            );
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| Err(Failure::Run("a writer panicked".into()))))
            .collect()
    });
    let mut written = Vec::new();
    for result in results {
        written.extend(result?);
    }
    written.sort_by_key(|written| written.index);
    let load_seconds = load_started.elapsed().as_secs_f64();
    let mut totals = Totals::default();
    let mut expected = Vec::with_capacity(options.patients);
    for Written { expected: chunk_expected, totals: chunk_totals, .. } in written {
        totals.patients += chunk_totals.patients;
        totals.entries += chunk_totals.entries;
        totals.observations += chunk_totals.observations;
        totals.visible += chunk_totals.visible;
        totals.with_hidden += chunk_totals.with_hidden;
        expected.extend(chunk_expected);
    }
    println!(
        "  loaded {} patients, {} entries, {} observations in {load_seconds:.1} s ({} entries/s)",
        group(totals.patients as u64),
        group(totals.entries as u64),
        group(totals.observations as u64),
        group((totals.entries as f64 / load_seconds) as u64)
    );

    write_patients(&options.patients_out, &expected)?;
    write_tokens(&options.tokens_out, &professionals)?;

    let settle_started = Instant::now();
    settle(&options.database)?;
    println!(
        "  {} ({:.1} s)",
        match &options.database {
            DatabaseUrl::Sqlite(_) => "WAL checkpointed",
            DatabaseUrl::Postgres(_) =>
                "VACUUM ANALYZE done (what autovacuum would do, done now so that it does not run during the measurement)",
        },
        settle_started.elapsed().as_secs_f64()
    );

    let check_started = Instant::now();
    check_counts(&options, &totals, professionals.len())?;
    check_reads(&app, &professionals, &expected)?;
    println!(
        "  counts and three reads through App::read_entries_as checked ({:.1} s)",
        check_started.elapsed().as_secs_f64()
    );

    let per_patient = totals.visible as f64 / totals.patients.max(1) as f64;
    println!(
        "  a professional sees {per_patient:.1} Observation entries per patient on average; {} of {} records also hold some hidden from the team",
        group(totals.with_hidden as u64),
        group(totals.patients as u64)
    );
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "RESULT patients={} entries={} observations={} professionals={} visible_per_patient={per_patient:.2} with_hidden={} load_s={load_seconds:.1} total_s={seconds:.1}",
        totals.patients,
        totals.entries,
        totals.observations,
        professionals.len(),
        totals.with_hidden
    );
    Ok(())
}

/// The organisation, team, members and tokens, through the use cases.
fn set_up(app: &App, options: &DbOptions) -> Result<(Fixture, Vec<(AccountId, String)>), Failure> {
    let operator = Operator { name: "kith-bench fhir-db".into() };
    let code = text(OrganisationCode::parse(ORGANISATION))?;
    let alias = text(TeamAlias::parse(TEAM))?;
    let (organisation, prt) = try_to!(
        "create the organisation",
        app.create_organisation(
            &operator,
            &NewOrganisation {
                code: code.clone(),
                name: text(Name::parse("organisation name", "Benchmark Hospital"))?,
                break_glass_duration: None,
            },
        )
    );
    try_to!("add the assigning authority", app.add_assigning_authority(&operator, &code, AUTHORITY));
    let team = try_to!(
        "create the team",
        app.create_team(
            &operator,
            &code,
            &text(Name::parse("team name", "Community Mental Health Team"))?,
            &alias,
            LabelSet::from_labels(TEAM_LABELS),
        )
    );
    // Argon2id is deliberately slow: hash once, give every account the same PHC string.
    let password_hash = try_to!(
        "hash the password",
        kith_app::password::hash_password(&Secret::new("benchmark password, not a secret".into()))
    );
    let member = |email: &str, name: &str, role: MembershipRole| -> Result<AccountId, Failure> {
        let added = try_to!(
            "add a member",
            app.add_member(
                &operator,
                &NewMember {
                    organisation: code.clone(),
                    team: alias.clone(),
                    email: text(EmailAddress::parse(email))?,
                    name: text(Name::parse("name", name))?,
                    role,
                    password_hash: Some(password_hash.clone()),
                },
            )
        );
        Ok(added.account.id)
    };
    member("coordinator.one@bench.example", "Coordinator One", MembershipRole::Coordinator)?;
    member("coordinator.two@bench.example", "Coordinator Two", MembershipRole::Coordinator)?;
    try_to!("take the team live", app.go_live(&operator, &code, &alias));
    let token_name = text(Name::parse("token name", "fhir-bench"))?;
    let mut professionals = Vec::with_capacity(options.professionals);
    for index in 1..=options.professionals {
        let email = format!("professional.{index}@bench.example");
        let account = member(&email, &format!("Professional {index}"), MembershipRole::Professional)?;
        let token = try_to!(
            "create an API token",
            app.create_api_token(&operator, &text(EmailAddress::parse(&email))?, &token_name, None)
        );
        professionals.push((account, token.secret.expose().to_owned()));
    }
    let fixture = Fixture {
        organisation: organisation.id,
        prt: prt.id,
        team: team.id,
        team_labels: team.default_labels,
        now: app.now(),
        observations_per_result: options.observations_per_result,
        entries_per_patient: options.entries_per_patient,
        titles: Titles::new()?,
    };
    Ok((fixture, professionals))
}

const KINDS: &[(EntryKind, u64)] = &[
    (EntryKind::Result, 40),
    (EntryKind::Measurement, 30),
    (EntryKind::Document, 10),
    (EntryKind::Appointment, 8),
    (EntryKind::Note, 6),
    (EntryKind::CarePlan, 6),
];
const LABELS: &[(PrivacyLabel, u64)] = &[
    (PrivacyLabel::General, 70),
    (PrivacyLabel::MentalHealth, 15),
    (PrivacyLabel::SexualHealth, 8),
    (PrivacyLabel::SocialCare, 7),
];

fn weighted<T: Copy>(rng: &mut SplitMix, choices: &[(T, u64)]) -> T {
    let total: u64 = choices.iter().map(|(_, weight)| weight).sum();
    let mut pick = rng.below(total);
    for &(choice, weight) in choices {
        if pick < weight {
            return choice;
        }
        pick -= weight;
    }
    choices[choices.len() - 1].0
}

/// A result panel: its title and analytes (code, name, units, low, high).
type Panel = (&'static str, &'static [(&'static str, &'static str, &'static str, f64, f64)]);
const PANELS: &[Panel] = &[
    (
        "Full blood count",
        &[("718-7", "Haemoglobin", "g/L", 120.0, 160.0), ("6690-2", "White cell count", "10*9/L", 4.0, 11.0)],
    ),
    (
        "Urea and electrolytes",
        &[("2951-2", "Sodium", "mmol/L", 133.0, 146.0), ("2823-3", "Potassium", "mmol/L", 3.5, 5.3)],
    ),
    ("Liver function tests", &[("1742-6", "ALT", "U/L", 7.0, 40.0), ("1975-2", "Bilirubin", "umol/L", 0.0, 21.0)]),
    (
        "Lipid profile",
        &[("2093-3", "Cholesterol", "mmol/L", 0.0, 5.0), ("2571-8", "Triglycerides", "mmol/L", 0.0, 1.7)],
    ),
    ("Thyroid function", &[("3016-3", "TSH", "mU/L", 0.27, 4.2), ("3024-7", "Free T4", "pmol/L", 12.0, 22.0)]),
    ("Lithium level", &[("14334-7", "Lithium", "mmol/L", 0.4, 1.0), ("2160-0", "Creatinine", "umol/L", 45.0, 90.0)]),
];
const MEASUREMENTS: &[(&str, &str)] = &[
    ("Blood pressure", "Blood pressure 128/82 mmHg sitting, pulse 68 regular."),
    ("Weight", "Weight 72.4 kg, BMI 24.1; stable since last review."),
    ("PHQ-9 score", "PHQ-9 score 9 (mild); no thoughts of self-harm reported."),
    ("GAD-7 score", "GAD-7 score 6 (mild anxiety)."),
    ("Heart rate", "Pulse 72 regular at rest, SpO2 97% on air."),
];
const DOCUMENTS: &[&str] = &["Clinic letter", "Discharge summary", "Risk assessment", "Consultation note"];
const NOTES: &[&str] = &["Telephone contact", "Home visit", "Team review"];
const CARE_PLANS: &[&str] = &["Care plan", "Safety plan"];
const APPOINTMENTS: &[&str] = &["Follow-up", "Medication review", "Results discussion"];
const DOCUMENT_BODY: &str = "Seen today in clinic with her daughter. Mood improved since the last review; sleeping \
     better and eating well. Plan: continue sertraline 100 mg and review in six weeks. Crisis numbers given: 0800 123 \
     4567 and NHS 111 option 2. Letter copied to the GP and the community team. No known drug allergies.";

/// Titles and names parsed once.
struct Titles {
    panels: Vec<Title>,
    measurements: Vec<Title>,
    documents: Vec<Title>,
    notes: Vec<Title>,
    care_plans: Vec<Title>,
    appointments: Vec<Title>,
    family: Vec<Name>,
    given: Vec<Name>,
}

impl Titles {
    fn new() -> Result<Self, Failure> {
        let titles = |list: &[&str]| list.iter().map(|t| text(Title::parse(t))).collect::<Result<Vec<_>, _>>();
        let names = |field: &'static str, list: &[&str]| {
            list.iter().map(|n| text(Name::parse(field, n))).collect::<Result<Vec<_>, _>>()
        };
        Ok(Titles {
            panels: titles(&PANELS.iter().map(|(title, _)| *title).collect::<Vec<_>>())?,
            measurements: titles(&MEASUREMENTS.iter().map(|(title, _)| *title).collect::<Vec<_>>())?,
            documents: titles(DOCUMENTS)?,
            notes: titles(NOTES)?,
            care_plans: titles(CARE_PLANS)?,
            appointments: titles(APPOINTMENTS)?,
            family: names("family name", crate::hl7::FAMILY_NAMES)?,
            given: names("given name", crate::hl7::GIVEN_NAMES)?,
        })
    }
}

fn pick<T: Clone>(rng: &mut SplitMix, list: &[T]) -> T {
    list[rng.below(list.len() as u64) as usize].clone()
}

/// A valid, unique NHS number for patient `index`: nine digits from 900000000 + 10 × index
/// (the first of ten candidates whose check digit exists) and the check digit.
fn nhs_number(index: usize) -> Result<NhsNumber, Failure> {
    for candidate in 0..10 {
        let first_nine = 900_000_000 + 10 * index as u64 + candidate;
        let digits: Vec<u32> = first_nine.to_string().chars().filter_map(|c| c.to_digit(10)).collect();
        if let Some(check) = NhsNumber::check_digit(&digits) {
            return text(NhsNumber::parse(&format!("{first_nine}{check}")));
        }
    }
    Err(Failure::Run(format!("no NHS number for patient {index}")))
}

const DAY: Duration = Duration::from_secs(86_400);

/// The rows of patients `range`, deterministic in each patient's index (the ids are new
/// UUIDv7s, as Kith makes them).
fn build_chunk(fixture: &Fixture, range: std::ops::Range<usize>) -> Result<Chunk, Failure> {
    let mut chunk = Chunk::default();
    let titles = &fixture.titles;
    for index in range {
        let mut rng = SplitMix(0xF41E_0000_0000_0000 ^ (index as u64).wrapping_mul(0x0000_0100_0000_01B3));
        let id = PatientId::from_uuid(uuid::Uuid::now_v7());
        let now = fixture.now;
        let birth_date =
            text(Date::new(1930 + rng.below(90) as i32, 1 + rng.below(12) as u8, 1 + rng.below(28) as u8))?;
        chunk.patients.push(Patient {
            id,
            nhs_number: Some(nhs_number(index)?),
            demographics: Demographics {
                family_name: pick(&mut rng, &titles.family),
                given_name: pick(&mut rng, &titles.given),
                birth_date,
                sex: [Sex::Female, Sex::Male, Sex::Female, Sex::Male, Sex::Other, Sex::Unknown][rng.below(6) as usize],
                email: None,
                mobile: None,
                address: None,
            },
            registration: RegistrationStatus::Unregistered,
            account: None,
            sharing_disabled: false,
            merged_into: None,
            created_at: now,
            updated_at: now,
        });
        chunk.identifiers.push((
            id,
            fixture.organisation,
            text(LocalIdentifier::parse(&format!("{AUTHORITY}:M{index:07}")))?,
            now,
        ));
        for (team, labels, basis) in [
            (fixture.prt, LabelSet::EMPTY, LinkBasis::OrganisationRecord),
            (fixture.team, fixture.team_labels, LinkBasis::AddedByOperator),
        ] {
            chunk.links.push(CareLink {
                patient: id,
                team,
                labels,
                basis,
                changed_by: None,
                linked_at: now,
                updated_at: now,
                discharged_at: None,
            });
        }
        let mut visible = 0;
        let mut hidden = false;
        for number in 0..fixture.entries_per_patient {
            let kind = weighted(&mut rng, KINDS);
            let label = weighted(&mut rng, LABELS);
            // About one entry every three days, newest first, going back from now.
            let age = DAY * (3 * number as u32) + Duration::from_secs(rng.below(2 * 86_400));
            let effective_at = now.minus(age);
            let recorded_at =
                Timestamp::from_micros(effective_at.plus(Duration::from_secs(1800)).as_micros().min(now.as_micros()));
            let (title, body, status) = match kind {
                EntryKind::Result => {
                    let panel = rng.below(PANELS.len() as u64) as usize;
                    (
                        titles.panels[panel].clone(),
                        format!("{}: see the values. Reviewed, no action needed.", PANELS[panel].0),
                        Some(EntryStatus::Final),
                    )
                }
                EntryKind::Measurement => {
                    let which = rng.below(MEASUREMENTS.len() as u64) as usize;
                    (titles.measurements[which].clone(), MEASUREMENTS[which].1.to_owned(), None)
                }
                EntryKind::Document => {
                    (pick(&mut rng, &titles.documents), DOCUMENT_BODY.to_owned(), Some(EntryStatus::Final))
                }
                EntryKind::Appointment => (
                    pick(&mut rng, &titles.appointments),
                    "Outpatient clinic, room 4.".to_owned(),
                    Some(EntryStatus::Booked),
                ),
                EntryKind::CarePlan => (pick(&mut rng, &titles.care_plans), DOCUMENT_BODY.to_owned(), None),
                _ => (pick(&mut rng, &titles.notes), "Spoke with the patient; no concerns raised.".to_owned(), None),
            };
            if OBSERVATION_KINDS.contains(&kind) {
                if fixture.team_labels.contains(label) {
                    visible += 1;
                } else {
                    hidden = true;
                }
            }
            let entry = Entry {
                id: EntryId::from_uuid(uuid::Uuid::now_v7()),
                patient: id,
                kind,
                label: Some(label),
                authored_by: fixture.prt,
                author_account: None,
                effective_at,
                recorded_at,
                title,
                body,
                version: 1,
                status,
                source_key: None,
                source_message: None,
                // Appointments last 20 minutes.
                ends_at: (kind == EntryKind::Appointment).then(|| effective_at.plus(Duration::from_secs(20 * 60))),
            };
            if kind == EntryKind::Result && fixture.observations_per_result > 0 {
                let panel = PANELS.iter().position(|(title, _)| *title == entry.title.as_str()).unwrap_or(0);
                let observations = (0..fixture.observations_per_result)
                    .map(|n| {
                        let (code, name, units, low, high) = PANELS[panel].1[n % PANELS[panel].1.len()];
                        // Mostly within range, one in eight above it.
                        let span = high - low;
                        let value =
                            low + span * (rng.below(1000) as f64 / 1000.0) * if rng.below(8) == 0 { 1.3 } else { 1.0 };
                        Observation {
                            code: code.to_owned(),
                            code_system: "LN".to_owned(),
                            name: name.to_owned(),
                            value_type: "NM".to_owned(),
                            value: format!("{value:.1}"),
                            units: units.to_owned(),
                            reference_range: format!("{low}-{high}"),
                            flags: if value > high { "H".to_owned() } else { String::new() },
                            status: "F".to_owned(),
                            observed_at: Some(effective_at),
                        }
                    })
                    .collect();
                chunk.observations.push((chunk.entries.len(), observations));
            }
            chunk.entries.push(entry);
        }
        chunk.expected.push(Expected { patient: id, visible, hidden });
    }
    Ok(chunk)
}

/// One transaction: the patients, their identifiers and care links, their entries and the
/// results' observations.
fn write_chunk(store: &Store, chunk: &Chunk) -> Result<(), StoreError> {
    store.write(|tx| {
        for patient in &chunk.patients {
            tx.put_patient(patient)?;
        }
        for (patient, organisation, identifier, at) in &chunk.identifiers {
            tx.insert_patient_identifier(*patient, *organisation, identifier, *at)?;
        }
        for link in &chunk.links {
            tx.put_care_link(link)?;
        }
        for entry in &chunk.entries {
            tx.insert_entry(entry)?;
        }
        for (index, observations) in &chunk.observations {
            let entry = &chunk.entries[*index];
            tx.insert_observations(entry.patient, entry.id, entry.version, observations)?;
        }
        Ok::<_, StoreError>(())
    })
}

fn create_file(path: &Path) -> Result<BufWriter<std::fs::File>, Failure> {
    let file = std::fs::File::create(path).map_err(|error| Failure::Run(format!("{}: {error}", path.display())))?;
    Ok(BufWriter::new(file))
}

fn write_patients(path: &Path, expected: &[Expected]) -> Result<(), Failure> {
    let mut out = create_file(path)?;
    for patient in expected {
        try_to!(path.display(), writeln!(out, "{} {} {}", patient.patient, patient.visible, u8::from(patient.hidden)));
    }
    try_to!(path.display(), out.flush());
    Ok(())
}

fn write_tokens(path: &Path, professionals: &[(AccountId, String)]) -> Result<(), Failure> {
    let mut out = create_file(path)?;
    for (_, token) in professionals {
        try_to!(path.display(), writeln!(out, "{token}"));
    }
    try_to!(path.display(), out.flush());
    Ok(())
}

/// A connection that bypasses Kith, for counting rows and for maintenance.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl Raw {
    fn open(url: &DatabaseUrl) -> Result<Self, Failure> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => {
                Raw::Sqlite(try_to!("open the SQLite file", kith_store::sqlite::raw_connection(path)))
            }
            DatabaseUrl::Postgres(url) => Raw::Postgres(Box::new(try_to!(
                "connect to PostgreSQL",
                postgres::Client::connect(url, postgres::NoTls)
            ))),
        })
    }

    fn count(&mut self, table: &str) -> Result<i64, Failure> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Raw::Sqlite(connection) => try_to!(sql, connection.query_row(&sql, [], |row| row.get::<_, i64>(0))),
            Raw::Postgres(client) => try_to!(sql, client.query_one(&sql, &[])).get::<_, i64>(0),
        })
    }
}

/// After the load: SQLite's WAL is checkpointed into the database file and truncated;
/// PostgreSQL's tables are vacuumed and analysed.
fn settle(url: &DatabaseUrl) -> Result<(), Failure> {
    match Raw::open(url)? {
        Raw::Sqlite(connection) => {
            try_to!(
                "checkpoint the WAL",
                connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0))
            );
        }
        Raw::Postgres(mut client) => try_to!("VACUUM ANALYZE", client.batch_execute("VACUUM ANALYZE")),
    }
    Ok(())
}

fn check_counts(options: &DbOptions, totals: &Totals, professionals: usize) -> Result<(), Failure> {
    let mut raw = Raw::open(&options.database)?;
    let patients = options.patients as i64;
    for (table, expected) in [
        ("patients", patients),
        ("patient_identifiers", patients),
        ("care_links", 2 * patients),
        ("record_entries", totals.entries as i64),
        ("observations", totals.observations as i64),
        ("api_tokens", professionals as i64),
        ("accounts", professionals as i64 + 2),
    ] {
        let found = raw.count(table)?;
        if found != expected {
            return Err(Failure::Run(format!("{table} holds {found} rows; expected {expected}")));
        }
    }
    if totals.patients != options.patients || totals.entries != options.patients * options.entries_per_patient {
        return Err(Failure::Run(format!(
            "{} patients and {} entries were written; expected {} and {}",
            totals.patients,
            totals.entries,
            options.patients,
            options.patients * options.entries_per_patient
        )));
    }
    Ok(())
}

/// Reads the first, middle and last patients through the use case the FHIR search calls.
fn check_reads(app: &App, professionals: &[(AccountId, String)], expected: &[Expected]) -> Result<(), Failure> {
    for (n, index) in [0, expected.len() / 2, expected.len() - 1].into_iter().enumerate() {
        let patient = expected[index];
        let (account, _) = professionals[n % professionals.len()];
        let view = try_to!(
            "read a record as a professional",
            app.read_entries_as(account, Channel::Fhir, patient.patient, EntrySelection::Kinds(&OBSERVATION_KINDS))
        );
        let on_consent = view.entries.iter().all(|visible| matches!(visible.basis, kith_core::Basis::Consent { .. }));
        if view.entries.len() != patient.visible || view.some_hidden != patient.hidden || !on_consent {
            return Err(Failure::Run(format!(
                "patient {} reads as {} entries (some hidden: {}, all on consent: {on_consent}); expected {} (some hidden: {})",
                patient.patient,
                view.entries.len(),
                view.some_hidden,
                patient.visible,
                patient.hidden
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// fhir-check
// ---------------------------------------------------------------------------------------

pub fn check(args: &[String]) -> Result<(), Failure> {
    let mut addr = None;
    let mut patients = None;
    let mut tokens = None;
    let mut samples = 20;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        if flag == "-h" || flag == "--help" {
            println!("{CHECK_USAGE}");
            std::process::exit(0);
        }
        let value = value(flag, &mut iter)?;
        match flag.as_str() {
            "--addr" => {
                addr = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|_| Failure::Usage(format!("--addr needs HOST:PORT, not {value:?}")))?,
                );
            }
            "--patients" => patients = Some(PathBuf::from(value)),
            "--tokens" => tokens = Some(PathBuf::from(value)),
            "--samples" => samples = whole(flag, value, false)?,
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let addr = addr.ok_or_else(|| Failure::Usage("--addr is required".to_owned()))?;
    let patients = read_lines(&patients.ok_or_else(|| Failure::Usage("--patients is required".to_owned()))?)?;
    let tokens = read_lines(&tokens.ok_or_else(|| Failure::Usage("--tokens is required".to_owned()))?)?;
    if patients.is_empty() || tokens.is_empty() {
        return Err(Failure::Run("no patients or no tokens in the files".to_owned()));
    }
    let samples = samples.min(patients.len());
    let mut hidden_seen = 0;
    let mut total_seen = 0;
    for sample in 0..samples {
        let line = &patients[sample * (patients.len() - 1) / (samples - 1).max(1)];
        let mut fields = line.split_whitespace();
        let (Some(id), Some(visible), Some(hidden)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(Failure::Run(format!("not a line of fhir-db --patients-out: {line:?}")));
        };
        let visible: usize = text(visible.parse::<usize>())?;
        let hidden = hidden == "1";
        let token = &tokens[sample % tokens.len()];
        let path = format!("/fhir/Observation?patient={id}");
        let (status, body) = get(addr, &path, token)?;
        if status != 200 {
            return Err(Failure::Run(format!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body))));
        }
        let bundle: serde_json::Value = try_to!(format!("GET {path}: the body"), serde_json::from_slice(&body));
        let observations = bundle["entry"]
            .as_array()
            .map_or(0, |entries| entries.iter().filter(|e| e["resource"]["resourceType"] == "Observation").count());
        let flagged = bundle["meta"]["extension"].as_array().is_some_and(|extensions| {
            extensions.iter().any(|e| e["url"] == HIDDEN_EXTENSION && e["valueBoolean"] == true)
        });
        if bundle["resourceType"] != "Bundle"
            || bundle["type"] != "searchset"
            || bundle["total"] != visible
            || observations != visible.min(DEFAULT_PAGE)
            || flagged != hidden
        {
            return Err(Failure::Run(format!(
                "GET {path}: expected a searchset Bundle with total {visible}, {} Observations and the hidden flag {hidden}; got total {}, {observations} Observations, hidden flag {flagged}",
                visible.min(DEFAULT_PAGE),
                bundle["total"]
            )));
        }
        hidden_seen += usize::from(flagged);
        total_seen += visible;
    }
    println!(
        "fhir-check: {samples} searches answered 200 with the expected Bundles ({total_seen} Observations in all; {hidden_seen} with the hidden flag)"
    );
    Ok(())
}

fn read_lines(path: &Path) -> Result<Vec<String>, Failure> {
    let file = std::fs::File::open(path).map_err(|error| Failure::Run(format!("{}: {error}", path.display())))?;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = try_to!(path.display(), line);
        if !line.trim().is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// One HTTP/1.1 GET on its own connection: the status and the body.
fn get(addr: SocketAddr, path: &str, token: &str) -> Result<(u16, Vec<u8>), Failure> {
    let mut stream = try_to!(format!("connect to {addr}"), TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
    try_to!("set a timeout", stream.set_read_timeout(Some(Duration::from_secs(30))));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    try_to!("send the request", stream.write_all(request.as_bytes()));
    let mut response = Vec::new();
    try_to!("read the response", stream.read_to_end(&mut response));
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| Failure::Run(format!("GET {path}: no end of headers in the response")))?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return Err(Failure::Run(format!("GET {path}: a chunked response, which this check does not read")));
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| Failure::Run(format!("GET {path}: no status line")))?;
    Ok((status, response[split + 4..].to_vec()))
}

// ---------------------------------------------------------------------------------------
// pg-scratch
// ---------------------------------------------------------------------------------------

pub fn scratch(args: &[String]) -> Result<(), Failure> {
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{SCRATCH_USAGE}");
        return Ok(());
    }
    let admin_url = std::env::var("KITH_BENCH_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| Failure::Usage("KITH_BENCH_POSTGRES_URL is not set".to_owned()))?;
    let name_ok = |name: &str| {
        name.starts_with("kith_bench_")
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let admin = || -> Result<postgres::Client, Failure> {
        Ok(try_to!("connect to KITH_BENCH_POSTGRES_URL", postgres::Client::connect(&admin_url, postgres::NoTls)))
    };
    match args {
        [command] | [command, _, _] if command == "create" => {
            let prefix = match args {
                [_, flag, prefix] if flag == "--prefix" => prefix.as_str(),
                [_] => "kith_bench_fhir",
                _ => return Err(Failure::Usage(format!("unknown option {:?}", args[1]))),
            };
            let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
            if !name_ok(&name) {
                return Err(Failure::Usage(format!("--prefix: {prefix:?} must start with kith_bench_ (a-z, 0-9, _)")));
            }
            try_to!(format!("CREATE DATABASE {name}"), admin()?.batch_execute(&format!("CREATE DATABASE {name}")));
            println!("{}", kith_test_support::database_url(&admin_url, &name));
            Ok(())
        }
        [command, url] if command == "drop" => {
            let name = url.split('?').next().unwrap_or_default().rsplit('/').next().unwrap_or_default();
            if !name_ok(name) || kith_test_support::database_url(&admin_url, name) != *url {
                return Err(Failure::Usage(format!(
                    "{url:?} is not a kith_bench_… database on the server of KITH_BENCH_POSTGRES_URL"
                )));
            }
            try_to!(
                format!("DROP DATABASE {name}"),
                admin()?.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            );
            Ok(())
        }
        _ => Err(Failure::Usage("pg-scratch create [--prefix NAME] | pg-scratch drop URL".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use kith_test_support::database_url;

    use super::*;

    #[test]
    fn nhs_numbers_are_valid_and_distinct() {
        let numbers: HashSet<String> =
            (0..5000).map(|index| nhs_number(index).map(|n| n.as_str().to_owned()).ok().unwrap()).collect();
        assert_eq!(numbers.len(), 5000);
    }

    #[test]
    fn scratch_urls() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "kith_bench_fhir_1"),
            "postgres://postgres@127.0.0.1:5432/kith_bench_fhir_1"
        );
        assert_eq!(database_url("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    }

    #[test]
    fn chunks_are_deterministic_apart_from_ids() {
        let fixture = Fixture {
            organisation: kith_core::OrganisationId::from_uuid(uuid::Uuid::now_v7()),
            prt: TeamId::from_uuid(uuid::Uuid::now_v7()),
            team: TeamId::from_uuid(uuid::Uuid::now_v7()),
            team_labels: LabelSet::from_labels(TEAM_LABELS),
            now: Timestamp::from_micros(1_780_000_000_000_000),
            observations_per_result: 2,
            entries_per_patient: 20,
            titles: Titles::new().ok().unwrap(),
        };
        let a = build_chunk(&fixture, 0..200).ok().unwrap();
        let b = build_chunk(&fixture, 0..200).ok().unwrap();
        let shape = |chunk: &Chunk| -> Vec<(EntryKind, Option<PrivacyLabel>, String)> {
            chunk.entries.iter().map(|e| (e.kind, e.label, e.title.as_str().to_owned())).collect()
        };
        assert_eq!(shape(&a), shape(&b));
        assert_eq!(a.entries.len(), 4000);
        let visible: usize = a.expected.iter().map(|e| e.visible).sum();
        let average = visible as f64 / 200.0;
        assert!((10.0..=14.0).contains(&average), "{average} Observations visible per patient");
        assert!(a.expected.iter().filter(|e| e.hidden).count() > 150);
        assert!(a.expected.iter().all(|e| e.visible > 0));
    }
}
