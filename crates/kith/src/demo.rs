//! `kith demo`: a fresh demo database with a realistic organisation, then the server.
//!
//! Everything is made through the same use cases as real data (so the audit trail of the
//! set-up is there too). Names are invented; NHS numbers are in the 999 range that the NHS
//! reserves for testing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use kith_app::{App, EntryAuthor, NewEntry, NewMember, NewOrganisation, NewPatient, Operator};
use kith_core::model::Patient;
use kith_core::patient::{Demographics, EntryKind, LocalIdentifier, NhsNumber, Sex};
use kith_core::team::MembershipRole;
use kith_core::text::{EmailAddress, Name, OrganisationCode, Secret, TeamAlias, Title};
use kith_core::{Date, LabelSet, PrivacyLabel, Timestamp};
use kith_store::{DatabaseUrl, Store};

use crate::StorageConfig;

/// The demo patient invited by email, and the date of birth both invited patients register with.
pub const INVITED_PATIENT: (&str, &str) = ("jo.newcomer@patients.example", "1990-04-15");

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "kith-demo-password";
const ORG: &str = "RVH";

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// The address to listen on for HTTP.
    #[arg(long, env = "KITH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How many patients to create.
    #[arg(long, default_value_t = 240)]
    pub patients: usize,
    /// Create the database and print the guide, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

/// A small deterministic generator (xorshift64*), so every demo is the same.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct TeamPlan {
    alias: &'static str,
    name: &'static str,
    labels: &'static [PrivacyLabel],
    coordinators: [(&'static str, &'static str); 2],
    professionals: &'static [(&'static str, &'static str)],
}

const TEAMS: &[TeamPlan] = &[
    TeamPlan {
        alias: "prt",
        name: "Patient Record Team",
        labels: &[],
        coordinators: [
            ("it.coordinator.1@riverside.example", "Priya Shah"),
            ("it.coordinator.2@riverside.example", "Tom Evans"),
        ],
        professionals: &[("data.quality@riverside.example", "Dana Quinn")],
    },
    TeamPlan {
        alias: "cardiology",
        name: "Cardiology",
        labels: &[PrivacyLabel::General],
        coordinators: [
            ("cardio.coord.1@riverside.example", "Helen Moss"),
            ("cardio.coord.2@riverside.example", "Raj Mehta"),
        ],
        professionals: &[
            ("dr.okafor@riverside.example", "Dr Amara Okafor"),
            ("dr.patel@riverside.example", "Dr Sam Patel"),
        ],
    },
    TeamPlan {
        alias: "sexual-health",
        name: "Sexual Health Clinic",
        labels: &[PrivacyLabel::General, PrivacyLabel::SexualHealth],
        coordinators: [
            ("gum.coord.1@riverside.example", "Fiona Grant"),
            ("gum.coord.2@riverside.example", "Owen Price"),
        ],
        professionals: &[("nurse.li@riverside.example", "Nurse Li Wei")],
    },
    TeamPlan {
        alias: "mental-health",
        name: "Community Mental Health Team",
        labels: &[PrivacyLabel::General, PrivacyLabel::MentalHealth],
        coordinators: [
            ("cmht.coord.1@riverside.example", "Grace Adeyemi"),
            ("cmht.coord.2@riverside.example", "Luke Byrne"),
        ],
        // Dr Patel works in cardiology and mental health with one login.
        professionals: &[
            ("dr.patel@riverside.example", "Dr Sam Patel"),
            ("dr.nowak@riverside.example", "Dr Ewa Nowak"),
        ],
    },
    TeamPlan {
        alias: "social-care",
        name: "Hospital Social Work",
        labels: &[PrivacyLabel::General, PrivacyLabel::SocialCare],
        coordinators: [("sw.coord.1@riverside.example", "Maria Costa"), ("sw.coord.2@riverside.example", "Ian Reid")],
        professionals: &[("sw.murphy@riverside.example", "Jo Murphy")],
    },
];

const PRIVACY_OFFICER: (&str, &str) = ("privacy.officer@riverside.example", "Ruth Allen");

const GIVEN: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Sophia", "Grace", "Lily", "Freya", "Aisha", "Zara", "Siân", "Niamh",
    "Chloe", "Hannah", "Oliver", "George", "Arthur", "Noah", "Muhammad", "Leo", "Harry", "Oscar", "Jack", "Charlie",
    "Dylan", "Rhys", "Kwame", "Tomasz", "Ravi",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Khan",
    "Begum",
    "Ahmed",
    "Okonkwo",
    "Kowalski",
    "Nguyen",
    "O'Neill",
    "MacDonald",
    "Murphy",
    "Chen",
];

/// (kind, label, title, body, authoring team alias)
const ENTRIES: &[(EntryKind, PrivacyLabel, &str, &str, &str)] = &[
    (
        EntryKind::Result,
        PrivacyLabel::General,
        "Full blood count",
        "Hb 132 g/L, WCC 6.1, platelets 254. Within normal limits.",
        "prt",
    ),
    (EntryKind::Result, PrivacyLabel::General, "HbA1c", "48 mmol/mol (borderline).", "prt"),
    (EntryKind::Result, PrivacyLabel::General, "Lipid profile", "Total cholesterol 5.8 mmol/L, LDL 3.9 mmol/L.", "prt"),
    (
        EntryKind::Document,
        PrivacyLabel::General,
        "Cardiology clinic letter",
        "Seen for palpitations. ECG sinus rhythm. Plan: 24-hour tape.",
        "cardiology",
    ),
    (
        EntryKind::Appointment,
        PrivacyLabel::General,
        "Echocardiogram",
        "Cardiac investigations unit, 09:30.",
        "cardiology",
    ),
    (EntryKind::Medication, PrivacyLabel::General, "Atorvastatin 20 mg", "One tablet at night.", "cardiology"),
    (EntryKind::Allergy, PrivacyLabel::General, "Penicillin allergy", "Rash (reported 2009).", "prt"),
    (EntryKind::Result, PrivacyLabel::SexualHealth, "Chlamydia and gonorrhoea NAAT", "Not detected.", "sexual-health"),
    (EntryKind::Result, PrivacyLabel::SexualHealth, "HIV antigen/antibody test", "Negative.", "sexual-health"),
    (
        EntryKind::Note,
        PrivacyLabel::SexualHealth,
        "Contraception review",
        "Continues combined pill; BP 118/76.",
        "sexual-health",
    ),
    (EntryKind::Measurement, PrivacyLabel::MentalHealth, "PHQ-9 score", "14 (moderate depression).", "mental-health"),
    (
        EntryKind::Diagnosis,
        PrivacyLabel::MentalHealth,
        "Generalised anxiety disorder",
        "Diagnosed in community mental health assessment.",
        "mental-health",
    ),
    (
        EntryKind::CarePlan,
        PrivacyLabel::MentalHealth,
        "Crisis and safety plan",
        "Warning signs, coping strategies, who to call (crisis line).",
        "mental-health",
    ),
    (
        EntryKind::Document,
        PrivacyLabel::SocialCare,
        "Care Act assessment",
        "Eligible needs: personal care, meal preparation.",
        "social-care",
    ),
    (
        EntryKind::Note,
        PrivacyLabel::SocialCare,
        "Home care package review",
        "Two visits daily; family carer support discussed.",
        "social-care",
    ),
    (
        EntryKind::Appointment,
        PrivacyLabel::SocialCare,
        "Discharge planning meeting",
        "Ward 7 day room, 14:00.",
        "social-care",
    ),
];

pub fn run(config: &StorageConfig, args: DemoArgs) -> anyhow::Result<()> {
    if config.database_url.as_deref().is_some_and(|url| !url.trim().is_empty()) {
        eprintln!("kith demo: note: the demo always uses its own SQLite file; KITH_DATABASE_URL is ignored");
    }
    // The demo's database is the command line's default one, so that every command it
    // prints runs as printed; it replaces only a database an earlier demo made.
    let path = config.data_dir.join("kith.db");
    let marker = config.data_dir.join(DEMO_MARKER);
    if path.exists() && !marker.exists() {
        anyhow::bail!(
            "{} exists and was not made by kith demo, which replaces its database on every run: move it \
             away, or give the demo another directory with --data-dir",
            path.display()
        );
    }
    remove_database(&path)?;
    // The demo's email and SMS of earlier runs (its outbox writes files) and its letters go
    // with its database.
    let outbox_dir = config.data_dir.join("outbox");
    if outbox_dir.exists() {
        std::fs::remove_dir_all(&outbox_dir).with_context(|| format!("removing {}", outbox_dir.display()))?;
    }
    let letters = config.data_dir.join("letters.pdf");
    remove_if_present(&letters)?;
    let started = Instant::now();
    crate::private_file::create_dir(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    std::fs::write(&marker, "kith.db here was made by kith demo: the next kith demo replaces it.\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    let store = Store::open_and_migrate(&DatabaseUrl::Sqlite(path.clone())).context("creating the demo database")?;
    let app = App::new(store, std::sync::Arc::new(kith_app::SystemClock)).with_sealing_key(config.sealing_key()?);
    let summary = populate(&app, args.patients)?;
    let token = app.create_api_token(
        &Operator { name: "demo".into() },
        &EmailAddress::parse("dr.okafor@riverside.example")?,
        &kith_core::text::Name::parse("name", "demo")?,
        Some(30),
    )?;
    let kith = Printed::new(&config.data_dir);
    print_guide(&kith, &path, &summary, started.elapsed(), args.listen, &outbox_dir, &letters);
    print_fhir_guide(&summary, token.secret.expose(), args.listen);
    if args.no_serve {
        return Ok(());
    }
    println!("Serving http://{}/ (health: /healthz, readiness: /readyz). Press Ctrl-C to stop.\n", args.listen);
    let mut serve = crate::serve::ServeArgs::http(args.listen);
    serve.outbox_dir = Some(outbox_dir);
    crate::serve::serve_app(app, serve)
}

/// The file that says the data directory's `kith.db` is the demo's to replace.
const DEMO_MARKER: &str = "demo-database";

fn remove_database(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file =
            path.with_file_name(format!("{}{suffix}", path.file_name().and_then(|n| n.to_str()).unwrap_or("kith.db")));
        remove_if_present(&file).with_context(|| "removing the old demo database")?;
    }
    Ok(())
}

fn remove_if_present(file: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", file.display())),
    }
}

/// How the printed commands start: this very binary (relative to the working directory
/// when it is under it, as `target/release/kith` is after `scripts/demo`), and the data
/// directory when it is not the default one, so that each runs as printed from the
/// directory the demo was started in, in another terminal.
struct Printed {
    command: String,
}

impl Printed {
    fn new(data_dir: &Path) -> Self {
        let here = std::env::current_dir().ok();
        let binary = std::env::current_exe().ok().map(|exe| {
            match here.as_deref().and_then(|here| exe.strip_prefix(here).ok()) {
                Some(relative) => Path::new(".").join(relative),
                None => exe,
            }
        });
        let mut command = binary.map_or_else(|| "kith".to_owned(), |binary| shell_word(&binary.display().to_string()));
        if data_dir != Path::new(DEFAULT_DATA_DIR) {
            command.push_str(&format!(" --data-dir {}", shell_word(&data_dir.display().to_string())));
        }
        Printed { command }
    }
}

/// The data directory's default (`StorageConfig`).
const DEFAULT_DATA_DIR: &str = "./kith-data";

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

struct Summary {
    patients: usize,
    entries: usize,
    example: Patient,
    registered_email: String,
}

fn populate(app: &App, patient_count: usize) -> anyhow::Result<Summary> {
    let operator = Operator { name: "demo".into() };
    let code = OrganisationCode::parse(ORG)?;
    let hash = kith_app::password::hash_password(&Secret::new(DEMO_PASSWORD.to_owned()))?;
    app.create_organisation(
        &operator,
        &NewOrganisation {
            code: code.clone(),
            name: Name::parse("name", "Riverside University Hospitals NHS Foundation Trust")?,
            break_glass_duration: None,
        },
    )?;
    for team in TEAMS {
        let alias = TeamAlias::parse(team.alias)?;
        if team.alias != "prt" {
            app.create_team(
                &operator,
                &code,
                &Name::parse("name", team.name)?,
                &alias,
                LabelSet::from_labels(team.labels.iter().copied()),
            )?;
        }
        let members = team
            .coordinators
            .iter()
            .map(|c| (c, MembershipRole::Coordinator))
            .chain(team.professionals.iter().map(|p| (p, MembershipRole::Professional)));
        for ((email, name), role) in members {
            app.add_member(
                &operator,
                &NewMember {
                    organisation: code.clone(),
                    team: alias.clone(),
                    email: EmailAddress::parse(email)?,
                    name: Name::parse("name", name)?,
                    role,
                    password_hash: Some(hash.clone()),
                },
            )?;
        }
        if team.alias == "prt" {
            app.add_member(
                &operator,
                &NewMember {
                    organisation: code.clone(),
                    team: alias.clone(),
                    email: EmailAddress::parse(PRIVACY_OFFICER.0)?,
                    name: Name::parse("name", PRIVACY_OFFICER.1)?,
                    role: MembershipRole::Coordinator,
                    password_hash: Some(hash.clone()),
                },
            )?;
            app.appoint_privacy_officer(&operator, &code, &EmailAddress::parse(PRIVACY_OFFICER.0)?)?;
        }
        app.go_live(&operator, &code, &alias)?;
    }

    let mut dice = Dice(0x4b49_5448_2026_1125);
    let now = app.now();
    let mut entries = 0;
    let mut example = None;
    let mut registered_email = String::new();
    let mut serial = 0u32;
    for index in 0..patient_count {
        let nhs_number = loop {
            serial += 1;
            let digits: Vec<u32> = format!("999{:06}", serial).bytes().map(|b| u32::from(b - b'0')).collect();
            if let Some(check) = NhsNumber::check_digit(&digits) {
                break NhsNumber::parse(&format!("999{serial:06}{check}"))?;
            }
        };
        let given = *dice.pick(GIVEN);
        let family = *dice.pick(FAMILY);
        let birth = Date::from_days_since_epoch(-20_000 + dice.below(27_000) as i64);
        let speciality: Vec<&TeamPlan> = TEAMS[1..].iter().filter(|_| dice.below(100) < 45).collect();
        let patient = app.create_patient(
            &operator,
            &NewPatient {
                organisation: code.clone(),
                demographics: Demographics {
                    family_name: Name::parse("family", family)?,
                    given_name: Name::parse("given", given)?,
                    birth_date: birth,
                    sex: if dice.below(2) == 0 { Sex::Female } else { Sex::Male },
                    email: None,
                    mobile: None,
                    address: None,
                },
                nhs_number: Some(nhs_number),
                local_identifiers: vec![LocalIdentifier::parse(&format!("RVH-MRN:R{:07}", 1_000_000 + index))?],
                teams: speciality.iter().map(|team| TeamAlias::parse(team.alias)).collect::<Result<_, _>>()?,
            },
        )?;
        // Every patient has entries under all four labels, by the teams that would write them.
        let mut chosen: Vec<usize> = PrivacyLabel::ALL
            .iter()
            .map(|label| {
                let of_label: Vec<usize> = (0..ENTRIES.len()).filter(|&i| ENTRIES[i].1 == *label).collect();
                of_label[dice.below(of_label.len())]
            })
            .collect();
        for _ in 0..4 + dice.below(6) {
            chosen.push(dice.below(ENTRIES.len()));
        }
        for (n, &choice) in chosen.iter().enumerate() {
            let (kind, label, title, body, author) = ENTRIES[choice];
            // A team writes only for its own patients; the rest came from the hospital's
            // feeds, filed in the Patient Record Team.
            let author = if speciality.iter().any(|team| team.alias == author) { author } else { "prt" };
            let days_ago = (dice.below(900) + n) as u64;
            app.add_entry(
                &EntryAuthor::Operator { operator: &operator, organisation: &code, team: &TeamAlias::parse(author)? },
                patient.id,
                &NewEntry {
                    kind,
                    label: Some(label),
                    title: Title::parse(title)?,
                    body: body.to_owned(),
                    effective_at: Timestamp::from_micros(now.as_micros()).minus(Duration::from_secs(days_ago * 86_400)),
                },
            )?;
            entries += 1;
        }
        if index == 0 {
            registered_email =
                format!("{}.{}@patients.example", given.to_lowercase(), family.to_lowercase().replace('\'', ""));
            let registered = app.register_patient_account(
                &operator,
                &code,
                patient.id,
                &EmailAddress::parse(&registered_email)?,
                &hash,
            )?;
            let _ = registered;
        }
        if example.is_none() && speciality.iter().any(|team| team.alias == "cardiology") {
            example = Some(patient);
        }
    }
    // A patient who has not registered yet: giving the record an email sends the invitation
    // (the demo's outbox writes email to files), and one to be invited by letter.
    for (serial, (given, family, email, address, mrn)) in [
        ("Jo", "Newcomer", Some(INVITED_PATIENT.0), None, "RVH-MRN:R0999998"),
        ("Sam", "Letterbox", None, Some(["4 Orchard Lane", "Riverside", "RV2 4CD"]), "RVH-MRN:R0999999"),
    ]
    .into_iter()
    .enumerate()
    {
        // NHS numbers outside the range the other demo patients use (999…).
        let nhs_number = (serial as u32 * 10..)
            .find_map(|n| {
                let digits: Vec<u32> = format!("998{n:06}").bytes().map(|b| u32::from(b - b'0')).collect();
                NhsNumber::check_digit(&digits).map(|check| format!("998{n:06}{check}"))
            })
            .map(|text| NhsNumber::parse(&text))
            .context("a demo NHS number")??;
        let patient = app.create_patient(
            &operator,
            &NewPatient {
                organisation: code.clone(),
                demographics: Demographics {
                    family_name: Name::parse("family", family)?,
                    given_name: Name::parse("given", given)?,
                    birth_date: Date::parse(INVITED_PATIENT.1)?,
                    sex: Sex::Unknown,
                    email: email.map(EmailAddress::parse).transpose()?,
                    mobile: None,
                    address: address.map(kith_core::text::PostalAddress::from_lines).transpose()?,
                },
                nhs_number: Some(nhs_number),
                local_identifiers: vec![LocalIdentifier::parse(mrn)?],
                teams: vec![TeamAlias::parse("cardiology")?],
            },
        )?;
        if address.is_some() {
            let nhs_number = patient.nhs_number.as_ref().context("the letter patient has an NHS number")?;
            app.invite_patient(&operator, &code, nhs_number, Some(kith_app::invitations::InviteChannel::Letter))?;
        }
    }
    Ok(Summary {
        patients: patient_count,
        entries,
        example: example.context("no demo patient in cardiology")?,
        registered_email,
    })
}

fn print_guide(
    kith: &Printed,
    path: &Path,
    summary: &Summary,
    took: Duration,
    listen: SocketAddr,
    outbox_dir: &Path,
    letters: &Path,
) {
    let example = &summary.example;
    let nhs = example.nhs_number.as_ref().map(NhsNumber::formatted).unwrap_or_default();
    println!(
        "\nKith demo: Riverside University Hospitals NHS Foundation Trust ({ORG})\n\
         created in {:.1}s: 5 teams, {} patients, {} record entries, in {}\n",
        took.as_secs_f64(),
        summary.patients,
        summary.entries,
        path.display()
    );
    println!("Teams (all live, two coordinators each):");
    for team in TEAMS {
        let labels: Vec<&str> = team.labels.iter().map(|l| l.code()).collect();
        println!(
            "  {:<14} {:<30} labels: {}",
            team.alias,
            team.name,
            if labels.is_empty() { "none (no access by default)".to_owned() } else { labels.join(", ") }
        );
    }
    println!("\nEvery demo account's password is: {DEMO_PASSWORD}");
    println!(
        "  professionals: dr.okafor@riverside.example (cardiology), dr.patel@riverside.example (cardiology and mental-health),"
    );
    println!(
        "                 nurse.li@riverside.example (sexual-health), dr.nowak@riverside.example (mental-health),"
    );
    println!("                 sw.murphy@riverside.example (social-care), data.quality@riverside.example (prt)");
    println!(
        "  coordinators:  it.coordinator.1@riverside.example (prt), cardio.coord.1@riverside.example, … (two per team)"
    );
    println!("  privacy officer: {}", PRIVACY_OFFICER.0);
    println!("  a registered patient: {}", summary.registered_email);
    println!("\nSign in on the web at http://{listen}/sign-in as any of them.");
    println!(
        "  Invited, not yet registered: Jo Newcomer (born {}). The invitation email is a file in\n\
         \x20 {}/ (the demo sends no real email): open its link to register and walk through the teams.\n\
         \x20 Sam Letterbox (same birth date) is invited by letter; print the letters with\n",
        INVITED_PATIENT.1,
        outbox_dir.display()
    );
    let kith = &kith.command;
    println!("  {kith} letters export --org {ORG} --out {}", shell_word(&letters.display().to_string()));
    println!(
        "\nOr act as these people with the command line, from this directory in another terminal (every\n\
         read is audited with its basis). For example, {} {} (NHS {nhs}):\n",
        example.demographics.given_name, example.demographics.family_name
    );
    let id = example.id;
    println!("  {kith} record read --org {ORG} --team cardiology --as dr.okafor@riverside.example --patient {id}");
    println!("  {kith} record read --org {ORG} --team prt --as data.quality@riverside.example --patient {id}");
    println!(
        "  {kith} break-glass open --org {ORG} --team prt --as data.quality@riverside.example --patient {id} --reason \"checking the record after a merge\""
    );
    println!("  {kith} audit list --patient {id}");
    println!("  {kith} audit verify\n");
}

fn print_fhir_guide(summary: &Summary, token: &str, listen: SocketAddr) {
    let example = &summary.example;
    let nhs = example.nhs_number.as_ref().map(|number| number.as_str().to_owned()).unwrap_or_default();
    println!(
        "The FHIR API, as dr.okafor@riverside.example (this token lasts 30 days; make others with kith token create):\n"
    );
    println!("  export KITH_TOKEN={token}");
    println!(
        "  curl -H \"Authorization: Bearer $KITH_TOKEN\" 'http://{listen}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{nhs}'"
    );
    println!(
        "  curl -H \"Authorization: Bearer $KITH_TOKEN\" 'http://{listen}/fhir/Observation?patient={}'",
        example.id
    );
    println!("  curl http://{listen}/fhir/metadata        # what is served; the OpenAPI document is /openapi.json\n");
}
