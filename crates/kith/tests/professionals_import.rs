//! `kith professional import` on both backends: a dry run writes nothing, an import applies
//! the valid rows and names the others by line, `--report` writes every row's outcome,
//! `--json` gives the rows, the same file again changes nothing, and a file that cannot be
//! used exits with status 1 having applied nothing.

mod common;

use common::*;
use kith_test_support::{TestDatabase, on_each_engine};
use serde_json::Value;

const FILE: &str = "\u{feff}Email,Given_Name,Family-Name,Job Title,Professional Registration Number,Role\r\n\
    ada@example.org,Ada,Okafor,\"Nurse, Ward 4\",NMC 12A3456E,\r\n\
    bo@example.org,Bo,Smith,Consultant,GMC 1234567,coordinator\r\n\
    \r\n\
    not-an-email,Cy,Lee,,,\r\n\
    pro@example.org,Pro,Fessional,,,\r\n";

fn members(kith: &Kith<'_>) -> Vec<(String, String)> {
    let teams = kith.ok(&["team", "list", "--org", "RXH"]);
    let team = teams["teams"].as_array().unwrap().iter().find(|team| team["alias"] == "mh").unwrap();
    let mut members: Vec<(String, String)> = team["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    members.sort();
    members
}

fn run(kith: &Kith<'_>, args: &[&str]) -> (Option<i32>, String, String) {
    let output = kith.run_with_stdin(args, None);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };
    kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    kith.ok(&["team", "create", "--org", "RXH", "--name", "Mental Health", "--alias", "mh", "--labels", "general"]);
    kith.add_member("mh", "pro@example.org", false);
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("professionals.csv");
    std::fs::write(&file, FILE).unwrap();
    let file = file.to_str().unwrap();
    let import = ["professional", "import", "--org", "RXH", "--team", "mh", file];

    // A dry run says what would happen and writes nothing.
    let (status, stdout, stderr) = run(&kith, &[&import[..], &["--dry-run"]].concat());
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(
            "dry run, nothing was written: would create 2, would add to team 0, already in team 1, errors 1\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  line 5: not-an-email: email: \"not-an-email\" is not an email address"), "{stdout}");
    assert_eq!(members(&kith), [("pro@example.org".to_owned(), "professional".to_owned())]);

    // The import applies the valid rows and writes the report.
    let report = directory.path().join("report.csv");
    let report_arg = report.to_str().unwrap();
    let (status, stdout, stderr) = run(&kith, &[&import[..], &["--report", report_arg]].concat());
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("created 2, added to team 0, already in team 1, errors 1\n"), "{stdout}");
    assert!(stdout.contains("rows not applied:\n  line 5: not-an-email: "), "{stdout}");
    assert_eq!(
        members(&kith),
        [
            ("ada@example.org".to_owned(), "professional".to_owned()),
            ("bo@example.org".to_owned(), "coordinator".to_owned()),
            ("pro@example.org".to_owned(), "professional".to_owned()),
        ]
    );
    let written = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "line,email,outcome,detail");
    assert_eq!(lines[1], "2,ada@example.org,created,");
    assert_eq!(lines[2], "3,bo@example.org,created,");
    assert!(
        lines[3].starts_with("5,not-an-email,error,\"email: \"\"not-an-email\"\" is not an email address"),
        "{written}"
    );
    assert_eq!(lines[4], "6,pro@example.org,already in team,a professional of the team");

    // Two activation emails are waiting.
    let outbox = kith.ok(&["outbox", "list"]);
    let text = outbox.to_string();
    assert_eq!(text.matches("professional_activation").count(), 2, "{text}");

    // Again, as JSON: nothing changes.
    let again = kith.ok(&import);
    assert_eq!(again["applied"], true);
    assert_eq!(again["summary"], "created 0, added to team 0, already in team 3, errors 1");
    assert_eq!(again["counts"]["already_in_team"], 3);
    let rows: Vec<(i64, &str, &str)> = again["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["line"].as_i64().unwrap(), row["email"].as_str().unwrap(), row["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            (2, "ada@example.org", "already_in_team"),
            (3, "bo@example.org", "already_in_team"),
            (5, "not-an-email", "error"),
            (6, "pro@example.org", "already_in_team"),
        ]
    );
    assert_eq!(again["rows"][1]["role"], "coordinator");
    assert_eq!(kith.ok(&["outbox", "list"]).to_string().matches("professional_activation").count(), 2);

    // A file that cannot be used: exit status 1, the problems named, nothing applied.
    let bad = directory.path().join("bad.csv");
    std::fs::write(&bad, "email,given name,grade\nnew@example.org,New,F1\n").unwrap();
    let (status, stdout, stderr) =
        run(&kith, &["professional", "import", "--org", "RXH", "--team", "mh", bad.to_str().unwrap()]);
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("nothing was imported")
            && stderr.contains("line 1: unknown column \"grade\"")
            && stderr.contains("line 1: missing required column family name"),
        "{stderr}"
    );
    let (status, stdout, _) =
        run(&kith, &["professional", "import", "--org", "RXH", "--team", "mh", bad.to_str().unwrap(), "--json"]);
    assert_eq!(status, Some(1));
    let value: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(value["file_problems"][0]["line"], 1);
    assert_eq!(value["rows"], serde_json::json!([]));
    assert_eq!(members(&kith).len(), 3);

    let missing = kith.fails(&["professional", "import", "--org", "RXH", "--team", "mh", "/nonexistent/file.csv"]);
    assert!(missing.contains("reading /nonexistent/file.csv"), "{missing}");

    // The operator's two-step reset (for accounts no coordinator may change alone) says
    // what is wrong when there is nothing to reset.
    let nothing = kith.fails(&["professional", "reset-two-factor", "--email", "pro@example.org"]);
    assert!(nothing.contains("pro@example.org does not use two-step verification"), "{nothing}");
}

on_each_engine!(professional_import);
fn professional_import(database: TestDatabase) {
    scenario(&database);
}
