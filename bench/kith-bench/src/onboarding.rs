//! `kith-bench onboarding-csv`: how long a coordinator's "add many professionals" takes for
//! a hospital-sized file — `App::preview_professionals_csv` (read and check, writing
//! nothing) and `App::import_professionals_csv` (apply: accounts, memberships, activation
//! codes, outbox emails and audit events in one transaction) — on a fresh SQLite database
//! and, when given one, a fresh PostgreSQL database.
//!
//! The file is generated deterministically: realistic names (some with apostrophes,
//! hyphens and accents), job titles (some with commas, so quoted), registration numbers in
//! the GMC, NMC and HCPC shapes, one coordinator in fifty. One row in a hundred is a person
//! who already has an account (made beforehand by importing them into another team, so the
//! row adds a membership), and one in a thousand has an invalid email address. After the
//! import the database is checked (rows added per table, the audit chain intact), and the
//! same file is imported again, which must change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_app::professionals_csv::{CsvReport, Importer, MAX_ROWS};
use kith_app::{App, AuditVerification, Clock, NewOrganisation, Operator, SystemClock};
use kith_core::LabelSet;
use kith_core::text::{Name, OrganisationCode, TeamAlias};
use kith_store::professionals::OnboardingCounts;
use kith_store::{DatabaseUrl, Store, StoreError};

use crate::Failure;
use crate::access::SplitMix;
use crate::hl7::{FAMILY_NAMES, GIVEN_NAMES};

pub const USAGE: &str = "\
usage: kith-bench onboarding-csv [--rows N] [--postgres URL] [--csv-out FILE]

  --rows N         data rows in the generated file (default 10000, at most 50000)
  --postgres URL   a PostgreSQL server where the benchmark may CREATE DATABASE (a scratch
                   database is created for the run and dropped after it), e.g.
                   postgres://postgres@127.0.0.1:5432/postgres; default KITH_BENCH_POSTGRES_URL;
                   without either, SQLite only
  --csv-out FILE   also write the generated file there

Times App::preview_professionals_csv and App::import_professionals_csv (the operator's
`kith professional import`, without process start-up) on a fresh SQLite database, then on
PostgreSQL. Goal: preview and apply each at most 5 s for 10,000 rows on every backend.";

const TITLES: &[&str] = &[
    "Staff Nurse",
    "Senior Staff Nurse",
    "Ward Sister",
    "Consultant, Cardiology",
    "Consultant, Psychiatry",
    "Specialty Registrar",
    "Foundation Year 1 Doctor",
    "Physiotherapist",
    "Occupational Therapist",
    "Clinical Nurse Specialist, Sexual Health",
    "Healthcare Assistant",
    "Pharmacist",
    "Dietitian",
    "Paramedic",
    "Social Worker",
    "",
];

/// The generated file and what it should do.
struct Generated {
    csv: Vec<u8>,
    /// Rows whose person already has an account (imported beforehand into another team).
    existing_csv: Vec<u8>,
    created: usize,
    added: usize,
    invalid: usize,
}

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// ASCII for the email's local part: `Zoë Ní Bhriain` → `zoe.nibhriain`.
fn ascii(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            'ë' | 'é' => Some('e'),
            'á' | 'à' => Some('a'),
            'í' => Some('i'),
            'ü' => Some('u'),
            'ï' => Some('i'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn generate(rows: usize) -> Generated {
    let mut random = SplitMix(0x6b69_7468_6373_7631);
    let header = "email,given name,family name,job title,professional registration number,role\r\n";
    let mut csv = String::from(header);
    let mut existing_csv = String::from(header);
    let (mut created, mut added, mut invalid) = (0, 0, 0);
    for index in 0..rows {
        let given = GIVEN_NAMES[random.below(GIVEN_NAMES.len() as u64) as usize];
        let family = FAMILY_NAMES[random.below(FAMILY_NAMES.len() as u64) as usize];
        let title = TITLES[random.below(TITLES.len() as u64) as usize];
        let registration = match random.below(4) {
            0 => format!("GMC {}", 1_000_000 + random.below(9_000_000)),
            1 => format!("NMC {:02}A{:04}E", random.below(100), random.below(10_000)),
            2 => format!("PH{:06}", random.below(1_000_000)),
            _ => String::new(),
        };
        let role = if index % 50 == 7 { "coordinator" } else { "" };
        let email = if index % 1000 == 999 {
            invalid += 1;
            format!("{}.{} at trust.example.org", ascii(given), ascii(family))
        } else {
            format!("{}.{}.{index}@trust.example.org", ascii(given), ascii(family))
        };
        let line = format!("{},{},{},{},{},{role}\r\n", email, field(given), field(family), field(title), registration);
        if index % 100 == 42 {
            added += 1;
            existing_csv.push_str(&line);
        } else if index % 1000 != 999 {
            created += 1;
        }
        csv.push_str(&line);
    }
    Generated { csv: csv.into_bytes(), existing_csv: existing_csv.into_bytes(), created, added, invalid }
}

struct Options {
    rows: usize,
    postgres: Option<String>,
    csv_out: Option<std::path::PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut options = Options {
            rows: 10_000,
            postgres: std::env::var("KITH_BENCH_POSTGRES_URL").ok().filter(|url| !url.is_empty()),
            csv_out: None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args.next().ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
            match flag.as_str() {
                "--rows" => {
                    options.rows = value.parse().ok().filter(|n| (1..=MAX_ROWS).contains(n)).ok_or_else(|| {
                        Failure::Usage(format!("--rows needs a whole number from 1 to {MAX_ROWS}, not {value:?}"))
                    })?;
                }
                "--postgres" => options.postgres = Some(value.clone()),
                "--csv-out" => options.csv_out = Some(value.into()),
                other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
            }
        }
        Ok(options)
    }
}

/// One backend's figures.
struct Figures {
    preview: Duration,
    apply: Duration,
    again: Duration,
}

fn counts(app: &App) -> Result<OnboardingCounts, Failure> {
    Ok(try_to!("counting rows", app.store().read(|tx| -> Result<_, StoreError> { tx.onboarding_counts() })))
}

fn check(what: &str, report: &CsvReport, expected: (usize, usize, usize, usize)) -> Result<(), Failure> {
    let counts = &report.counts;
    let got = (counts.created, counts.added_to_team, counts.already_in_team, counts.errors);
    if !report.is_usable() || got != expected {
        return Err(Failure::Run(format!(
            "{what}: expected (created, added, already, errors) {expected:?}, got {got:?} {:?}",
            report.file_problems
        )));
    }
    Ok(())
}

fn measure(url: &DatabaseUrl, generated: &Generated) -> Result<Figures, Failure> {
    let store = try_to!("opening the database", Store::open_and_migrate(url));
    let app = App::new(store, Arc::new(SystemClock));
    let operator = Operator { name: "kith-bench".to_owned() };
    let importer = Importer::Operator(&operator);
    let code = OrganisationCode::parse("BENCH").expect("a valid code");
    try_to!(
        "creating the organisation",
        app.create_organisation(
            &operator,
            &NewOrganisation {
                code: code.clone(),
                name: Name::parse("name", "Bench Hospitals NHS Trust").expect("a valid name"),
                break_glass_duration: None,
            },
        )
    );
    let ward = TeamAlias::parse("ward").expect("a valid alias");
    let team = TeamAlias::parse("onboarding").expect("a valid alias");
    for (alias, name) in [(&ward, "Ward 4"), (&team, "Community Mental Health")] {
        try_to!(
            "creating a team",
            app.create_team(
                &operator,
                &code,
                &Name::parse("name", name).expect("a valid name"),
                alias,
                LabelSet::EMPTY
            )
        );
    }
    let existing = try_to!(
        "importing the existing accounts into another team",
        app.import_professionals_csv(&importer, &code, &ward, &generated.existing_csv)
    );
    check("the existing accounts", &existing, (generated.added, 0, 0, 0))?;

    let before = counts(&app)?;
    let started = Instant::now();
    let preview = try_to!("preview", app.preview_professionals_csv(&importer, &code, &team, &generated.csv));
    let preview_time = started.elapsed();
    check("preview", &preview, (generated.created, generated.added, 0, generated.invalid))?;
    if counts(&app)? != before {
        return Err(Failure::Run("the preview wrote to the database".to_owned()));
    }

    let started = Instant::now();
    let applied = try_to!("import", app.import_professionals_csv(&importer, &code, &team, &generated.csv));
    let apply_time = started.elapsed();
    check("import", &applied, (generated.created, generated.added, 0, generated.invalid))?;
    let after = counts(&app)?;
    let (created, joined) = (generated.created as i64, (generated.created + generated.added) as i64);
    let added = OnboardingCounts {
        accounts: after.accounts - before.accounts,
        memberships: after.memberships - before.memberships,
        one_time_codes: after.one_time_codes - before.one_time_codes,
        outbox: after.outbox - before.outbox,
        audit_events: after.audit_events - before.audit_events,
    };
    let expected = OnboardingCounts {
        accounts: created,
        memberships: joined,
        one_time_codes: created,
        outbox: joined,
        audit_events: created + joined,
    };
    if added != expected {
        return Err(Failure::Run(format!("the import added {added:?}, expected {expected:?}")));
    }
    match try_to!("verifying the audit chain", app.verify_audit()) {
        AuditVerification::Intact { events } => println!("  audit chain intact ({events} events)"),
        AuditVerification::Broken(broken) => {
            return Err(Failure::Run(format!("the audit chain is broken: {broken:?}")));
        }
    }

    let started = Instant::now();
    let again = try_to!("import again", app.import_professionals_csv(&importer, &code, &team, &generated.csv));
    let again_time = started.elapsed();
    check("import again", &again, (0, 0, generated.created + generated.added, generated.invalid))?;
    if counts(&app)? != after {
        return Err(Failure::Run("importing the same file again changed the database".to_owned()));
    }
    println!(
        "  preview {:.3} s, apply {:.3} s, again {:.3} s: {}",
        preview_time.as_secs_f64(),
        apply_time.as_secs_f64(),
        again_time.as_secs_f64(),
        applied.summary()
    );
    Ok(Figures { preview: preview_time, apply: apply_time, again: again_time })
}

pub fn run(args: &[String]) -> Result<(), Failure> {
    let options = Options::parse(args)?;
    println!("kith-bench onboarding-csv — started {}", SystemClock.now());
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; figures are meaningless (use bench/onboarding/run)");
    }
    let generated = generate(options.rows);
    if let Some(path) = &options.csv_out {
        try_to!(format!("writing {}", path.display()), std::fs::write(path, &generated.csv));
    }
    println!(
        "file: {} rows, {} KB ({} new people, {} with an account already, {} invalid email addresses)",
        options.rows,
        generated.csv.len() / 1024,
        generated.created,
        generated.added,
        generated.invalid
    );
    println!();

    println!("SQLite (a fresh file in a temporary directory)");
    let directory = try_to!("a temporary directory", tempfile::tempdir());
    let sqlite = measure(&DatabaseUrl::Sqlite(directory.path().join("kith-bench.db")), &generated)?;
    drop(directory);
    println!();

    let postgres = match &options.postgres {
        None => {
            println!("PostgreSQL: skipped (no --postgres URL and KITH_BENCH_POSTGRES_URL is not set)");
            None
        }
        Some(admin_url) => {
            let database = kith_test_support::TestDatabase::postgres_on(admin_url, "kith_bench_onboarding")
                .map_err(|error| Failure::Run(format!("PostgreSQL: {error}")))?;
            println!(
                "PostgreSQL (database {}, created for this run and dropped after it)",
                database.postgres_name().unwrap_or("?")
            );
            let figures = measure(&database.url, &generated)?;
            drop(database);
            Some(figures)
        }
    };
    println!();

    println!("{} rows: seconds, wall clock, in-process (no CLI start-up)", options.rows);
    println!("  {:<11} {:>9} {:>9} {:>14} {:>12}", "backend", "preview", "apply", "same again", "rows/s apply");
    let row = |label: &str, figures: &Figures| {
        println!(
            "  {:<11} {:>9.3} {:>9.3} {:>14.3} {:>12.0}",
            label,
            figures.preview.as_secs_f64(),
            figures.apply.as_secs_f64(),
            figures.again.as_secs_f64(),
            options.rows as f64 / figures.apply.as_secs_f64()
        );
    };
    row("SQLite", &sqlite);
    match &postgres {
        Some(figures) => row("PostgreSQL", figures),
        None => println!("  {:<11} skipped", "PostgreSQL"),
    }
    let limit = Duration::from_secs(5);
    let met = [Some(&sqlite), postgres.as_ref()]
        .into_iter()
        .flatten()
        .all(|figures| figures.preview <= limit && figures.apply <= limit);
    println!();
    println!(
        "goal: preview and apply each at most 5 s per backend{}: {}",
        if options.rows == 10_000 { "" } else { " (the goal is stated for 10,000 rows)" },
        if met { "MET" } else { "NOT MET" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_deterministic_and_counted() {
        let first = generate(2000);
        assert_eq!(first.csv, generate(2000).csv);
        assert_eq!((first.created, first.added, first.invalid), (1978, 20, 2));
        let text = String::from_utf8(first.csv).unwrap();
        assert_eq!(text.lines().count(), 2001);
        assert!(text.contains("\"Consultant, "));
    }
}
