//! The operator CLI, scripted as an operator (or an external acceptance test) would use it,
//! on SQLite and PostgreSQL: the organisation and its Patient Record Team, team go-live and
//! the two-coordinator rule, a patient with entries under all four labels, reads filtered by
//! consent, break glass until expiry, every read audited with its basis, and a tampered
//! audit row named by `kith audit verify`. Also `kith serve` and `kith demo` answering
//! `/healthz`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kith_test_support::{Engine, TestDatabase};
use serde_json::Value;

fn labels(read: &Value) -> Vec<String> {
    let mut labels: Vec<String> =
        read["entries"].as_array().unwrap().iter().map(|e| e["label"].as_str().unwrap().to_owned()).collect();
    labels.sort();
    labels
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };

    // An organisation comes with its Patient Record Team, which has no labels.
    let org = kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    assert!(org["id"].as_str().is_some());
    assert_eq!(org["patient_record_team"]["alias"], "prt");
    assert_eq!(org["patient_record_team"]["labels"], serde_json::json!([]));
    assert!(kith.fails(&["org", "create", "--name", "Again", "--code", "rxh"]).contains("already exists"));

    // A team with general and mental health; go-live needs two coordinators.
    let team = kith.create_team("Mental Health", "mh", "general,mental_health");
    assert_eq!(team["labels"], serde_json::json!(["general", "mental_health"]));
    assert!(team["id"].as_str().is_some());
    kith.add_member("mh", "coordinator.one@example.org", true);
    let refused = kith.fails(&["team", "go-live", "--org", "RXH", "--team", "mh"]);
    assert!(
        refused.contains("cannot go live with 1 active coordinator")
            && refused.contains("Appoint another coordinator first"),
        "{refused}"
    );
    // A second coordinator appointed who has not set a password yet: still refused, saying
    // how many are appointed, how many not active yet, and what makes them active.
    kith.ok(&[
        "professional",
        "add",
        "--org",
        "RXH",
        "--team",
        "mh",
        "--email",
        "coordinator.invited@example.org",
        "--name",
        "Invited Coordinator",
        "--coordinator",
    ]);
    let waiting = kith.fails(&["team", "go-live", "--org", "RXH", "--team", "mh"]);
    assert!(
        waiting.contains("cannot go live with 1 active coordinator(s) (2 appointed, 1 not active yet)")
            && waiting.contains("once they set their password from the link in their invitation email"),
        "{waiting}"
    );
    // That account cannot use an API token yet: refused with why and what to do, no token.
    let no_token = kith.fails(&["token", "create", "--email", "coordinator.invited@example.org"]);
    assert!(no_token.contains("has not set a password yet") && no_token.contains("invitation email"), "{no_token}");
    assert_eq!(kith.ok(&["token", "list", "--email", "coordinator.invited@example.org"]), serde_json::json!([]));
    kith.add_member("mh", "coordinator.two@example.org", true);
    assert_eq!(kith.ok(&["team", "go-live", "--org", "RXH", "--team", "mh"])["status"], "live");

    // Deactivating one of the two coordinators is refused, saying why and what to do.
    let refused = kith.fails(&[
        "professional",
        "deactivate",
        "--org",
        "RXH",
        "--team",
        "mh",
        "--email",
        "coordinator.one@example.org",
    ]);
    assert!(
        refused.contains("at least 2")
            && refused.contains("Appoint another coordinator first")
            && refused.contains("--force"),
        "{refused}"
    );

    // Professionals: one in the team, one in another team.
    kith.add_member("mh", "pro@example.org", false);
    kith.create_team("Sexual Health", "gum", "general,sexual_health");
    let other = kith.add_member("gum", "other@example.org", false);
    assert_eq!(other["account_status"], "active");

    // A patient linked to the team, with entries under all four labels (from the hospital feed).
    assert!(
        kith.fails(&[
            "patient",
            "add",
            "--org",
            "RXH",
            "--family",
            "Okafor",
            "--given",
            "Ngozi",
            "--birth-date",
            "1971-09-14",
            "--nhs-number",
            "9434765918"
        ])
        .contains("check digit")
    );
    let patient = kith.ok(&[
        "patient",
        "add",
        "--org",
        "RXH",
        "--family",
        "Okafor",
        "--given",
        "Ngozi",
        "--birth-date",
        "1971-09-14",
        "--nhs-number",
        "943 476 5919",
        "--local-id",
        "RXH-MRN:K1234567",
        "--team",
        "mh",
    ]);
    let patient_id = patient["id"].as_str().unwrap().to_owned();
    assert_eq!(patient["nhs_number"], "9434765919");
    let updated = kith.ok(&[
        "patient",
        "update",
        "--org",
        "RXH",
        "--patient",
        &patient_id,
        "--given",
        "Ngozi Ada",
        "--local-id",
        "RXH-NHSX:99",
    ]);
    assert_eq!((updated["given"].as_str(), updated["family"].as_str()), (Some("Ngozi Ada"), Some("Okafor")));
    let twin =
        kith.ok(&["patient", "add", "--org", "RXH", "--family", "Twin", "--given", "T", "--birth-date", "1971-09-14"]);
    let refused = kith.fails(&[
        "patient",
        "update",
        "--org",
        "RXH",
        "--patient",
        twin["id"].as_str().unwrap(),
        "--local-id",
        "RXH-MRN:K1234567",
    ]);
    assert!(refused.contains("another patient record has the identifier RXH-MRN:K1234567"), "{refused}");
    for (label, title) in [
        ("general", "Full blood count"),
        ("sexual_health", "HIV test"),
        ("mental_health", "PHQ-9"),
        ("social_care", "Care Act assessment"),
    ] {
        let entry = kith.ok(&[
            "entry",
            "add",
            "--org",
            "RXH",
            "--patient",
            &patient_id,
            "--kind",
            "result",
            "--label",
            label,
            "--title",
            title,
        ]);
        assert!(entry["id"].as_str().is_some());
    }

    // The team's professional sees general and mental health only.
    let read_as = |team: &str, who: &str| {
        kith.ok(&["record", "read", "--org", "RXH", "--team", team, "--as", who, "--patient", &patient_id])
    };
    let pro_read = read_as("mh", "pro@example.org");
    assert_eq!(labels(&pro_read), ["general", "mental_health"]);
    assert_eq!(pro_read["basis"], "consent");
    assert_eq!(pro_read["some_hidden"], true);

    // A professional of another team sees nothing, and is told nothing more.
    let record_args = [
        "record",
        "read",
        "--org",
        "RXH",
        "--team",
        "gum",
        "--as",
        "other@example.org",
        "--patient",
        patient_id.as_str(),
    ];
    assert_eq!(kith.fails(&record_args).trim(), "error: not found or not permitted");

    // After breaking the glass they see everything, until it expires.
    kith.ok(&["org", "set", "--org", "RXH", "--break-glass-duration", "3s"]);
    assert!(
        kith.fails(&[
            "break-glass",
            "open",
            "--org",
            "RXH",
            "--team",
            "gum",
            "--as",
            "other@example.org",
            "--patient",
            &patient_id,
            "--reason",
            " "
        ])
        .contains("reason")
    );
    let grant = kith.ok(&[
        "break-glass",
        "open",
        "--org",
        "RXH",
        "--team",
        "gum",
        "--as",
        "other@example.org",
        "--patient",
        &patient_id,
        "--reason",
        "Collapsed in A&E",
    ]);
    let opened = Instant::now();
    assert!(grant["expires_at"].as_str().is_some());
    let glass_read = read_as("gum", "other@example.org");
    assert_eq!(labels(&glass_read), ["general", "mental_health", "sexual_health", "social_care"]);
    assert_eq!(glass_read["basis"], "break_glass");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(opened.elapsed()) + Duration::from_millis(300));
    assert_eq!(kith.fails(&record_args).trim(), "error: not found or not permitted");

    // Each read is an audit event with its basis (and the denied ones with their reason).
    let audit = kith.ok(&["audit", "list", "--patient", &patient_id]);
    let reads: Vec<&Value> =
        audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "record.read").collect();
    let summary: Vec<(&str, Option<&str>)> =
        reads.iter().map(|e| (e["outcome"].as_str().unwrap(), e["basis"].as_str())).collect();
    assert_eq!(
        summary,
        [("allowed", Some("consent")), ("denied", None), ("allowed", Some("break_glass")), ("denied", None)]
    );
    assert_eq!(reads[0]["labels"], "general,mental_health");
    assert_eq!(reads[1]["reason"], "no active care link, authored data or break-glass grant for the patient");
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "break_glass.open" && e["reason"] == "Collapsed in A&E")
    );

    // The chain verifies; changing one row in the database makes verification fail and name it.
    let verified = kith.ok(&["audit", "verify"]);
    assert_eq!(verified["intact"], true);
    let events = verified["events"].as_u64().unwrap();
    let tampered_seq = reads[0]["seq"].as_i64().unwrap();
    let tamper = match database.engine {
        Engine::Sqlite => format!(
            "DROP TRIGGER audit_events_append_only_update; UPDATE audit_events SET basis = 'self' WHERE seq = {tampered_seq};"
        ),
        Engine::Postgres => format!(
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only; UPDATE audit_events SET basis = 'self' WHERE seq = {tampered_seq};"
        ),
    };
    database.execute_raw(&tamper).unwrap();
    let broken = kith.fails(&["audit", "verify"]);
    assert_eq!(
        broken.trim(),
        format!(
            "error: audit chain broken: audit event {tampered_seq} was changed: its contents do not match its hash"
        )
    );
    assert!(events as i64 > tampered_seq);
}

#[test]
fn the_operator_cli_on_sqlite() {
    scenario(&TestDatabase::sqlite());
}

#[test]
fn the_operator_cli_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        scenario(&database);
    }
}

#[test]
fn bad_input_gets_a_specific_error() {
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    kith.ok(&["org", "create", "--name", "Riverside", "--code", "RXH"]);
    let cases: &[(&[&str], &str)] = &[
        (&["org", "create", "--name", "X", "--code", "R X"], "organisation code"),
        (
            &["team", "create", "--org", "RXH", "--name", "T", "--alias", "t", "--labels", "general,genetics"],
            "unknown privacy label \"genetics\"",
        ),
        (&["team", "create", "--org", "NOPE", "--name", "T", "--alias", "t"], "no organisation has the code NOPE"),
        (&["team", "go-live", "--org", "RXH", "--team", "nope"], "no team with the alias nope"),
        (
            &["patient", "add", "--org", "RXH", "--family", "A", "--given", "B", "--birth-date", "1990-02-30"],
            "1990-02-30 is not a date",
        ),
        (
            &[
                "patient",
                "add",
                "--org",
                "RXH",
                "--family",
                "A",
                "--given",
                "B",
                "--birth-date",
                "1990-01-01",
                "--nhs-number",
                "123",
            ],
            "exactly 10 digits",
        ),
        (
            &[
                "patient",
                "add",
                "--org",
                "RXH",
                "--family",
                "A",
                "--given",
                "B",
                "--birth-date",
                "1990-01-01",
                "--email",
                "not-an-email",
            ],
            "not an email address",
        ),
        (&["org", "set", "--org", "RXH", "--break-glass-duration", "2d"], "not a duration"),
        (&["org", "set", "--org", "RXH", "--break-glass-duration", "25h"], "at most 24h"),
        (&["org", "set", "--org", "RXH", "--on-behalf-labels", "general,hiv"], "unknown privacy label"),
        (
            &["record", "read", "--org", "RXH", "--team", "prt", "--as", "x@example.org", "--patient", "nope"],
            "no account has the email",
        ),
    ];
    for (args, expected) in cases {
        let error = kith.fails(args);
        assert!(error.contains(expected), "kith {args:?}: expected {expected:?} in {error:?}");
    }
    // What the data-quality staff may add on a patient's behalf: an organisation setting.
    assert_eq!(kith.ok(&["org", "set", "--org", "RXH", "--on-behalf-labels", "general,social_care"])["code"], "RXH");
    // A short password is refused before anything is written.
    let output = kith.run_with_stdin(
        &[
            "professional",
            "add",
            "--org",
            "RXH",
            "--team",
            "prt",
            "--email",
            "a@example.org",
            "--name",
            "A",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 12 characters"));
    assert_eq!(kith.ok(&["team", "list", "--org", "RXH"])["teams"][0]["members"], serde_json::json!([]));
}

#[test]
fn serve_answers_health_and_readiness() {
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    let (mut server, Listening { http: address, .. }) =
        start_server(&mut kith.command(&["serve", "--listen", "127.0.0.1:0"]));
    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(&address, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(&address, "/nothing-here").0, 404);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn the_demo_builds_a_realistic_organisation_and_serves() {
    let directory = tempfile_directory();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.args(["demo", "--listen", "127.0.0.1:0"]).env("KITH_DATA_DIR", &directory).env_remove("KITH_DATABASE_URL");
    let (mut server, Listening { http: address, .. }) = start_server(&mut command);
    assert_eq!(http_get(&address, "/healthz").0, 200);
    server.kill().unwrap();
    server.wait().unwrap();

    // The demo database: the PRT and four speciality teams with different labels, two
    // coordinators each, one professional in two teams, 240 patients with all four labels.
    let database_url = format!("sqlite://{}/kith.db", directory.display());
    let run = |args: &[&str]| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(args)
            .arg("--json")
            .env("KITH_DATABASE_URL", &database_url)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let teams = run(&["team", "list", "--org", "RVH"]);
    let teams = teams["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 5);
    let mut label_sets: Vec<String> = teams.iter().map(|team| team["labels"].to_string()).collect();
    label_sets.sort();
    label_sets.dedup();
    assert_eq!(label_sets.len(), 5, "every team has its own default labels");
    for team in teams {
        let coordinators = team["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "coordinator" && m["status"] == "active")
            .count();
        assert!(coordinators >= 2, "{team}");
        assert_eq!(team["status"], "live");
    }
    let in_two = teams
        .iter()
        .flat_map(|team| {
            team["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "professional")
                .map(|m| m["email"].as_str().unwrap().to_owned())
        })
        .fold(std::collections::HashMap::<String, usize>::new(), |mut counts, email| {
            *counts.entry(email).or_default() += 1;
            counts
        });
    assert!(in_two.values().any(|&teams| teams >= 2), "one professional is in two teams");
    let audit = run(&["audit", "verify"]);
    assert_eq!(audit["intact"], true);
    let connection = kith_store::sqlite::raw_connection(&directory.join("kith.db")).unwrap();
    let patients: i64 = connection.query_row("SELECT COUNT(*) FROM patients", [], |row| row.get(0)).unwrap();
    let labels_per_patient: i64 = connection
        .query_row(
            "SELECT MIN(n) FROM (SELECT COUNT(DISTINCT label) AS n FROM record_entries GROUP BY patient_id)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(patients >= 200, "{patients}");
    assert_eq!(labels_per_patient, 4);
    std::fs::remove_dir_all(&directory).unwrap();
}

fn tempfile_directory() -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("kith-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}
