//! The command line's `--as` across two organisations, on SQLite and PostgreSQL: every
//! person of Hillside (professional, data quality, privacy officer, coordinator) tries every
//! command that acts as a person against Riverside's patient, through their own team and
//! through Riverside's. Every attempt fails with the same generic words (or a refusal that
//! names nothing of Riverside's patient), and Riverside's record is as it was.

mod common;

use common::*;
use kith_test_support::TestDatabase;
use serde_json::Value;

fn member(kith: &Kith<'_>, org: &str, team: &str, email: &str, coordinator: bool) {
    let mut args = vec![
        "professional",
        "add",
        "--org",
        org,
        "--team",
        team,
        "--email",
        email,
        "--name",
        "Test Person",
        "--password-stdin",
    ];
    if coordinator {
        args.push("--coordinator");
    }
    kith.ok_with_stdin(&args, Some(&format!("{PASSWORD}\n")));
}

/// Creates the organisation and its people; returns its id.
fn organisation(kith: &Kith<'_>, code: &str, name: &str, domain: &str) -> Value {
    let id = kith.ok(&["org", "create", "--name", name, "--code", code])["id"].clone();
    kith.ok(&[
        "team",
        "create",
        "--org",
        code,
        "--name",
        "Ward",
        "--alias",
        "ward",
        "--labels",
        "general,mental_health",
    ]);
    member(kith, code, "ward", &format!("coordinator@{domain}"), true);
    member(kith, code, "ward", &format!("second@{domain}"), true);
    kith.ok(&["team", "go-live", "--org", code, "--team", "ward"]);
    member(kith, code, "ward", &format!("professional@{domain}"), false);
    member(kith, code, "prt", &format!("data-quality@{domain}"), false);
    member(kith, code, "prt", &format!("privacy-officer@{domain}"), false);
    kith.ok(&["privacy-officer", "appoint", "--org", code, "--email", &format!("privacy-officer@{domain}")]);
    id
}

/// Riverside's record as Riverside's professional reads it.
fn riverside_record(kith: &Kith<'_>, patient: &str) -> Value {
    let mut read = kith.ok(&[
        "record",
        "read",
        "--org",
        "RXH",
        "--team",
        "ward",
        "--as",
        "professional@riverside.example",
        "--patient",
        patient,
    ]);
    read.as_object_mut().unwrap().remove("read_at");
    read
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };
    let _riverside = organisation(&kith, "RXH", "Riverside Hospitals", "riverside.example");
    let hillside = organisation(&kith, "HSH", "Hillside Health", "hillside.example");
    let patient = kith.ok(&[
        "patient",
        "add",
        "--org",
        "RXH",
        "--family",
        "Quartermaine",
        "--given",
        "Zanele",
        "--birth-date",
        "1971-09-14",
        "--nhs-number",
        "4010230002",
        "--team",
        "ward",
    ]);
    let patient = patient["id"].as_str().unwrap().to_owned();
    kith.ok(&[
        "entry",
        "add",
        "--org",
        "RXH",
        "--patient",
        &patient,
        "--kind",
        "result",
        "--label",
        "mental_health",
        "--title",
        "Lithium level",
    ]);
    let before = riverside_record(&kith, &patient);
    assert_eq!(before["entries"].as_array().unwrap().len(), 1, "{before}");

    let reason = "Unconscious on arrival in the emergency department";
    for who in [
        "professional@hillside.example",
        "data-quality@hillside.example",
        "privacy-officer@hillside.example",
        "coordinator@hillside.example",
    ] {
        for (org, team) in [("HSH", "ward"), ("HSH", "prt"), ("RXH", "ward"), ("RXH", "prt")] {
            let as_team = ["--org", org, "--team", team, "--as", who, "--patient", patient.as_str()];
            let attempts: Vec<Vec<&str>> = vec![
                [&["record", "read"][..], &as_team].concat(),
                [&["break-glass", "open"][..], &as_team, &["--reason", reason]].concat(),
                [&["break-glass", "end"][..], &as_team].concat(),
                [
                    &["entry", "add", "--org", org, "--team", team, "--patient", patient.as_str(), "--as", who][..],
                    &["--kind", "note", "--label", "general", "--title", "Seen in clinic"],
                ]
                .concat(),
                [
                    &["patient", "consent"][..],
                    &as_team,
                    &["--labels", "general,mental_health,sexual_health,social_care", "--reason", reason],
                ]
                .concat(),
            ];
            for args in attempts {
                let refused = kith.fails(&args);
                assert!(
                    !refused.contains("Quartermaine")
                        && !refused.contains("4010230002")
                        && !refused.contains("Lithium"),
                    "{who}: kith {args:?} named Riverside's patient: {refused}"
                );
            }
        }
        let refused =
            kith.fails(&["patient", "disable-sharing", "--as", who, "--patient", &patient, "--reason", reason]);
        assert!(!refused.contains("Quartermaine"), "{refused}");
    }

    // Riverside's record, its links and its sharing are as they were.
    assert_eq!(riverside_record(&kith, &patient), before);
    // Hillside's attempts through its own teams are in Riverside's patient's audit trail,
    // refused; nothing done under Hillside was allowed.
    let events = kith.ok(&["audit", "list", "--patient", &patient, "--limit", "1000"])["events"].clone();
    let hillside_events: Vec<&Value> =
        events.as_array().unwrap().iter().filter(|event| event["organisation"] == hillside).collect();
    assert!(
        hillside_events.iter().filter(|event| event["outcome"] == "denied").count() >= 4,
        "Hillside's attempts are audited as refused: {events}"
    );
    assert!(
        hillside_events.iter().all(|event| event["outcome"] == "denied"),
        "nothing Hillside's people tried was allowed: {hillside_events:?}"
    );
}

#[test]
fn the_command_line_across_organisations_on_sqlite() {
    scenario(&TestDatabase::sqlite());
}

#[test]
fn the_command_line_across_organisations_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        scenario(&database);
    }
}
