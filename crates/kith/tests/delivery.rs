//! `kith worker` delivering the outbox for real, on SQLite and PostgreSQL: email to a real
//! SMTP server (`tests/python/smtp_sink.py`, aiosmtpd), SMS to a loopback HTTP endpoint, and
//! an SMTP server that is down (the message waits for its next attempt). `kith outbox list`
//! shows each outcome with the recipient masked; the worker stops cleanly on SIGTERM, and
//! its log names no recipient and no code.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kith_store::OutboxMessage;
use kith_test_support::TestDatabase;
use serde_json::Value;

/// Kills a child process when dropped, so that a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Waits up to 20 s for `done`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// The real SMTP server, storing each message in `directory`; returns it and its port.
fn start_smtp_sink(directory: &Path) -> (Running, u16) {
    let mut sink = Command::new("python3")
        .arg(repository_root().join("tests/python/smtp_sink.py"))
        .arg(directory)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SMTP sink starts (python3 with aiosmtpd)");
    let mut first_line = String::new();
    BufReader::new(sink.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    let port = first_line.trim().parse().unwrap_or_else(|_| panic!("smtp_sink.py printed {first_line:?}"));
    (Running(sink), port)
}

/// A running `kith worker` and everything it has written to standard error.
struct Worker {
    process: Running,
    log: Arc<Mutex<String>>,
}

fn start_worker(kith: &Kith<'_>, files: &Path, environment: &[(&str, String)]) -> Worker {
    let mut command = kith.command(&["worker"]);
    command
        .env_remove("KITH_SMTP_URL")
        .env_remove("KITH_SMS_URL")
        .env("KITH_OUTBOX_DIR", files)
        .env("KITH_PUBLIC_URL", "http://kith.test:8080")
        .env("KITH_MAIL_FROM", "Kith <kith@example.org>")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut process = Running(command.spawn().expect("kith worker starts"));
    let mut stderr = BufReader::new(process.0.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with("kith: outbox worker running") {
            let log = Arc::new(Mutex::new(line.clone()));
            let collected = log.clone();
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = stderr.read_to_string(&mut rest);
                collected.lock().unwrap().push_str(&rest);
            });
            return Worker { process, log };
        }
    }
    panic!("kith worker did not start; last line: {line}");
}

impl Worker {
    /// Sends SIGTERM and checks that the worker exits cleanly; returns its log.
    fn terminate(mut self) -> String {
        let pid = self.process.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "kith worker did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "kith worker exited with {status}: {log}");
        assert!(log.contains("kith: outbox worker stopped"), "{log}");
        log
    }
}

fn outbox(kith: &Kith<'_>) -> Vec<Value> {
    kith.ok(&["outbox", "list"])["messages"].as_array().unwrap().clone()
}

fn enqueue(database: &TestDatabase, channel: &'static str, template: &'static str, recipient: &str, payload: &str) {
    let message = OutboxMessage {
        id: uuid::Uuid::now_v7(),
        channel,
        template: template.to_owned(),
        recipient: recipient.to_owned(),
        payload: payload.to_owned(),
        secret: None,
        created_at: kith_core::Timestamp::from_micros(
            i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros())
                .unwrap(),
        ),
    };
    database.store().write(|tx| tx.enqueue(&message)).unwrap();
}

/// A registered patient with an email, then linked to a team: Kith queues an email saying a
/// care team was added. The worker sends it to a real SMTP server.
fn email_over_smtp(database: &TestDatabase) {
    let kith = Kith { database };
    kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    kith.create_team("Sexual Health", "gum", "general,sexual_health");
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
        "9434765919",
    ]);
    let patient_id = patient["id"].as_str().unwrap();
    kith.ok_with_stdin(
        &[
            "patient",
            "register",
            "--org",
            "RXH",
            "--nhs-number",
            "9434765919",
            "--email",
            "ngozi@example.org",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    kith.ok(&["patient", "link", "--org", "RXH", "--team", "gum", "--patient", patient_id]);
    let queued = outbox(&kith);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["template"], "team_added_patient");
    assert_eq!(queued[0]["status"], "pending");
    assert_eq!(queued[0]["recipient"], "n***@example.org");

    let mail = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (_sink, port) = start_smtp_sink(mail.path());
    let worker = start_worker(&kith, files.path(), &[("KITH_SMTP_URL", format!("smtp://127.0.0.1:{port}"))]);
    let eml_files = || -> Vec<PathBuf> {
        std::fs::read_dir(mail.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
            .collect()
    };
    wait_for("the email at the SMTP server", || !eml_files().is_empty());
    let received = std::fs::read_to_string(&eml_files()[0]).unwrap();
    assert!(received.contains("Subject: A care team was added to your Kith record\r\n"), "{received}");
    assert!(received.contains("To: ngozi@example.org\r\n"), "{received}");
    assert!(received.contains("From: Kith <kith@example.org>\r\n"), "{received}");
    assert!(received.contains("Content-Transfer-Encoding: 7bit"), "{received}");
    assert!(received.contains("\r\nhttp://kith.test:8080/my/sharing\r\n"), "{received}");
    assert!(!received.contains("Sexual Health") && !received.contains(patient_id), "{received}");

    wait_for("the message marked sent", || outbox(&kith)[0]["status"] == "sent");
    let sent = &outbox(&kith)[0];
    assert_eq!((sent["attempts"].as_i64(), sent["last_error"].is_null()), (Some(0), true));
    assert!(sent["sent_at"].is_string());
    let log = worker.terminate();
    assert!(!log.contains("ngozi") && log.contains("outbox message sent"), "{log}");
    // Nothing went to the file sink: email had an SMTP server.
    assert_eq!(std::fs::read_dir(files.path()).map(|entries| entries.count()).unwrap_or(0), 0);
}

/// A loopback HTTP endpoint answering 200 to each request; returns its address and the
/// request bodies it received.
fn start_sms_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let received = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                received.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (address, bodies)
}

/// An SMS goes as a JSON POST; an email, with no SMTP configured, to the file sink.
fn sms_over_http_and_email_to_files(database: &TestDatabase) {
    let kith = Kith { database };
    let patient = format!(r#"{{"patient":"{}"}}"#, uuid::Uuid::now_v7());
    enqueue(database, "sms", "break_glass_patient", "+447700900123", &patient);
    enqueue(database, "email", "consent_changed_patient", "jane.doe@example.org", &patient);
    let (address, bodies) = start_sms_endpoint();
    let files = tempfile::tempdir().unwrap();
    let worker = start_worker(&kith, files.path(), &[("KITH_SMS_URL", format!("http://{address}/v1/sms"))]);
    wait_for("both messages sent", || outbox(&kith).iter().all(|message| message["status"] == "sent"));
    let log = worker.terminate();

    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let sms: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(sms["to"], "+447700900123");
    assert_eq!(
        sms["body"],
        "Kith: someone used emergency access to your record. Sign in to see who and why: http://kith.test:8080/my/access-log"
    );
    let listed = outbox(&kith);
    let sms_row = listed.iter().find(|message| message["channel"] == "sms").unwrap();
    assert_eq!(sms_row["recipient"], "+44…123");

    let written: Vec<PathBuf> = std::fs::read_dir(files.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".eml") && name.contains('T') && name.contains('-'), "{name}");
    let email = std::fs::read_to_string(&written[0]).unwrap();
    assert!(email.contains("To: jane.doe@example.org\r\n") && email.contains("Subject: Your Kith sharing choices"));
    // Outbox files carry invitation codes and reset links: the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&written[0]).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!log.contains("jane.doe") && !log.contains("900123"), "{log}");
}

/// With the SMTP server down the message fails, and waits for its next attempt.
fn smtp_down(database: &TestDatabase) {
    let kith = Kith { database };
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let patient = format!(r#"{{"patient":"{}"}}"#, uuid::Uuid::now_v7());
    enqueue(database, "email", "team_added_patient", "ngozi@example.org", &patient);
    let files = tempfile::tempdir().unwrap();
    let worker = start_worker(&kith, files.path(), &[("KITH_SMTP_URL", format!("smtp://127.0.0.1:{closed_port}"))]);
    wait_for("the message marked failed", || outbox(&kith)[0]["status"] == "failed");
    let log = worker.terminate();
    let failed = &outbox(&kith)[0];
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["last_error"], "SMTP connection failed");
    assert!(failed["next_attempt_at"].as_str().unwrap() > failed["created_at"].as_str().unwrap(), "{failed}");
    assert!(log.contains("outbox message not delivered") && !log.contains("ngozi"), "{log}");
    let counts = kith.ok(&["outbox", "list", "--status", "failed"]);
    assert_eq!(counts["messages"].as_array().unwrap().len(), 1);
    assert_eq!(counts["counts"][0], serde_json::json!({ "channel": "email", "status": "failed", "count": 1 }));
}

#[test]
fn email_over_smtp_on_sqlite() {
    email_over_smtp(&TestDatabase::sqlite());
}

#[test]
fn email_over_smtp_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        email_over_smtp(&database);
    }
}

#[test]
fn sms_over_http_and_email_to_files_on_sqlite() {
    sms_over_http_and_email_to_files(&TestDatabase::sqlite());
}

#[test]
fn sms_over_http_and_email_to_files_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        sms_over_http_and_email_to_files(&database);
    }
}

#[test]
fn smtp_down_on_sqlite() {
    smtp_down(&TestDatabase::sqlite());
}

#[test]
fn smtp_down_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        smtp_down(&database);
    }
}
