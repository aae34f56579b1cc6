//! Helpers shared by the binary's integration tests: run `kith` against a test database,
//! start the server and find where it listens, speak a little HTTP.

#![allow(dead_code)]

pub mod chromium;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kith_test_support::TestDatabase;
use serde_json::Value;

pub const PASSWORD: &str = "a long enough test password";

pub struct Kith<'a> {
    pub database: &'a TestDatabase,
}

impl Kith<'_> {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
        command
            .args(args)
            .env("KITH_DATABASE_URL", &self.database.url_text)
            // The outbox's file sink (no SMTP configured) writes here, not into the crate.
            // The server's sealing key (else serve would make kith-data/secret.key here).
            .env("KITH_SECRET_KEY", "7b".repeat(32))
            .env("KITH_OUTBOX_DIR", std::env::temp_dir().join(format!("kith-test-outbox-{}", std::process::id())))
            .env_remove("KITH_LOG")
            .env("USER", "cli-test");
        command
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kith runs");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed and returns its JSON output.
    pub fn ok(&self, args: &[&str]) -> Value {
        self.ok_with_stdin(args, None)
    }

    pub fn ok_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let output = self.run_with_stdin(&with_json, stdin);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "kith {args:?} failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|error| panic!("kith {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// Runs a command that must fail and returns its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run_with_stdin(args, None);
        assert_eq!(
            output.status.code(),
            Some(1),
            "kith {args:?} should fail: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn add_member(&self, team: &str, email: &str, coordinator: bool) -> Value {
        let mut args = vec![
            "professional",
            "add",
            "--org",
            "RXH",
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
        self.ok_with_stdin(&args, Some(&format!("{PASSWORD}\n")))
    }
}

impl Kith<'_> {
    /// `kith patient add` in organisation RXH, with `extra` options (e.g. `--email`, `--team`).
    pub fn add_patient(&self, given: &str, family: &str, birth_date: &str, nhs_number: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "patient",
            "add",
            "--org",
            "RXH",
            "--family",
            family,
            "--given",
            given,
            "--birth-date",
            birth_date,
            "--nhs-number",
            nhs_number,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

/// Where a started server listens.
pub struct Listening {
    pub http: String,
    pub mllp: Option<String>,
}

/// Starts `kith` with `args` and waits for it to say where it listens.
pub fn start_server(command: &mut Command) -> (Child, Listening) {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("kith starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    let mut mllp = None;
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(address) = line.trim().strip_prefix("kith: MLLP listening on ") {
            mllp = Some(address.to_owned());
        }
        if let Some(address) = line.trim().strip_prefix("kith: listening on http://") {
            let http = address.to_owned();
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, Listening { http, mllp });
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kith did not start listening; last line: {line}");
}

/// Sends one HTTP/1.1 request and returns the status and body.
pub fn http_request(address: &str, request: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

impl Kith<'_> {
    /// `kith team create` in organisation RXH: a team in set-up with these default labels
    /// (`general,mental_health`, or empty for none).
    pub fn create_team(&self, name: &str, alias: &str, labels: &str) -> Value {
        self.ok(&["team", "create", "--org", "RXH", "--name", name, "--alias", alias, "--labels", labels])
    }
}

/// Organisation RXH (Riverside Hospitals) and its team `mh` (Mental Health: general, mental
/// health), in set-up.
pub fn set_up_team(kith: &Kith<'_>) {
    kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    kith.create_team("Mental Health", "mh", "general,mental_health");
}

/// Organisation RXH with assigning authority RXH-MRN, team `mh` (general, mental health) with
/// professional pro@example.org, and an HL7 integration for facility RXH-PAS; returns the
/// integration's HTTP token.
pub fn set_up_feed(kith: &Kith<'_>) -> String {
    set_up_team(kith);
    kith.ok(&["org", "add-authority", "--org", "RXH", "--authority", "RXH-MRN"]);
    kith.add_member("mh", "pro@example.org", false);
    let integration =
        kith.ok(&["integration", "create", "--org", "RXH", "--name", "PAS feed", "--facility", "RXH-PAS"]);
    // MLLP connections from this machine are the PAS feed's.
    kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--allow-address", "127.0.0.1"]);
    integration["token"].as_str().unwrap().to_owned()
}
