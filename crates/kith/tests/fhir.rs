//! The FHIR API of a running `kith serve`, fed by its HL7 feed and CLI: every response Kith
//! returns — resources, bundles, errors — validates against the FHIR R4B models of the
//! Python package `fhir.resources` (tests/python/fhir_validate.py), on SQLite and
//! PostgreSQL. Also the `kith token` commands.
//!
//! Then schemathesis fuzzes every route of `/openapi.json`.
//!
//! `fhir.resources` and `schemathesis` come from tests/python/requirements.txt (scripts/test
//! installs them).
//! Without it the validation is skipped with a note, except under `CI=true`, where that is a
//! failure.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use kith_test_support::TestDatabase;
use serde_json::{Value, json};

const NHS: &str = "9434765919";

fn fhir_resources_available() -> bool {
    let schemathesis =
        Command::new("schemathesis").arg("--version").output().is_ok_and(|output| output.status.success());
    match Command::new("python3").args(["-c", "import fhir.resources.R4B"]).output() {
        Ok(output) if output.status.success() && schemathesis => true,
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") => {
            panic!(
                "CI=true but the Python packages fhir.resources and schemathesis are not installed: scripts/test installs them"
            )
        }
        _ => {
            eprintln!(
                "note: fhir.resources or schemathesis (pip install -r tests/python/requirements.txt) is missing; skipping"
            );
            false
        }
    }
}

fn get(address: &str, path: &str, token: &str) -> (u16, Value) {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    let (status, body) = http_request(address, &request, b"");
    (status, serde_json::from_str(&body).unwrap_or_else(|error| panic!("{path}: not JSON ({error}): {body}")))
}

fn post_hl7(address: &str, token: &str, message: &str) -> String {
    let request = format!(
        "POST /hl7/v2 HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        message.len()
    );
    let (status, ack) = http_request(address, &request, message.as_bytes());
    assert_eq!(status, 200, "{ack}");
    assert!(ack.contains("MSA|AA|"), "{ack}");
    ack
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };
    let feed_token = set_up_feed(&kith);

    // API tokens: created once per name, listed without secrets, revoked by name.
    let pro = kith.ok(&["token", "create", "--email", "pro@example.org", "--expires-days", "30"]);
    let pro_token = pro["token"].as_str().unwrap().to_owned();
    assert!(pro_token.starts_with("kith_") && pro_token.len() > 60);
    assert!(pro["expires_at"].is_string());
    let refused = kith.fails(&["token", "create", "--email", "pro@example.org"]);
    assert!(refused.contains("already has a live token named api"), "{refused}");
    let spare = kith.ok(&["token", "create", "--email", "pro@example.org", "--name", "spare"]);
    kith.ok(&["token", "revoke", "--email", "pro@example.org", "--name", "spare"]);
    let listed = kith.ok(&["token", "list", "--email", "pro@example.org"]);
    let listed_text = listed.to_string();
    assert!(!listed_text.contains(&pro_token) && !listed_text.contains(spare["token"].as_str().unwrap()));
    let live: Vec<(&str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["live"].as_bool().unwrap()))
        .collect();
    assert_eq!(live, [("spare", false), ("api", true)]);
    assert!(kith.fails(&["token", "create", "--email", "nobody@example.org"]).contains("no account"));
    assert!(
        kith.fails(&["token", "create", "--email", "pro@example.org", "--name", "x", "--expires-days", "0"])
            .contains("expires-days")
    );

    let (mut server, listening) = start_server(&mut kith.command(&["serve", "--listen", "127.0.0.1:0"]));
    let address = listening.http.clone();
    let result = std::panic::catch_unwind(|| {
        // The hospital's feed creates the patient in team mh and files a result with its
        // observations; the operator adds a sexual-health measurement the team may not see.
        post_hl7(
            &address,
            &feed_token,
            &format!(
                "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^A28^ADT_A05|F1|P|2.4\rEVN|A28\rPID|1||{NHS}^^^NHS^NH~K1234567^^^RXH-MRN^MR||Okafor^Ngozi||19710914|F|||1 High St^^Leeds^^LS1 1AA||07700900123\rZTM|mh\r"
            ),
        );
        post_hl7(
            &address,
            &feed_token,
            &format!(
                "MSH|^~\\&|LAB|RXH-PAS|KITH|KITH|20261125103000||ORU^R01^ORU_R01|F2|P|2.4\rPID|1||{NHS}^^^NHS^NH||Okafor^Ngozi||19710914|F\rOBR|1|ORD1|FIL1|FBC^Full blood count^L|||20261125090000\rOBX|1|NM|HB^Haemoglobin^L||132|g/L|115-165|N|||F\rOBX|2|NM|WBC^White cells^L||11.2|10*9/L|4.0-11.0|H|||F\rOBX|3|ST|COM^Comment^L||Slightly raised||||||F\rNTE|1||Repeat in a week\r"
            ),
        );
        for (control, event, body) in [
            (
                "F3",
                "MDM^T02",
                "TXA|1|DS|TX|20261120101500||||||||DOC-1||||||AU\rOBX|1|TX|||Discharged home; review in clinic.\r",
            ),
            (
                "F4",
                "MDM^T02",
                "TXA|1|CP|TX|20261120101500||||||||PLAN-1||||||AU\rOBX|1|TX|||Walk daily; check weight weekly.\r",
            ),
            (
                "F5",
                "SIU^S12",
                "SCH|APT-1||||||FU^Follow-up||30|MIN^Minutes|^^^202612011030\rAIS|1||CARD^Cardiology clinic\r",
            ),
            ("F6", "SIU^S12", "SCH|APT-2||||||FU^Follow-up||||^^^202612081030\r"),
            ("F7", "SIU^S15", "SCH|APT-2||||||FU^Follow-up||||^^^202612081030\r"),
            // Not attended (S26); a letter its sender cancelled (T11) is kept, entered in error.
            ("F8", "SIU^S12", "SCH|APT-3||||||FU^Follow-up||||^^^202612151030\r"),
            ("F9", "SIU^S26", "SCH|APT-3||||||FU^Follow-up||||^^^202612151030\r"),
            ("F10", "MDM^T02", "TXA|1|CN|TX|20261121101500||||||||DOC-2||||||AU\rOBX|1|TX|||Clinic letter.\r"),
            ("F11", "MDM^T11", "TXA|1|CN|TX|20261121111500||||||||DOC-2||||||AU\r"),
        ] {
            post_hl7(
                &address,
                &feed_token,
                &format!(
                    "MSH|^~\\&|EPR|RXH-PAS|KITH|KITH|20261125104000||{event}|{control}|P|2.4\rPID|1||{NHS}^^^NHS^NH||Okafor^Ngozi||19710914|F\r{body}"
                ),
            );
        }
        let (_, found) =
            get(&address, &format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{NHS}"), &pro_token);
        let patient_id =
            found["entry"][0]["resource"]["id"].as_str().expect("the professional finds the patient").to_owned();
        kith.ok(&[
            "entry",
            "add",
            "--org",
            "RXH",
            "--patient",
            &patient_id,
            "--kind",
            "measurement",
            "--label",
            "sexual_health",
            "--title",
            "Screening score",
            "--body",
            "3",
        ]);
        kith.ok_with_stdin(
            &[
                "patient",
                "register",
                "--org",
                "RXH",
                "--nhs-number",
                NHS,
                "--email",
                "ngozi@example.org",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        let own_token =
            kith.ok(&["token", "create", "--email", "ngozi@example.org"])["token"].as_str().unwrap().to_owned();

        let (status, observations) = get(&address, &format!("/fhir/Observation?patient={patient_id}"), &pro_token);
        assert_eq!(status, 200);
        let result = &observations["entry"][0]["resource"];
        assert_eq!(result["code"]["text"], "Full blood count");
        assert_eq!(result["component"][0]["valueQuantity"], json!({ "value": 132, "unit": "g/L" }));
        assert_eq!(result["component"][1]["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(result["component"][2]["valueString"], "Slightly raised");
        assert_eq!(observations["total"], 1, "the sexual-health measurement is hidden from team mh");
        assert!(!observations.to_string().contains("Screening score"));
        let result_id = result["id"].as_str().unwrap().to_owned();
        let (_, documents) = get(&address, &format!("/fhir/DocumentReference?patient={patient_id}"), &pro_token);
        assert_eq!(documents["total"], 2, "{documents}");
        let mut document_statuses: Vec<&str> =
            documents["entry"].as_array().unwrap().iter().map(|e| e["resource"]["status"].as_str().unwrap()).collect();
        document_statuses.sort_unstable();
        assert_eq!(document_statuses, ["current", "entered-in-error"]);
        let (_, plans) = get(&address, &format!("/fhir/CarePlan?patient={patient_id}"), &pro_token);
        assert_eq!(plans["entry"][0]["resource"]["description"], "Walk daily; check weight weekly.");
        let (_, appointments) =
            get(&address, &format!("/fhir/Appointment?patient={patient_id}&_sort=date"), &pro_token);
        let statuses: Vec<&str> = appointments["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["booked", "cancelled", "noshow"]);
        let booked = &appointments["entry"][0]["resource"];
        assert_eq!(booked["start"], "2026-12-01T10:30:00Z");
        // SCH-9/SCH-10: 30 minutes.
        assert_eq!((&booked["end"], &booked["minutesDuration"]), (&json!("2026-12-01T11:00:00Z"), &json!(30)));
        // No duration in the message: the end is the start, and no length is made up.
        let cancelled = &appointments["entry"][1]["resource"];
        assert_eq!(cancelled["end"], cancelled["start"]);
        assert!(cancelled.get("minutesDuration").is_none(), "{cancelled}");
        let (_, own) = get(&address, &format!("/fhir/Observation?patient={patient_id}"), &own_token);
        assert_eq!(own["total"], 2, "the patient sees their whole record");

        let (_, consents) = get(&address, &format!("/fhir/Consent?patient={patient_id}"), &pro_token);
        let consent = consents["entry"][0]["resource"].clone();
        assert_eq!(consent["resourceType"], "Consent");
        let (_, teams) = get(&address, "/fhir/CareTeam", &pro_token);
        let practitioner =
            teams["entry"][0]["resource"]["participant"][0]["member"]["reference"].as_str().unwrap().to_owned();
        if !fhir_resources_available() {
            return;
        }
        let reason = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": "collapsed in clinic" }] });
        let check = |method: &str, path: String, token: Option<&str>, status: u16| json!({ "method": method, "path": path, "token": token, "status": status });
        let mut checks = vec![
            check("GET", "/fhir/metadata".into(), None, 200),
            check("GET", format!("/fhir/Patient/{patient_id}"), Some(&pro_token), 200),
            check(
                "GET",
                format!("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C{NHS}"),
                Some(&pro_token),
                200,
            ),
            check(
                "GET",
                "/fhir/Patient?identifier=https://kith.dev/fhir/Id/RXH/RXH-MRN%7CK1234567".into(),
                Some(&pro_token),
                200,
            ),
            check("GET", "/fhir/Patient?family=okafor&birthdate=1971-09-14".into(), Some(&pro_token), 200),
            check("GET", format!("/fhir/Patient/{patient_id}"), Some(&own_token), 200),
            check("GET", format!("/fhir/Observation?patient={patient_id}"), Some(&pro_token), 200),
            check("GET", format!("/fhir/Observation?patient={patient_id}&_count=1&_sort=date"), Some(&own_token), 200),
            check(
                "GET",
                format!("/fhir/Observation?patient=Patient/{patient_id}&category=exam"),
                Some(&own_token),
                200,
            ),
            check("GET", format!("/fhir/Observation/{result_id}"), Some(&pro_token), 200),
            check("GET", format!("/fhir/DocumentReference?patient={patient_id}"), Some(&pro_token), 200),
            check("GET", format!("/fhir/CarePlan?patient={patient_id}"), Some(&pro_token), 200),
            check("GET", format!("/fhir/Appointment?patient={patient_id}"), Some(&own_token), 200),
            check("GET", format!("/fhir/Consent?patient={patient_id}"), Some(&own_token), 200),
            check("GET", "/fhir/CareTeam".into(), Some(&own_token), 200),
            check("GET", "/fhir/Organization".into(), Some(&pro_token), 200),
            check("GET", format!("/fhir/{practitioner}"), Some(&own_token), 200),
            check(
                "GET",
                format!("/fhir/PractitionerRole?{}", practitioner.replace("Practitioner/", "practitioner=")),
                Some(&own_token),
                200,
            ),
            check("GET", format!("/fhir/AuditEvent?patient={patient_id}"), Some(&own_token), 200),
            check("GET", format!("/fhir/AuditEvent?patient={patient_id}"), Some(&pro_token), 403),
            check("GET", format!("/fhir/Consent/{}", consent["id"].as_str().unwrap()), Some(&pro_token), 200),
            check("GET", format!("/fhir/Patient/{patient_id}"), None, 401),
            check("GET", format!("/fhir/Patient/{patient_id}"), Some("kith_revoked_or_unknown"), 401),
            check("GET", "/fhir/Patient/00000000-0000-7000-8000-000000000000".into(), Some(&pro_token), 404),
            check("GET", "/fhir/Observation?code=1234".into(), Some(&pro_token), 400),
            check("GET", "/fhir/Encounter".into(), Some(&pro_token), 404),
            check("DELETE", format!("/fhir/Patient/{patient_id}"), Some(&pro_token), 405),
            check("POST", format!("/fhir/Patient/{patient_id}/$break-glass"), Some(&own_token), 400),
        ];
        let mut with_body = |method: &str, path: String, token: &str, body: Value, status: u16| {
            let mut value = check(method, path, Some(token), status);
            value["body"] = body;
            checks.push(value);
        };
        with_body("POST", format!("/fhir/Patient/{patient_id}/$break-glass"), &own_token, reason.clone(), 403);
        with_body(
            "POST",
            format!("/fhir/Patient/{patient_id}/$break-glass"),
            &pro_token,
            json!({ "resourceType": "Parameters" }),
            422,
        );
        with_body("POST", format!("/fhir/Patient/{patient_id}/$break-glass"), &pro_token, reason, 200);
        with_body(
            "POST",
            "/fhir/Observation".into(),
            &pro_token,
            json!({
                "resourceType": "Observation",
                "status": "final",
                "code": { "text": "Weight" },
                "subject": { "reference": format!("Patient/{patient_id}") },
                "effectiveDateTime": "2026-11-25T09:15:00Z",
                "valueQuantity": { "value": 71.5, "unit": "kg" },
            }),
            201,
        );
        let team_id = teams["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
        with_body(
            "POST",
            format!("/fhir/CareTeam/{team_id}/$add-patient"),
            &pro_token,
            json!({ "resourceType": "Parameters", "parameter": [
                { "name": "identifier", "valueIdentifier": { "system": "https://kith.dev/fhir/Id/RXH/RXH-MRN", "value": "K1234567" } },
                { "name": "birthdate", "valueDate": "1971-09-14" },
            ] }),
            422, // already in the team (the access-matrix test adds one)
        );
        with_body(
            "PUT",
            format!("/fhir/Consent/{}", consent["id"].as_str().unwrap()),
            &own_token,
            consent.clone(),
            200,
        );
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/fhir_validate.py"))
            .arg(format!("http://{address}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(Value::Array(checks).to_string().as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        println!("{report}{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "FHIR validation failed:\n{report}");
        assert!(report.contains("34 of 34 responses valid"), "{report}");

        // schemathesis fuzzes every route in /openapi.json with a professional's token:
        // no 5xx, and no status, media type or body the document does not describe.
        // `positive_data_acceptance` is left out: a request that fits the schema may still
        // be refused for reasons a schema cannot state (a pattern-valid date that is not in
        // the calendar, search parameters that only work together, an id that names
        // nothing the caller may see), and those refusals are documented 4xx answers.
        let scratch = tempfile::tempdir().unwrap();
        let output = Command::new("schemathesis")
            .current_dir(scratch.path())
            .args(["run", &format!("http://{address}/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {pro_token}")])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "30", "--seed", "20261125", "--no-color", "--generation-database", "none"])
            .args(["--request-timeout", "10", "--workers", "1"])
            .output()
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&output.stdout);
        let summary: Vec<&str> = report.lines().rev().take(25).collect();
        println!("schemathesis:\n{}", summary.into_iter().rev().collect::<Vec<_>>().join("\n"));
        assert!(
            output.status.success(),
            "schemathesis found problems:\n{report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(report.contains("Tested: 25"), "every operation was tested:\n{report}");
    });
    // A graceful stop (SIGTERM) must end cleanly on both backends: closing PostgreSQL
    // connections from inside the async runtime once made it panic on the way out.
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    let status = status.expect("kith serve stops within 20 s of SIGTERM");
    assert!(status.success(), "kith serve did not stop cleanly after SIGTERM: {status}");
}

#[test]
fn fhir_responses_validate_on_sqlite() {
    scenario(&TestDatabase::sqlite());
}

#[test]
fn fhir_responses_validate_on_postgres() {
    let Some(database) = TestDatabase::postgres() else { return };
    scenario(&database);
}
