//! Who may send on the HL7 feed, end to end with a running `kith serve`:
//!
//! - an MLLP connection is bound to an integration by its source address before its first
//!   message; one bound to none is closed without an ACK, and a re-binding takes effect for
//!   the next connection without a restart (`mllp_send` from Python's `hl7` package);
//! - a message whose MSH-4 is not its integration's facility is `AR` (ERR at MSH-4) and is
//!   kept without its control id, so another integration cannot make the real sender's
//!   message look like a repeat;
//! - an ADT^A31 about a record merged away by ADT^A40 is applied, and the feed goes on;
//! - over TLS, a pinned client certificate binds its integration; no certificate, or one no
//!   integration pinned, gets no ACK (tests/python/mllp_tls_send.py, exit status 4);
//! - `kith hl7 import` holds a conflicting message in the middle of a bulk batch, imports
//!   the rest, lists it in the rejects file and `kith hl7 held`, and `kith hl7 resolve`
//!   rejects it, audited (SQLite and PostgreSQL);
//! - `kith integration rotate-token` and `revoke`: old tokens get 401, a revoked
//!   integration's MLLP connections are refused and an open one is closed.
//!
//! `mllp_send` and the `hl7` package come from `pip install hl7` and openssl from Debian
//! (scripts/test installs them). Without them a test is skipped with a note, except under
//! `CI=true`, where that is a failure.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kith_test_support::TestDatabase;
use serde_json::Value;

// ----- tools ---------------------------------------------------------------------------

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// Whether a tool answers `check`; under CI a missing tool fails the test.
fn tool(what: &str, check: &mut Command) -> bool {
    let present = check
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !present {
        assert!(!in_ci(), "CI=true but {what} is missing: scripts/test installs it");
        eprintln!("note: {what} is missing; skipping this test");
    }
    present
}

fn mllp_send_present() -> bool {
    tool("mllp_send (pip install hl7)", Command::new("mllp_send").arg("--version"))
}

fn tls_tools_present() -> bool {
    tool("openssl", Command::new("openssl").arg("version"))
        && tool("the Python hl7 package", Command::new("python3").args(["-c", "import hl7.mllp"]))
}

/// Runs a command to its end with nothing on its standard input, killed (and the test
/// failed) after `limit`.
fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{command:?} does not start: {error}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A running `kith serve`, stopped when dropped (also when the test fails).
struct Server {
    child: Child,
    listening: Listening,
}

impl Server {
    fn start(command: &mut Command) -> Self {
        let (child, listening) = start_server(command);
        Server { child, listening }
    }

    fn mllp(&self) -> &str {
        self.listening.mllp.as_deref().expect("the MLLP listener started")
    }

    fn http(&self) -> &str {
        &self.listening.http
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- messages ------------------------------------------------------------------------

/// An ADT message from application PAS at `facility`, segments separated by `\n` (as
/// `mllp_send --loose` and the import files take them); `extra` is a last segment, if any.
fn adt(facility: &str, trigger: &str, control: &str, pid: &str, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!("{extra}\n") };
    format!(
        "MSH|^~\\&|PAS|{facility}|KITH|KITH|20261125101500||ADT^{trigger}^ADT_A05|{control}|P|2.4\nEVN|{trigger}\n{pid}\n{extra}"
    )
}

/// ADT^A40: the record MRG-1 names is merged into the one PID-3 names.
fn a40(control: &str, pid3: &str, mrg1: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^A40^ADT_A39|{control}|P|2.4\nEVN|A40\nPID|1||{pid3}\nMRG|{mrg1}\n"
    )
}

/// MSA-1, MSA-2 and MSA-3 of an ACK.
fn msa(ack: &str) -> (String, String, String) {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap_or_else(|| panic!("not an ACK: {ack:?}"));
    let msa = message.segment("MSA").unwrap_or_else(|| panic!("no MSA: {ack:?}"));
    (msa.value(1).to_owned(), msa.value(2).to_owned(), msa.value(3).to_owned())
}

/// ERR-1's segment and field: `MSH-4`.
fn err_location(ack: &str) -> String {
    let message = kith_hl7::parse(ack.as_bytes()).message.unwrap();
    let err = message.segment("ERR").unwrap_or_else(|| panic!("no ERR: {ack:?}"));
    format!("{}-{}", err.component(1, 1), err.component(1, 3))
}

/// Valid NHS numbers (modulus 11), the first nine digits counting up from `from`.
fn nhs_numbers(from: u32) -> impl Iterator<Item = String> {
    (from..).filter_map(|first| {
        let digits: Vec<u32> = format!("{first:09}").bytes().map(|b| u32::from(b - b'0')).collect();
        kith_core::patient::NhsNumber::check_digit(&digits).map(|check| format!("{first:09}{check}"))
    })
}

// ----- senders -------------------------------------------------------------------------

/// Sends `messages` with `mllp_send` (one connection, from 127.0.0.1) and returns its output
/// and the ACKs it printed (none when the server closed the connection without one).
fn mllp_send(mllp: &str, messages: &[String]) -> (Output, Vec<String>) {
    let (host, port) = mllp.rsplit_once(':').unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("messages.hl7");
    std::fs::write(&file, messages.concat()).unwrap();
    let output = run_bounded(
        Command::new("mllp_send").args(["--loose", "-f"]).arg(&file).args(["-p", port, host]),
        Duration::from_secs(30),
    );
    // mllp_send prints each raw response: 0x0B, the ACK, 0x1C 0x0D, then a newline; an empty
    // line when the server closed the connection instead.
    let acks = output
        .stdout
        .split(|&b| b == kith_hl7::mllp::START)
        .map(|chunk| String::from_utf8_lossy(chunk).trim_end_matches(['\n', '\r', '\u{1c}']).to_owned())
        .filter(|chunk| !chunk.trim().is_empty())
        .collect();
    (output, acks)
}

/// Asserts that `mllp_send` got no ACK at all for `messages`: the connection was closed.
fn assert_refused(mllp: &str, messages: &[String]) {
    let (output, acks) = mllp_send(mllp, messages);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(acks.is_empty() && !stdout.contains("MSA"), "no ACK expected: {stdout:?}");
    // Closed cleanly (an empty read: exit 0) or reset (a Python traceback): either way no ACK,
    // and the server was listening (not a refused connection).
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reset = stderr.contains("ConnectionResetError") || stderr.contains("BrokenPipeError");
    assert!(output.status.success() || reset, "mllp_send: {stderr}");
}

/// Sends one message over plain MLLP from the source address `source` (127.0.0.2, …) and
/// returns the ACK, or `None` when the connection was closed without one.
fn send_from(source: &str, mllp: &str, message: &str) -> Option<String> {
    const CLIENT: &str = r#"
import socket, sys
host, port, source, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
try:
    s.sendall(b"\x0b" + message.replace("\n", "\r").encode() + b"\x1c\r")
    data = b""
    while b"\x1c\r" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except ConnectionError:
    data = b""
sys.stdout.write(data.decode())
"#;
    let (host, port) = mllp.rsplit_once(':').unwrap();
    let output =
        run_bounded(Command::new("python3").args(["-c", CLIENT, host, port, source, message]), Duration::from_secs(30));
    assert!(output.status.success(), "python3: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.contains("MSA").then(|| text.trim_matches(['\u{b}', '\u{1c}', '\r', '\n']).to_owned())
}

/// What became of a message sent on an open MLLP connection.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ack(String),
    /// The server closed (or reset) the connection without an ACK.
    Closed,
}

/// Sends one message on an open connection and reads its ACK (10 s at most).
fn exchange(stream: &mut TcpStream, message: &str) -> Answer {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if stream.write_all(&kith_hl7::mllp::frame(message.replace('\n', "\r").as_bytes())).is_err() {
        return Answer::Closed;
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Answer::Closed,
            Ok(read) => {
                received.extend_from_slice(&buffer[..read]);
                if let Some(end) = received.windows(2).position(|pair| pair == [0x1c, 0x0d]) {
                    let ack = String::from_utf8_lossy(&received[..end]);
                    return Answer::Ack(ack.trim_start_matches('\u{b}').to_owned());
                }
            }
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("no ACK within 10 s, and the connection is still open")
            }
            Err(_) => return Answer::Closed,
        }
    }
}

/// `POST /hl7/v2` with a bearer token: the status and the body (the ACK).
fn post_hl7(http: &str, token: &str, message: &str) -> (u16, String) {
    let body = message.replace('\n', "\r");
    let request = format!(
        "POST /hl7/v2 HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    http_request(http, &request, body.as_bytes())
}

// ----- the database through the CLI ----------------------------------------------------

/// The organisation's stored messages, oldest first: (control id, status, patient).
fn stored(kith: &Kith<'_>) -> Vec<(Option<String>, String, Option<String>)> {
    let messages = kith.ok(&["hl7", "messages", "--org", "RXH", "--limit", "10000"]);
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let mut list: Vec<_> = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (text(&m["control_id"]), text(&m["status"]).unwrap(), text(&m["patient"])))
        .collect();
    list.reverse();
    list
}

fn status_of(kith: &Kith<'_>, control: &str) -> (String, Option<String>) {
    let found = stored(kith).into_iter().find(|(id, _, _)| id.as_deref() == Some(control));
    let (_, status, patient) = found.unwrap_or_else(|| panic!("no stored message {control}"));
    (status, patient)
}

fn read_record(kith: &Kith<'_>, patient: &str) -> Value {
    let args = ["record", "read", "--org", "RXH", "--team", "mh", "--as", "pro@example.org", "--patient", patient];
    kith.ok(&args)["patient"].clone()
}

fn serve_mllp(kith: &Kith<'_>) -> Server {
    Server::start(&mut kith.command(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]))
}

const OKAFOR: &str = "PID|1||9434765919^^^NHS^NH~K1234567^^^RXH-MRN^MR||Okafor^Ngozi||19710914|F";

// ----- 1. MLLP: bound by source address ------------------------------------------------

#[test]
fn an_unbound_connection_is_closed_without_an_ack_and_rebinding_needs_no_restart() {
    if !mllp_send_present() {
        return;
    }
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    let server = serve_mllp(&kith);

    // The PAS feed now comes from 127.0.0.2 only: a connection from 127.0.0.1 is no
    // integration's and is closed before its first message is read.
    let bound =
        kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--allow-address", "127.0.0.2"]);
    assert_eq!(bound["allowed_addresses"], serde_json::json!(["127.0.0.2/32"]));
    assert_refused(server.mllp(), &[adt("RXH-PAS", "A28", "UNB1", OKAFOR, "ZTM|mh")]);
    assert!(stored(&kith).is_empty(), "nothing is stored for a refused connection");

    // From 127.0.0.2 the same server takes it: the refusal was the address, read per
    // connection from the database.
    let ack = send_from("127.0.0.2", server.mllp(), &adt("RXH-PAS", "A28", "UNB2", OKAFOR, "ZTM|mh"));
    let ack = ack.expect("an ACK for a connection from the bound address");
    assert_eq!(msa(&ack), ("AA".into(), "UNB2".into(), String::new()));

    // A range that does not hold 127.0.0.1 refuses it too.
    kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--allow-address", "10.1.2.0/24"]);
    assert_refused(server.mllp(), &[adt("RXH-PAS", "A31", "UNB3", "PID|1||K1234567^^^RXH-MRN^MR||Okafor^Ngo", "")]);

    // Bound to 127.0.0.1 again: the running server takes the next connection's messages.
    kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--allow-address", "127.0.0.1"]);
    let (output, acks) = mllp_send(
        server.mllp(),
        &[adt("RXH-PAS", "A31", "UNB4", "PID|1||K1234567^^^RXH-MRN^MR||Okafor-Smith^Ngozi||19710914|F", "")],
    );
    assert!(output.status.success(), "mllp_send: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(msa(&acks[0]), ("AA".into(), "UNB4".into(), String::new()));
    let statuses: Vec<(Option<String>, String)> = stored(&kith).into_iter().map(|(c, s, _)| (c, s)).collect();
    assert_eq!(statuses, [(Some("UNB2".into()), "accepted".into()), (Some("UNB4".into()), "accepted".into())]);
    let (_, patient) = status_of(&kith, "UNB4");
    assert_eq!(read_record(&kith, &patient.unwrap())["family"], "Okafor-Smith");
}

// ----- 1b. MSH-4 must be the integration's facility ------------------------------------

#[test]
fn msh4_must_be_the_integration_s_facility_and_cannot_spoil_another_s_control_ids() {
    if !mllp_send_present() {
        return;
    }
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    let pas_token = set_up_feed(&kith);
    let lab = kith.ok(&["integration", "create", "--org", "RXH", "--name", "Lab feed", "--facility", "RXH-LAB"]);
    let lab_token = lab["token"].as_str().unwrap().to_owned();
    // An address names one integration: the lab cannot claim the PAS's.
    let clash =
        kith.fails(&["integration", "bind", "--org", "RXH", "--facility", "RXH-LAB", "--allow-address", "127.0.0.0/8"]);
    assert!(clash.contains("overlaps"), "{clash}");
    let server = serve_mllp(&kith);

    // The lab's token, a message claiming to be the PAS's with the PAS's next control id.
    let spoof = adt("RXH-PAS", "A28", "X1", "PID|1||9434765919^^^NHS^NH||Impostor^Ivan||19600101|M", "ZTM|mh");
    let (status, ack) = post_hl7(server.http(), &lab_token, &spoof);
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        msa(&ack),
        ("AR".into(), "X1".into(), "MSH-4: this integration sends as RXH-LAB, not as RXH-PAS".into())
    );
    assert_eq!(err_location(&ack), "MSH-4");

    // The same over MLLP: the PAS's connection claiming to be the lab.
    let (_, acks) = mllp_send(server.mllp(), &[adt("RXH-LAB", "A28", "Y1", OKAFOR, "ZTM|mh")]);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        msa(&acks[0]),
        ("AR".into(), "Y1".into(), "MSH-4: this integration sends as RXH-PAS, not as RXH-LAB".into())
    );
    assert_eq!(err_location(&acks[0]), "MSH-4");

    // The real PAS's X1 is not a repeat of the spoof: applied, AA.
    let (output, acks) = mllp_send(server.mllp(), &[adt("RXH-PAS", "A28", "X1", OKAFOR, "ZTM|mh")]);
    assert!(output.status.success(), "mllp_send: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(msa(&acks[0]), ("AA".into(), "X1".into(), String::new()));
    // And the lab's own Y1 is not a repeat of the PAS's misattributed one.
    let lab_a31 = adt("RXH-LAB", "A31", "Y1", "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F", "");
    let (status, ack) = post_hl7(server.http(), &lab_token, &lab_a31);
    assert_eq!(status, 200, "{ack}");
    assert_eq!(msa(&ack), ("AA".into(), "Y1".into(), String::new()));
    // The PAS's token with its own facility still works over HTTP.
    let (status, ack) = post_hl7(server.http(), &pas_token, &adt("RXH-PAS", "A31", "X2", OKAFOR, ""));
    assert_eq!((status, msa(&ack).0), (200, "AA".to_owned()), "{ack}");

    // The spoofs are kept, rejected and without a control id; the record is Okafor's.
    let list = stored(&kith);
    let statuses: Vec<(Option<&str>, &str)> = list.iter().map(|(c, s, _)| (c.as_deref(), s.as_str())).collect();
    assert_eq!(
        statuses,
        [
            (None, "rejected"),
            (None, "rejected"),
            (Some("X1"), "accepted"),
            (Some("Y1"), "accepted"),
            (Some("X2"), "accepted")
        ]
    );
    let patient = list[2].2.clone().expect("X1 names its record");
    let record = read_record(&kith, &patient);
    assert_eq!((record["family"].as_str(), record["nhs_number"].as_str()), (Some("Okafor"), Some("9434765919")));
}

// ----- 1c. A31 about a merged-away record ----------------------------------------------

#[test]
fn an_a31_about_a_merged_away_record_is_applied_and_the_feed_goes_on() {
    if !mllp_send_present() {
        return;
    }
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    let server = serve_mllp(&kith);

    let messages = [
        adt("RXH-PAS", "A28", "MRG1", OKAFOR, "ZTM|mh"),
        // The same person registered again under a second hospital number only.
        adt("RXH-PAS", "A28", "MRG2", "PID|1||K7654321^^^RXH-MRN^MR||Okafor^N||19710914|F", ""),
        // K7654321's record merges into the NHS number's.
        a40("MRG3", "9434765919^^^NHS^NH", "K7654321^^^RXH-MRN^MR"),
        // About the merged-away hospital number: it reaches the survivor.
        adt("RXH-PAS", "A31", "MRG4", "PID|1||K7654321^^^RXH-MRN^MR||Okafor-Smith^Ngozi||19710914|F", ""),
        // And the next message is applied as usual.
        adt("RXH-PAS", "A31", "MRG5", "PID|1||K1234567^^^RXH-MRN^MR||Okafor-Smith^Ngozika||19710914|F", ""),
    ];
    let (output, acks) = mllp_send(server.mllp(), &messages);
    assert!(output.status.success(), "mllp_send: {}", String::from_utf8_lossy(&output.stderr));
    let answers: Vec<(String, String, String)> = acks.iter().map(|ack| msa(ack)).collect();
    assert_eq!(answers.len(), 5, "{acks:?}");
    for (answer, control) in answers.iter().zip(["MRG1", "MRG2", "MRG3", "MRG4", "MRG5"]) {
        assert_eq!((answer.0.as_str(), answer.1.as_str()), ("AA", control), "{acks:?}");
    }
    assert!(answers[3].2.is_empty() && answers[4].2.is_empty(), "applied without a warning: {answers:?}");

    let survivor = status_of(&kith, "MRG1").1.unwrap();
    let duplicate = status_of(&kith, "MRG2").1.unwrap();
    assert_ne!(survivor, duplicate);
    for control in ["MRG3", "MRG4", "MRG5"] {
        assert_eq!(status_of(&kith, control), ("accepted".to_owned(), Some(survivor.clone())), "{control}");
    }
    let record = read_record(&kith, &survivor);
    assert_eq!(
        (record["family"].as_str(), record["given"].as_str(), record["nhs_number"].as_str()),
        (Some("Okafor-Smith"), Some("Ngozika"), Some("9434765919"))
    );
}

// ----- 2. TLS client certificates ------------------------------------------------------

/// A self-signed EC certificate and its key, made by openssl.
fn certificate(directory: &Path, name: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
    let (certificate, key) = (directory.join(format!("{name}.pem")), directory.join(format!("{name}-key.pem")));
    let mut openssl = Command::new("openssl");
    openssl
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={name}")]);
    for extension in extensions {
        openssl.args(["-addext", extension]);
    }
    let made = run_bounded(openssl.arg("-keyout").arg(&key).arg("-out").arg(&certificate), Duration::from_secs(30));
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    (certificate, key)
}

#[test]
fn a_pinned_tls_client_certificate_binds_its_integration_and_nothing_else_does() {
    if !tls_tools_present() {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let (server_cert, server_key) =
        certificate(directory.path(), "localhost", &["subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    let (lab_cert, lab_key) = certificate(directory.path(), "rxh-lab", &[]);
    let (other_cert, other_key) = certificate(directory.path(), "someone-else", &[]);

    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    kith.ok(&["integration", "create", "--org", "RXH", "--name", "Lab feed", "--facility", "RXH-LAB"]);
    // No address admits a connection, so only a certificate can bind one.
    kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--no-addresses"]);
    let mut serve = kith.command(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]);
    serve.arg("--mllp-tls-cert").arg(&server_cert).arg("--mllp-tls-key").arg(&server_key);
    // With nothing bound, an authenticated MLLP listener refuses to start.
    let refused = run_bounded(&mut serve, Duration::from_secs(30));
    assert!(!refused.status.success(), "serve started with no MLLP binding");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("MLLP needs to know who is sending"), "{stderr}");

    let pinned = ["integration", "bind", "--org", "RXH", "--facility", "RXH-LAB", "--client-cert"];
    let pinned = kith.ok(&[&pinned[..], &[lab_cert.to_str().unwrap()]].concat());
    assert_eq!(
        (pinned["client_certificate"].as_bool(), pinned["allowed_addresses"].as_array().map(Vec::len)),
        (Some(true), Some(0))
    );
    let listed = kith.ok(&["integration", "list", "--org", "RXH"]);
    let pas = listed["integrations"].as_array().unwrap().iter().find(|i| i["facility"] == "RXH-PAS").unwrap().clone();
    assert_eq!(
        (pas["allowed_addresses"].as_array().map(Vec::len), pas["client_certificate"].as_bool()),
        (Some(0), Some(false))
    );

    let server = Server::start(&mut serve);
    let (host, port) = server.mllp().rsplit_once(':').unwrap();
    let send = |client: Option<(&Path, &Path)>, messages: &[String]| {
        let mut python = Command::new("python3");
        python
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/mllp_tls_send.py"))
            .args([host, port, server_cert.to_str().unwrap()])
            .args(messages)
            .env_remove("KITH_TEST_CLIENT_CERT")
            .env_remove("KITH_TEST_CLIENT_KEY");
        if let Some((certificate, key)) = client {
            python.env("KITH_TEST_CLIENT_CERT", certificate).env("KITH_TEST_CLIENT_KEY", key);
        }
        run_bounded(&mut python, Duration::from_secs(40))
    };
    let lab_message = |trigger: &str, control: &str, pid: &str| adt("RXH-LAB", trigger, control, pid, "");

    // The pinned certificate: the lab's connection, its messages acknowledged.
    let messages = [
        lab_message("A28", "LAB1", "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F"),
        lab_message("A31", "LAB2", "PID|1||9434765919^^^NHS^NH||Okafor-Smith^Ngozi||19710914|F"),
        // It is the lab's connection: it cannot send as the PAS.
        adt("RXH-PAS", "A31", "LAB3", "PID|1||9434765919^^^NHS^NH||Other^Name||19710914|F", ""),
    ];
    let sent = send(Some((&lab_cert, &lab_key)), &messages);
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert_eq!(sent.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&sent.stderr));
    let acks: Vec<&str> = stdout.lines().collect();
    assert_eq!(acks.len(), 3, "{stdout}");
    assert!(acks[0].contains("MSA|AA|LAB1") && acks[1].contains("MSA|AA|LAB2"), "{stdout}");
    assert!(acks[2].contains("MSA|AR|LAB3|MSH-4: this integration sends as RXH-LAB, not as RXH-PAS"), "{stdout}");

    // No certificate, or one no integration pinned: closed after the handshake, no ACK.
    for (who, client) in [("no certificate", None), ("an unpinned certificate", Some((&other_cert, &other_key)))] {
        let refused = send(client.map(|(c, k)| (c.as_path(), k.as_path())), &[lab_message("A31", "LAB4", OKAFOR)]);
        let stdout = String::from_utf8_lossy(&refused.stdout);
        assert_eq!(refused.status.code(), Some(4), "{who}: {stdout}{}", String::from_utf8_lossy(&refused.stderr));
        assert!(!stdout.contains("MSA"), "{who}: {stdout}");
    }
    let list = stored(&kith);
    let statuses: Vec<(Option<&str>, &str)> = list.iter().map(|(c, s, _)| (c.as_deref(), s.as_str())).collect();
    assert_eq!(statuses, [(Some("LAB1"), "accepted"), (Some("LAB2"), "accepted"), (None, "rejected")]);
}

// ----- 3. import: a conflict in the middle of a bulk batch -----------------------------

fn import_holds_a_conflict_and_imports_the_rest(database: &TestDatabase) {
    let kith = Kith { database };
    set_up_feed(&kith);
    let directory = tempfile::tempdir().unwrap();
    let rejects = directory.path().join("rejects.txt");
    let import = |file: &Path| {
        kith.ok(&["hl7", "import", "--org", "RXH", "--rejects", rejects.to_str().unwrap(), file.to_str().unwrap()])
    };

    // Okafor: NHS number 9434765919, hospital number K1234567.
    let first = directory.path().join("first.hl7");
    std::fs::write(&first, adt("RXH-PAS", "A28", "FIRST", OKAFOR, "ZTM|mh")).unwrap();
    assert_eq!(import(&first)["accepted"].as_u64(), Some(1));
    let okafor = status_of(&kith, "FIRST").1.unwrap();

    // 50 new registrations (plain: no team, no email, so they are written in bulk), an A31
    // whose hospital number is Okafor's but whose NHS number, name and birth date are
    // someone else's, then 50 more registrations: one batch of 101.
    let mut numbers = nhs_numbers(600_000_000);
    let registration = |i: usize, nhs: &str| {
        let given = format!("Sam{}{}", char::from(b'a' + (i / 26) as u8), char::from(b'a' + (i % 26) as u8));
        let pid = format!(
            "PID|1||{nhs}^^^NHS^NH~B{i:04}^^^RXH-MRN^MR||Bulk^{given}||1980{:02}{:02}|F",
            1 + i % 12,
            1 + i % 28
        );
        adt("RXH-PAS", "A28", &format!("BULK{i:03}"), &pid, "")
    };
    let mut messages: Vec<String> = (0..50).map(|i| registration(i, &numbers.next().unwrap())).collect();
    let other_person = nhs_numbers(700_000_000).next().unwrap();
    messages.push(adt(
        "RXH-PAS",
        "A31",
        "CONFLICT1",
        &format!("PID|1||K1234567^^^RXH-MRN^MR~{other_person}^^^NHS^NH||Adeyemi^Tunde||19850203|M"),
        "",
    ));
    messages.extend((50..100).map(|i| registration(i, &numbers.next().unwrap())));
    let file = directory.path().join("backfill.hl7");
    std::fs::write(&file, messages.join("\n")).unwrap();

    // Exit 0 (kith.ok checks it), every other message imported, the conflict held.
    let summary = import(&file);
    let count = |key: &str| summary[key].as_u64();
    assert_eq!(
        [count("messages"), count("accepted"), count("held"), count("rejected"), count("errors"), count("duplicates")],
        [Some(101), Some(100), Some(1), Some(0), Some(0), Some(0)],
        "{summary}"
    );
    assert_eq!(summary["rejects_file"].as_str(), rejects.to_str());
    let listed = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "only the held message is listed: {listed}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[..3], [format!("{}:51", file.display()).as_str(), "CONFLICT1", "held"], "{listed}");
    assert!(fields[3].contains("PID-3: the local identifier's record has another NHS number"), "{listed}");
    let list = stored(&kith);
    let registered: Vec<_> =
        list.iter().filter(|(c, _, _)| c.as_deref().is_some_and(|c| c.starts_with("BULK"))).collect();
    assert_eq!(registered.len(), 100);
    assert!(registered.iter().all(|(_, status, _)| status == "accepted"), "{registered:?}");
    let mut patients: Vec<&str> = registered.iter().map(|(_, _, p)| p.as_deref().expect("a new record")).collect();
    patients.sort_unstable();
    patients.dedup();
    assert_eq!(patients.len(), 100, "a record each");
    assert!(!patients.contains(&okafor.as_str()));

    // Okafor's record is untouched, and the data-quality staff see the held message.
    let record = read_record(&kith, &okafor);
    assert_eq!(
        (record["family"].as_str(), record["birth_date"].as_str(), record["nhs_number"].as_str()),
        (Some("Okafor"), Some("1971-09-14"), Some("9434765919"))
    );
    let held = kith.ok(&["hl7", "held", "--org", "RXH"]);
    let held = held["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    let message = &held[0];
    assert_eq!(
        (message["control_id"].as_str(), message["status"].as_str(), message["conflict"].as_str()),
        (Some("CONFLICT1"), Some("held"), Some("nhs_number_differs"))
    );
    assert_eq!(message["records"], serde_json::json!([okafor]));
    assert!(message["resolutions"].as_array().unwrap().contains(&Value::from("reject")), "{message}");

    let id = message["id"].as_str().unwrap().to_owned();
    let reason = "Wrong patient on the PAS";
    let resolved = kith.ok(&["hl7", "resolve", "--org", "RXH", &id, "--reject", "--reason", reason]);
    assert_eq!(resolved["status"], "rejected", "{resolved}");
    assert!(resolved["resolution"].as_str().is_some_and(|r| r.contains(reason)), "{resolved}");
    assert!(kith.ok(&["hl7", "held", "--org", "RXH"])["held"].as_array().unwrap().is_empty());
    assert_eq!(status_of(&kith, "CONFLICT1").0, "rejected");
    let audit = kith.ok(&["audit", "list", "--limit", "100000"]);
    let resolve = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "hl7.resolve");
    let resolve = resolve.unwrap_or_else(|| panic!("no hl7.resolve audit event"));
    assert_eq!(resolve["subject"].as_str(), Some(id.as_str()), "{resolve}");
    assert!(resolve["reason"].as_str().is_some_and(|r| r.contains(reason)), "{resolve}");
    // Resolved once: a second resolution is refused.
    let again = kith.fails(&["hl7", "resolve", "--org", "RXH", &id, "--reject", "--reason", reason]);
    assert!(again.contains("not held"), "{again}");

    // The two other ways, through the CLI: the same conflict sent twice more.
    let resend = |control: &str| {
        let file = directory.path().join(format!("{control}.hl7"));
        let pid = format!("PID|1||K1234567^^^RXH-MRN^MR~{other_person}^^^NHS^NH||Adeyemi^Tunde||19850203|M");
        std::fs::write(&file, adt("RXH-PAS", "A31", control, &pid, "")).unwrap();
        assert_eq!(import(&file)["held"].as_u64(), Some(1));
        let held = kith.ok(&["hl7", "held", "--org", "RXH"]);
        held["held"].as_array().unwrap().iter().find(|m| m["control_id"] == control).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Without the conflicting field: the NHS number, then the name and birth date that
    // disagree, are left out; the record keeps them.
    let without = resend("CONFLICT2");
    let applied = kith.ok(&["hl7", "resolve", "--org", "RXH", &without, "--apply-without-conflicting-field"]);
    assert_eq!(applied["status"], "accepted", "{applied}");
    let record = read_record(&kith, &okafor);
    assert_eq!(
        (record["family"].as_str(), record["birth_date"].as_str(), record["nhs_number"].as_str()),
        (Some("Okafor"), Some("1971-09-14"), Some("9434765919"))
    );
    // Applied to a chosen record: only one of the message's records may be chosen; the
    // person confirmed it, so the details follow — but never the NHS number.
    let chosen = resend("CONFLICT3");
    let someone = &patients[0];
    let refused = kith.fails(&["hl7", "resolve", "--org", "RXH", &chosen, "--apply-to", someone]);
    assert!(refused.contains("is not one of the held message's records"), "{refused}");
    let applied = kith.ok(&["hl7", "resolve", "--org", "RXH", &chosen, "--apply-to", &okafor]);
    assert_eq!(applied["status"], "accepted", "{applied}");
    let record = read_record(&kith, &okafor);
    assert_eq!(
        (record["family"].as_str(), record["birth_date"].as_str(), record["nhs_number"].as_str()),
        (Some("Adeyemi"), Some("1985-02-03"), Some("9434765919"))
    );
    let audit = kith.ok(&["audit", "list", "--limit", "100000"]);
    let resolutions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "hl7.resolve")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(resolutions.len(), 3, "{resolutions:?}");
    assert!(resolutions.iter().any(|r| r.starts_with("applied without the conflicting field")), "{resolutions:?}");
    assert!(resolutions.iter().any(|r| r.starts_with(&format!("applied to record {okafor}"))), "{resolutions:?}");
}

#[test]
fn import_holds_a_conflict_in_a_bulk_batch_and_imports_the_rest_on_sqlite() {
    import_holds_a_conflict_and_imports_the_rest(&TestDatabase::sqlite());
}

#[test]
fn import_holds_a_conflict_in_a_bulk_batch_and_imports_the_rest_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        import_holds_a_conflict_and_imports_the_rest(&database);
    }
}

// ----- 4. rotating and revoking --------------------------------------------------------

#[test]
fn rotated_and_revoked_tokens_get_401_and_a_revoked_integration_s_connections_are_closed() {
    if !mllp_send_present() {
        return;
    }
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    let old_token = set_up_feed(&kith);
    let server = serve_mllp(&kith);
    let message = |control: &str| adt("RXH-PAS", "A31", control, OKAFOR, "ZTM|mh");

    let (status, ack) = post_hl7(server.http(), &old_token, &message("TOK1"));
    assert_eq!((status, msa(&ack).0), (200, "AA".to_owned()), "{ack}");
    let rotated = kith.ok(&["integration", "rotate-token", "--org", "RXH", "--facility", "RXH-PAS"]);
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, old_token);
    assert_eq!(post_hl7(server.http(), &old_token, &message("TOK2")).0, 401, "the old token stops at once");
    let (status, ack) = post_hl7(server.http(), &new_token, &message("TOK3"));
    assert_eq!((status, msa(&ack)), (200, ("AA".into(), "TOK3".into(), String::new())), "{ack}");

    // An MLLP connection opened before the revocation.
    let mut open = TcpStream::connect(server.mllp()).unwrap();
    match exchange(&mut open, &message("TOK4")) {
        Answer::Ack(ack) => assert_eq!(msa(&ack).0, "AA", "{ack}"),
        Answer::Closed => panic!("the bound connection was closed"),
    }
    // The connection was bound before its first ACK: from here on, more than 5 s is more
    // than 5 s since it was bound.
    let acknowledged = Instant::now();

    let revoked = kith.ok(&["integration", "revoke", "--org", "RXH", "--facility", "RXH-PAS"]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(post_hl7(server.http(), &new_token, &message("TOK5")).0, 401, "a revoked integration's token");
    assert_refused(server.mllp(), &[message("TOK6")]);
    // The open connection's binding is checked again (every 5 s) before its next message is
    // applied: it is closed without an ACK.
    std::thread::sleep(Duration::from_millis(5_300).saturating_sub(acknowledged.elapsed()));
    assert_eq!(exchange(&mut open, &message("TOK7")), Answer::Closed);

    let controls: Vec<Option<String>> = stored(&kith).into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(
        controls,
        [Some("TOK1".into()), Some("TOK3".into()), Some("TOK4".into())],
        "nothing after the revocation"
    );
    let refused = kith.fails(&["integration", "rotate-token", "--org", "RXH", "--facility", "RXH-PAS"]);
    assert!(refused.contains("revoked"), "{refused}");
    let listed = kith.ok(&["integration", "list", "--org", "RXH"]);
    assert!(listed["integrations"][0]["revoked_at"].is_string(), "{listed}");
}

// ----- 5. MLLP: slow senders and many connections from one address ----------------------

/// Whether the server closes `stream` within `limit` (a read gives end of file or an error).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    while started.elapsed() < limit {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_trickling_sender_is_closed_and_one_address_holds_a_bounded_number_of_connections() {
    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    let server = Server::start(&mut kith.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mllp-listen",
        "127.0.0.1:0",
        "--mllp-idle-timeout",
        "1s",
        "--mllp-max-per-address",
        "2",
    ]));
    // A client that starts a frame and then sends a byte every 200 ms: each read comes well
    // within the idle timeout, but the message never completes. Closed after about 1 s.
    let mut trickle = TcpStream::connect(server.mllp()).unwrap();
    trickle.write_all(b"\x0bMSH|^~\\&|").unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if trickle.write_all(b"x").is_err() || closed_within(&mut trickle, Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling sender holds its slot for ever");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");

    // Two connections from 127.0.0.1 are served; a third is closed at once.
    let mut first = TcpStream::connect(server.mllp()).unwrap();
    let _second = TcpStream::connect(server.mllp()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(server.mllp()).unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)), "a third connection from one address is refused");
    let message = adt("RXH-PAS", "A28", "SLOT1", OKAFOR, "").replace('\n', "\r");
    first.write_all(&kith_hl7::mllp::frame(message.as_bytes())).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = vec![0u8; 4096];
    let read = first.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).contains("MSA|AA|SLOT1"), "the first two are served");
}
