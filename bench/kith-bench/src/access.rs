//! `kith-bench access`: how fast the access rule decides, and how long a professional's read
//! of a patient's record takes end to end (rule, query, audit event, commit).
//!
//! Part A runs the pure rule of `kith_core::access` on one thread over a varied, precomputed
//! set of facts. Part B builds a small organisation on a fresh SQLite file and times
//! `App::read_record` on a patient with 1,000 entries. Part C repeats part B on a fresh
//! PostgreSQL database when `KITH_BENCH_POSTGRES_URL` is set.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_app::{App, Clock, EntryAuthor, NewEntry, NewMember, NewOrganisation, NewPatient, Operator, SystemClock};
use kith_core::access::{
    BreakGlassFacts, CareLinkFacts, EntryFacts, MembershipFacts, RecordAccessFacts, decide_entry, record_scope,
};
use kith_core::audit::Channel;
use kith_core::patient::{Demographics, EntryKind, Sex};
use kith_core::team::{AccountStatus, MembershipRole, MembershipStatus, TeamKind};
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias, Title};
use kith_core::{Basis, BreakGlassId, Date, Decision, DenyReason, LabelSet, PrivacyLabel, TeamId, Timestamp};
use kith_store::{DatabaseUrl, Store};

pub const USAGE: &str = "\
usage: kith-bench access [options]

  --seconds S   minimum duration of each throughput run of the rule (default 2)
  --runs N      throughput runs per measurement; the median is reported (default 3)
  --set N       facts/entry pairs in the precomputed decision set (default 4096)
  --entries N   entries in the benchmark patient's record (default 1000)
  --warmup N    untimed record reads before timing (default 200)
  --reads N     timed record reads (default 3000)

environment:
  KITH_BENCH_POSTGRES_URL  a PostgreSQL server where the benchmark may CREATE DATABASE,
                           e.g. postgres://postgres@127.0.0.1:5432/postgres; unset skips part C";

use crate::Failure;

struct Options {
    seconds: f64,
    runs: usize,
    set: usize,
    entries: usize,
    warmup: usize,
    reads: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut options = Options { seconds: 2.0, runs: 3, set: 4096, entries: 1000, warmup: 200, reads: 3000 };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args.next().ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
            let count = || {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Failure::Usage(format!("{flag} needs a positive whole number, not {value:?}")))
            };
            match flag.as_str() {
                "--seconds" => {
                    options.seconds =
                        value.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| {
                            Failure::Usage(format!("--seconds needs a positive number, not {value:?}"))
                        })?;
                }
                "--runs" => options.runs = count()?,
                "--set" => options.set = count()?,
                "--entries" => options.entries = count()?,
                "--warmup" => options.warmup = count()?,
                "--reads" => options.reads = count()?,
                other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
            }
        }
        Ok(options)
    }
}

pub fn run(args: &[String]) -> Result<(), Failure> {
    let options = Options::parse(args)?;
    println!("kith-bench access — started {}", SystemClock.now());
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; figures are meaningless (use bench/access/run)");
    }
    println!(
        "one thread; available parallelism {} (other processes on the machine share it)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    decision_throughput(&options);
    println!();

    println!("B. Record read on SQLite");
    let directory = try_to!("a temporary directory", tempfile::tempdir());
    let path = directory.path().join("kith-bench.db");
    let sqlite = record_read(&DatabaseUrl::Sqlite(path), &options)?;
    sqlite.print();
    drop(directory);
    println!();

    println!("C. Record read on PostgreSQL");
    let postgres = match std::env::var("KITH_BENCH_POSTGRES_URL").ok().filter(|url| !url.is_empty()) {
        None => {
            println!("  skipped: KITH_BENCH_POSTGRES_URL is not set");
            None
        }
        Some(admin_url) => {
            let database = kith_test_support::TestDatabase::postgres_on(&admin_url, "kith_bench")
                .map_err(|error| Failure::Run(format!("KITH_BENCH_POSTGRES_URL: {error}")))?;
            println!("  database {} (created for this run, dropped after it)", database.postgres_name().unwrap_or("?"));
            let stats = record_read(&database.url, &options)?;
            stats.print();
            drop(database);
            Some(stats)
        }
    };
    println!();

    println!("Summary of the record read ({} entries, p = nearest rank)", options.entries);
    println!(
        "  {:<11} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "backend", "visible", "p50 µs", "p90 µs", "p99 µs", "max µs", "mean µs", "reads/s"
    );
    sqlite.summary_row("SQLite");
    match &postgres {
        Some(stats) => stats.summary_row("PostgreSQL"),
        None => println!("  {:<11} skipped", "PostgreSQL"),
    }
    println!();
    println!(
        "Every read is audited before it returns: the rule and the filtered query in a read-only \
         transaction, then its audit event appended to the hash chain by the audit writer and committed \
         (SQLite in WAL mode with synchronous=FULL; with one reader, as here, that is one fsync per read)."
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A. The rule on its own
// ---------------------------------------------------------------------------------------

/// SplitMix64: a small deterministic generator, so every run decides the same set.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

const NOW: Timestamp = Timestamp::from_micros(1_780_000_000_000_000);
const HOUR: Duration = Duration::from_secs(3600);

fn team(index: u64) -> TeamId {
    TeamId::from_uuid(uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(index)))
}

/// Facts about (P, T, X) covering every branch of the rule: account states, memberships,
/// care links with each of the 16 label sets, discharged links, break glass none / active /
/// expired / ended, sharing disabled.
fn record_facts(rng: &mut SplitMix) -> RecordAccessFacts {
    let account_status = match rng.below(10) {
        0 => AccountStatus::Invited,
        1 => AccountStatus::Locked,
        2 => AccountStatus::Disabled,
        _ => AccountStatus::Active,
    };
    let membership = match rng.below(10) {
        0 => None,
        1 => Some(MembershipFacts { role: MembershipRole::Coordinator, status: MembershipStatus::Active }),
        2 => Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Deactivated }),
        _ => Some(MembershipFacts { role: MembershipRole::Professional, status: MembershipStatus::Active }),
    };
    let labels = LabelSet::from_bits(rng.below(16) as u8).unwrap_or(LabelSet::EMPTY);
    let care_link = match rng.below(10) {
        0 => None,
        1 | 2 => Some(CareLinkFacts { labels, active: false }),
        _ => Some(CareLinkFacts { labels, active: true }),
    };
    let grant = BreakGlassId::from_uuid(uuid::Uuid::from_u128(u128::from(rng.next())));
    let acting_team = team(rng.below(4));
    // Most grants were opened through the acting team; some through another.
    let team = if rng.below(4) == 0 { team(rng.below(4)) } else { acting_team };
    let break_glass = match rng.below(8) {
        0 => Some(BreakGlassFacts { grant, expires_at: NOW.plus(HOUR), ended: false, team, session: None }),
        1 => Some(BreakGlassFacts { grant, expires_at: NOW.minus(HOUR), ended: false, team, session: None }),
        2 => Some(BreakGlassFacts { grant, expires_at: NOW.plus(HOUR), ended: true, team, session: None }),
        _ => None,
    };
    RecordAccessFacts {
        now: NOW,
        acting_team,
        acting_team_kind: if rng.below(5) == 0 { TeamKind::PatientRecord } else { TeamKind::Speciality },
        account_status,
        membership,
        care_link,
        break_glass,
        sharing_disabled: rng.below(16) == 0,
    }
}

/// An entry: one in eight unlabelled, the rest spread over the four labels.
fn entry_label(rng: &mut SplitMix) -> Option<PrivacyLabel> {
    match rng.below(8) {
        0 => None,
        n => Some(PrivacyLabel::ALL[(n % 4) as usize]),
    }
}

/// Pairs for `decide_entry`: a quarter of the entries authored by the acting team.
fn decision_set(count: usize) -> Vec<(RecordAccessFacts, EntryFacts)> {
    let mut rng = SplitMix(0x4B17_4B17_4B17_4B17);
    (0..count)
        .map(|_| {
            let facts = record_facts(&mut rng);
            let label = entry_label(&mut rng);
            let authored_by = if rng.below(4) == 0 { facts.acting_team } else { team(4 + rng.below(3)) };
            (facts, EntryFacts { label, authored_by })
        })
        .collect()
}

/// Entries of one record for the scope path: authors spread over the same four teams as the
/// acting teams, so about a quarter are the acting team's own.
fn record_entries(count: usize) -> Vec<EntryFacts> {
    let mut rng = SplitMix(0x0E47_0E47_0E47_0E47);
    (0..count).map(|_| EntryFacts { label: entry_label(&mut rng), authored_by: team(rng.below(4)) }).collect()
}

fn outcome_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow(Basis::Consent { .. }) => "allow: consent",
        Decision::Allow(Basis::OwnTeamData { .. }) => "allow: own team data",
        Decision::Allow(Basis::BreakGlass { .. }) => "allow: break glass",
        Decision::Allow(_) => "allow: other",
        Decision::Deny(DenyReason::AccountNotActive(_)) => "deny: account not active",
        Decision::Deny(DenyReason::NotAMemberOfTeam) => "deny: not a member",
        Decision::Deny(DenyReason::MembershipDeactivated) => "deny: membership deactivated",
        Decision::Deny(DenyReason::CoordinatorRoleHasNoClinicalAccess) => "deny: coordinator",
        Decision::Deny(DenyReason::NoCareLink) => "deny: no care link",
        Decision::Deny(DenyReason::CareLinkDischarged) => "deny: discharged",
        Decision::Deny(DenyReason::LabelNotConsented(_)) => "deny: label not consented",
        Decision::Deny(DenyReason::UnlabelledEntryNeedsAllLabels) => "deny: unlabelled entry",
        Decision::Deny(DenyReason::SharingDisabled) => "deny: sharing disabled",
        Decision::Deny(_) => "deny: other",
    }
}

struct Throughput {
    decisions: u64,
    elapsed: Duration,
    allowed: u64,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.decisions as f64 / self.elapsed.as_secs_f64()
    }
    fn nanos_each(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.decisions as f64
    }
}

/// `decide_entry` over the whole set, again and again, until `minimum` has passed.
fn run_decide_entry(set: &[(RecordAccessFacts, EntryFacts)], minimum: Duration) -> Throughput {
    const PASSES_PER_CLOCK_CHECK: u64 = 64;
    let mut decisions = 0u64;
    let mut allowed = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..PASSES_PER_CLOCK_CHECK {
            for (facts, entry) in set {
                let decision = decide_entry(black_box(facts), black_box(entry));
                allowed += u64::from(black_box(decision).is_allowed());
            }
        }
        decisions += PASSES_PER_CLOCK_CHECK * set.len() as u64;
        if start.elapsed() >= minimum {
            break;
        }
    }
    Throughput { decisions, elapsed: start.elapsed(), allowed }
}

/// The path `read_record` takes: `record_scope` once per record, then `decide` per entry.
fn run_scope_then_entries(
    records: &[RecordAccessFacts],
    entries: &[EntryFacts],
    minimum: Duration,
) -> (Throughput, u64) {
    const RECORDS_PER_CLOCK_CHECK: usize = 256;
    let mut decisions = 0u64;
    let mut allowed = 0u64;
    let mut scopes = 0u64;
    let start = Instant::now();
    'outer: loop {
        for chunk in records.chunks(RECORDS_PER_CLOCK_CHECK) {
            for facts in chunk {
                let scope = record_scope(black_box(facts));
                for entry in entries {
                    let decision = scope.decide(black_box(entry));
                    allowed += u64::from(black_box(decision).is_allowed());
                }
            }
            scopes += chunk.len() as u64;
            decisions += (chunk.len() * entries.len()) as u64;
            if start.elapsed() >= minimum {
                break 'outer;
            }
        }
    }
    (Throughput { decisions, elapsed: start.elapsed(), allowed }, scopes)
}

/// The run with the median rate.
fn median_run(mut runs: Vec<(Throughput, u64)>) -> (Throughput, u64) {
    runs.sort_by(|a, b| a.0.per_second().total_cmp(&b.0.per_second()));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

fn decision_throughput(options: &Options) {
    let minimum = Duration::from_secs_f64(options.seconds);
    let set = decision_set(options.set);
    println!("A. The access rule (kith_core::access), one thread, std::hint::black_box on inputs and outputs");

    let mut mix: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (facts, entry) in &set {
        *mix.entry(outcome_name(decide_entry(facts, entry))).or_default() += 1;
    }
    println!("  decision set: {} (facts, entry) pairs; outcomes in the set:", set.len());
    for (name, count) in &mix {
        println!("    {name:<30} {count:>6}  {:>5.1}%", 100.0 * *count as f64 / set.len() as f64);
    }

    // Warm up caches and the CPU's clock before measuring.
    black_box(run_decide_entry(&set, Duration::from_millis(300)).allowed);
    let runs: Vec<(Throughput, u64)> = (0..options.runs).map(|_| (run_decide_entry(&set, minimum), 0)).collect();
    let rates: Vec<String> = runs.iter().map(|(run, _)| format!("{:.1}M/s", run.per_second() / 1e6)).collect();
    let (single, _) = median_run(runs);

    let records: Vec<RecordAccessFacts> = set.iter().map(|(facts, _)| *facts).collect();
    let entries = record_entries(options.entries);
    black_box(run_scope_then_entries(&records, &entries, Duration::from_millis(300)).0.allowed);
    let scoped_runs: Vec<(Throughput, u64)> =
        (0..options.runs).map(|_| run_scope_then_entries(&records, &entries, minimum)).collect();
    let scoped_rates: Vec<String> =
        scoped_runs.iter().map(|(run, _)| format!("{:.1}M/s", run.per_second() / 1e6)).collect();
    let (scoped, scopes) = median_run(scoped_runs);

    println!();
    println!(
        "  {:<44} {:>14} {:>9} {:>13} {:>9}",
        "measurement (median of runs)", "decisions", "seconds", "decisions/s", "ns each"
    );
    println!(
        "  {:<44} {:>14} {:>9.2} {:>13} {:>9.2}",
        "decide_entry(facts, entry)",
        group(single.decisions),
        single.elapsed.as_secs_f64(),
        group(single.per_second() as u64),
        single.nanos_each()
    );
    println!(
        "  {:<44} {:>14} {:>9.2} {:>13} {:>9.2}",
        format!("record_scope once + scope.decide × {}", entries.len()),
        group(scoped.decisions),
        scoped.elapsed.as_secs_f64(),
        group(scoped.per_second() as u64),
        scoped.nanos_each()
    );
    println!(
        "  {:<44} {:>14} {:>9} {:>13} {:>9.0}",
        format!("  per record (1 scope + {} entries)", entries.len()),
        group(scopes),
        "",
        group((scopes as f64 / scoped.elapsed.as_secs_f64()) as u64),
        scoped.elapsed.as_nanos() as f64 / scopes as f64
    );
    println!("  runs of decide_entry: {}", rates.join(", "));
    println!("  runs of scope + decide: {}", scoped_rates.join(", "));
    println!(
        "  allowed: {} of {} (decide_entry), {} of {} (scope + decide)",
        group(single.allowed),
        group(single.decisions),
        group(scoped.allowed),
        group(scoped.decisions)
    );
}

/// 1234567 → "1,234,567".
pub(crate) fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

// ---------------------------------------------------------------------------------------
// B and C. The record read through the app
// ---------------------------------------------------------------------------------------

struct ReadStats {
    setup: Duration,
    entries_total: usize,
    visible: usize,
    some_hidden: bool,
    warmup: usize,
    /// Each timed read, sorted.
    latencies: Vec<Duration>,
    wall: Duration,
}

impl ReadStats {
    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        let rank = (p / 100.0 * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
    fn mean(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len() as u32
    }
    fn reads_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn print(&self) {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  set-up (organisation, team, 3 accounts, patient, {} entries): {:.1} s",
            self.entries_total,
            self.setup.as_secs_f64()
        );
        println!(
            "  entries visible to the professional: {} of {} (some hidden: {})",
            self.visible, self.entries_total, self.some_hidden
        );
        println!(
            "  {} warm-up reads, then {} timed reads of app.read_record, each timed with Instant",
            self.warmup,
            self.latencies.len()
        );
        println!("  {:<10} {:>12} {:>10}", "", "µs", "ms");
        for (name, value) in [
            ("min", self.latencies[0]),
            ("p50", self.percentile(50.0)),
            ("p90", self.percentile(90.0)),
            ("p99", self.percentile(99.0)),
            ("max", self.latencies[self.latencies.len() - 1]),
            ("mean", self.mean()),
        ] {
            println!("  {name:<10} {:>12.0} {:>10.3}", micros(value), micros(value) / 1000.0);
        }
        println!(
            "  throughput: {:.0} reads/s ({} reads in {:.2} s, one thread)",
            self.reads_per_second(),
            self.latencies.len(),
            self.wall.as_secs_f64()
        );
    }

    fn summary_row(&self, backend: &str) {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "  {:<11} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>11.0}",
            backend,
            self.visible,
            micros(self.percentile(50.0)),
            micros(self.percentile(90.0)),
            micros(self.percentile(99.0)),
            micros(self.latencies[self.latencies.len() - 1]),
            micros(self.mean()),
            self.reads_per_second()
        );
    }
}

fn text<T, E: Display>(result: Result<T, E>) -> Result<T, Failure> {
    result.map_err(|error| Failure::Run(format!("invalid benchmark data: {error}")))
}

/// Builds the organisation and the patient, then times the reads.
fn record_read(url: &DatabaseUrl, options: &Options) -> Result<ReadStats, Failure> {
    let setup_started = Instant::now();
    let store = try_to!("open and migrate the store", Store::open_and_migrate(url));
    let app = App::new(store, Arc::new(SystemClock));
    let operator = Operator { name: "bench".into() };

    let code = text(OrganisationCode::parse("BENCH"))?;
    let alias = text(TeamAlias::parse("cmht"))?;
    try_to!(
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
    try_to!(
        "create the team",
        app.create_team(
            &operator,
            &code,
            &text(Name::parse("team name", "Community Mental Health Team"))?,
            &alias,
            LabelSet::from_labels([PrivacyLabel::General, PrivacyLabel::MentalHealth]),
        )
    );
    // Argon2id is deliberately slow: hash once, give every account the same PHC string.
    let password_hash = try_to!(
        "hash the password",
        kith_app::password::hash_password(&Secret::new("benchmark password, not a secret".into()))
    );
    let member = |email: &str, name: &str, role: MembershipRole| -> Result<(), Failure> {
        try_to!(
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
        Ok(())
    };
    member("coordinator.one@bench.example", "Coordinator One", MembershipRole::Coordinator)?;
    member("coordinator.two@bench.example", "Coordinator Two", MembershipRole::Coordinator)?;
    try_to!("take the team live", app.go_live(&operator, &code, &alias));
    let professional = "professional@bench.example";
    member(professional, "Professional Reader", MembershipRole::Professional)?;

    let patient = try_to!(
        "create the patient",
        app.create_patient(
            &operator,
            &NewPatient {
                organisation: code.clone(),
                demographics: Demographics {
                    family_name: text(Name::parse("family name", "Bench"))?,
                    given_name: text(Name::parse("given name", "Patient"))?,
                    birth_date: text(Date::new(1970, 1, 1))?,
                    sex: Sex::Unknown,
                    email: None,
                    mobile: None,
                    address: None,
                },
                nhs_number: None,
                local_identifiers: Vec::new(),
                teams: vec![alias.clone()],
            },
        )
    );

    // Entries loaded by the operator for the Patient Record Team (which has no labels), so
    // the professional sees exactly the general and mental health ones, through consent.
    let prt = TeamAlias::patient_record_team();
    let author = EntryAuthor::Operator { operator: &operator, organisation: &code, team: &prt };
    let now = app.now();
    let body = "Seen in clinic. Observations within normal limits; plan reviewed with the patient \
                and carer. Follow-up booked. "
        .repeat(2);
    let mut expected_visible = 0;
    for index in 0..options.entries {
        let label = PrivacyLabel::ALL[index % 4];
        let kind = EntryKind::ALL[(index / 4 + index) % EntryKind::ALL.len()];
        if matches!(label, PrivacyLabel::General | PrivacyLabel::MentalHealth) {
            expected_visible += 1;
        }
        try_to!(
            "add an entry",
            app.add_entry(
                &author,
                patient.id,
                &NewEntry {
                    kind,
                    label: Some(label),
                    title: text(Title::parse(&format!("{} {index}", kind.code())))?,
                    body: body.clone(),
                    effective_at: now.minus(Duration::from_secs(3600 * index as u64)),
                },
            )
        );
    }
    let context = try_to!(
        "resolve the professional's context",
        app.professional_context(&code, &alias, &text(EmailAddress::parse(professional))?, Channel::Web)
    );
    let setup = setup_started.elapsed();

    let first = try_to!("read the record", app.read_record(&context, patient.id));
    if first.entries.len() != expected_visible || !matches!(first.basis, Basis::Consent { .. }) {
        return Err(Failure::Run(format!(
            "the professional sees {} entries on basis {:?}; expected {expected_visible} on consent",
            first.entries.len(),
            first.basis
        )));
    }
    let some_hidden = first.some_hidden;
    for _ in 1..options.warmup {
        black_box(try_to!("read the record", app.read_record(&context, patient.id)));
    }

    let mut latencies = Vec::with_capacity(options.reads);
    let wall_started = Instant::now();
    for _ in 0..options.reads {
        let started = Instant::now();
        let view = app.read_record(black_box(&context), black_box(patient.id));
        let elapsed = started.elapsed();
        let view = try_to!("read the record", view);
        if view.entries.len() != expected_visible {
            return Err(Failure::Run(format!("a read saw {} entries, not {expected_visible}", view.entries.len())));
        }
        black_box(view);
        latencies.push(elapsed);
    }
    let wall = wall_started.elapsed();
    latencies.sort_unstable();
    drop(app);

    Ok(ReadStats {
        setup,
        entries_total: options.entries,
        visible: expected_visible,
        some_hidden,
        warmup: options.warmup,
        latencies,
        wall,
    })
}

/// A PostgreSQL database created for this run and dropped (even on failure) afterwards.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_set_covers_every_outcome() {
        let set = decision_set(4096);
        let outcomes: std::collections::BTreeSet<&str> =
            set.iter().map(|(facts, entry)| outcome_name(decide_entry(facts, entry))).collect();
        for expected in [
            "allow: consent",
            "allow: own team data",
            "allow: break glass",
            "deny: account not active",
            "deny: not a member",
            "deny: membership deactivated",
            "deny: coordinator",
            "deny: no care link",
            "deny: discharged",
            "deny: label not consented",
            "deny: unlabelled entry",
            "deny: sharing disabled",
        ] {
            assert!(outcomes.contains(expected), "missing {expected}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}
