//! The HL7 feed end to end: a running `kith serve` receives messages from Python's `hl7`
//! package (`mllp_send`, a real MLLP client) and over `POST /hl7/v2`. Valid messages get AA,
//! invalid ones AR with the reason in MSA-3, and the records appear as expected.
//!
//! `mllp_send` comes from `pip install hl7` (scripts/test installs it). Without it the MLLP
//! half is skipped with a note, except under `CI=true`, where that is a failure.

mod common;

use std::process::Command;

use common::*;
use kith_test_support::TestDatabase;
use serde_json::Value;

fn msa(ack: &str) -> (String, String, String) {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap_or_else(|| panic!("not an ACK: {ack:?}"));
    let msa = message.segment("MSA").unwrap();
    (msa.value(1).to_owned(), msa.value(2).to_owned(), msa.value(3).to_owned())
}

fn adt(trigger: &str, control: &str, pid: &str, ztm: &str) -> String {
    // `mllp_send --loose` takes messages that start with MSH|^~\&| and have \n between segments.
    format!(
        "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^{trigger}^ADT_A05|{control}|P|2.4\nEVN|{trigger}\n{pid}\n{ztm}\n"
    )
}

fn mllp_send_available() -> bool {
    match Command::new("mllp_send").arg("--version").output() {
        Ok(output) if output.status.success() => true,
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") => {
            panic!("CI=true but mllp_send (Python package hl7) is not installed: scripts/test installs it")
        }
        _ => {
            eprintln!("note: mllp_send (pip install hl7) is not installed; skipping the MLLP feed test");
            false
        }
    }
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };
    let token = set_up_feed(&kith);
    let (mut server, listening) =
        start_server(&mut kith.command(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]));
    let mllp = listening.mllp.clone().expect("the MLLP listener started");
    let (host, port) = mllp.rsplit_once(':').unwrap();

    if mllp_send_available() {
        let messages = [
            adt("A28", "FEED1", "PID|1||9434765919^^^NHS^NH~K1234567^^^RXH-MRN^MR||Okafor^Ngozi||19710914|F", "ZTM|mh"),
            adt("A31", "FEED2", "PID|1||K1234567^^^RXH-MRN^MR||Okafor-Smith^Ngozi", ""),
            adt("A28", "FEED3", "PID|1||9434765918^^^NHS^NH||Bad^Number||19800101|M", ""),
            adt("A31", "FEED4", "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi", "ZTM|cardiology"),
            adt("A28", "FEED1", "PID|1||9434765919^^^NHS^NH||Again^Repeated||19710914|F", ""),
        ];
        let directory = std::env::temp_dir().join(format!("kith-feed-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("messages.hl7");
        std::fs::write(&file, messages.concat()).unwrap();
        let output =
            Command::new("mllp_send").args(["--loose", "-f"]).arg(&file).args(["-p", port, host]).output().unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
        assert!(output.status.success(), "mllp_send failed: {}", String::from_utf8_lossy(&output.stderr));
        // mllp_send prints each raw response: 0x0B, the ACK, 0x1C 0x0D, then a newline.
        let acks: Vec<String> = output
            .stdout
            .split(|&b| b == kith_hl7::mllp::START)
            .filter(|chunk| !chunk.is_empty())
            .map(|chunk| String::from_utf8_lossy(chunk).trim_end_matches(['\n', '\r', '\u{1c}']).to_owned())
            .collect();
        let results: Vec<(String, String, String)> = acks.iter().map(|ack| msa(ack)).collect();
        assert_eq!(results.len(), 5, "{acks:?}");
        assert_eq!(results[0], ("AA".into(), "FEED1".into(), String::new()));
        assert_eq!(results[1], ("AA".into(), "FEED2".into(), String::new()));
        assert_eq!(results[2].0, "AR");
        assert_eq!(results[2].1, "FEED3");
        assert_eq!(results[2].2, "PID-3: this is not a valid NHS number: its check digit does not match (mistyped?)");
        assert_eq!(results[3], ("AR".into(), "FEED4".into(), "ZTM-1: no team has the alias cardiology in RXH".into()));
        assert_eq!(acks[4], acks[0], "a repeated control id gets the stored ACK again");

        // The records appear: the patient is in the organisation and the team, renamed by A31.
        let messages = kith.ok(&["hl7", "messages", "--org", "RXH"]);
        let statuses: Vec<(&str, &str)> = messages["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["control_id"].as_str().unwrap(), m["status"].as_str().unwrap()))
            .rev()
            .collect();
        assert_eq!(
            statuses,
            [("FEED1", "accepted"), ("FEED2", "accepted"), ("FEED3", "rejected"), ("FEED4", "rejected")]
        );
        let patient =
            messages["messages"].as_array().unwrap().iter().find_map(|m| m["patient"].as_str()).unwrap().to_owned();
        let read = kith.ok(&[
            "record",
            "read",
            "--org",
            "RXH",
            "--team",
            "mh",
            "--as",
            "pro@example.org",
            "--patient",
            &patient,
        ]);
        assert_eq!(read["patient"]["family"], "Okafor-Smith");
        assert_eq!(read["patient"]["nhs_number"], "9434765919");
        let rejected = kith.ok(&["hl7", "messages", "--org", "RXH", "--status", "rejected"]);
        assert_eq!(rejected["messages"].as_array().unwrap().len(), 2);
    }

    // HTTP: the same feed with its bearer token; a wrong token is 401 and stores nothing.
    let body =
        adt("A28", "HTTP1", "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F", "ZTM|mh").replace('\n', "\r");
    let post = |token: &str| {
        let request = format!(
            "POST /hl7/v2 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            listening.http,
            body.len()
        );
        http_request(&listening.http, &request, body.as_bytes())
    };
    let (status, ack) = post(&token);
    assert_eq!(status, 200, "{ack}");
    assert_eq!(msa(&ack), ("AA".into(), "HTTP1".into(), String::new()));
    let (status, _) = post("kith_not_a_token");
    assert_eq!(status, 401);
    let stored = kith.ok(&["hl7", "messages", "--org", "RXH"]);
    assert!(stored["messages"].as_array().unwrap().iter().all(|m| m["control_id"] != Value::Null));

    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn the_feed_over_mllp_and_http_on_sqlite() {
    scenario(&TestDatabase::sqlite());
}

#[test]
fn the_feed_over_mllp_and_http_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        scenario(&database);
    }
}

#[test]
fn import_backfills_from_files_and_reprocess_retries_the_rejected() {
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    let directory = std::env::temp_dir().join(format!("kith-import-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("backfill.hl7");
    let rejects = directory.join("rejects.txt");
    let stranger = "PID|1||4010232137^^^NHS^NH||Stranger^Sam||19800101|M";
    let batch = [
        adt("A28", "B1", "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F", "ZTM|mh"),
        format!(
            "MSH|^~\\&|LAB|RXH-PAS|||20261125||ORU^R01|B2|P|2.4\n{stranger}\nOBR|1||F1|GLU^Glucose|||20261124\nOBX|1|NM|GLU^Glucose||5.1|mmol/L\n"
        ),
        "MSH|^~\\&|EPR|RXH-PAS|||20261125||MDM^T02|B3|P|2.4\nPID|1||9434765919^^^NHS^NH\nTXA|1|DS^Discharge summary|TX|20261120||||||||DOC-1\nOBX|1|TX|||Home with follow-up\n".to_owned(),
    ];
    std::fs::write(&file, batch.join("\n")).unwrap();
    let args = |extra: &[&str]| {
        let mut args = vec!["hl7", "import", "--org", "RXH", "--rejects", rejects.to_str().unwrap()];
        args.extend(extra);
        args.push(file.to_str().unwrap());
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| kith.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let summary = run(args(&[]));
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64(), summary["errors"].as_u64()),
        (Some(2), Some(1), Some(0))
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(rejected.contains("backfill.hl7:2\tB2\tAR\tpatient not found"), "{rejected}");

    // Importing the same file again, with several workers, changes nothing: every message
    // is a stored repeat.
    let again = run(args(&["--workers", "3"]));
    assert_eq!(again["duplicates"].as_u64(), Some(3));
    let zero = kith.run_with_stdin(&args(&["--workers", "0"]).iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--workers"));

    // Once the patient exists, reprocessing the rejected message accepts it.
    std::fs::write(&file, adt("A28", "B4", stranger, "")).unwrap();
    assert_eq!(run(args(&[]))["accepted"].as_u64(), Some(1));
    let reprocessed = kith.ok(&["hl7", "reprocess", "--org", "RXH", "--status", "rejected"]);
    assert_eq!((reprocessed["reprocessed"].as_u64(), reprocessed["accepted"].as_u64()), (Some(1), Some(1)));
    let messages = kith.ok(&["hl7", "messages", "--org", "RXH", "--status", "rejected"]);
    assert!(messages["messages"].as_array().unwrap().is_empty());
    let accepted = kith.ok(&["hl7", "messages", "--org", "RXH", "--status", "accepted"]);
    let b2 = accepted["messages"].as_array().unwrap().iter().find(|m| m["control_id"] == "B2").unwrap().clone();
    assert!(
        kith.fails(&["hl7", "reprocess", "--org", "RXH", b2["id"].as_str().unwrap()]).contains("nothing to reprocess")
    );
    std::fs::remove_dir_all(&directory).unwrap();
}
