//! HL7 v2 over MLLP with TLS: `kith serve --mllp-tls-cert --mllp-tls-key` with a certificate
//! made by openssl; the hl7 package's asyncio MLLP client on a verifying TLS connection
//! (tests/python/mllp_tls_send.py) gets its ACKs; a client that does not trust the
//! certificate, and a client speaking plain MLLP, get nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use kith_test_support::TestDatabase;

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

fn tools_present() -> bool {
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|output| output.status.success());
    let hl7 =
        Command::new("python3").args(["-c", "import hl7.mllp"]).output().is_ok_and(|output| output.status.success());
    if !(openssl && hl7) {
        assert!(!in_ci(), "CI must run the MLLP TLS test: openssl and the Python hl7 package are needed");
        eprintln!("skipping the MLLP TLS test: openssl or the Python hl7 package is missing");
    }
    openssl && hl7
}

#[test]
fn mllp_over_tls() {
    if !tools_present() {
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let (certificate, key) = (directory.path().join("cert.pem"), directory.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));

    let database = TestDatabase::sqlite();
    let kith = Kith { database: &database };
    set_up_feed(&kith);
    let mut serve = kith.command(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]);
    serve.arg("--mllp-tls-cert").arg(&certificate).arg("--mllp-tls-key").arg(&key);
    let (mut server, listening) = start_server(&mut serve);
    let mllp = listening.mllp.clone().expect("the MLLP listener started");
    let (host, port) = mllp.rsplit_once(':').unwrap();

    let send = |cafile: &str, messages: &[&str]| {
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/mllp_tls_send.py"))
            .args([host, port, cafile])
            .args(messages)
            .output()
            .unwrap()
    };
    let a28 = "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101500||ADT^A28^ADT_A05|TLS1|P|2.4\nEVN|A28\n\
               PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F\nZTM|mh";
    let a31 = "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125101600||ADT^A31^ADT_A05|TLS2|P|2.4\nEVN|A31\n\
               PID|1||9434765919^^^NHS^NH||Okafor-Smith^Ngozi";
    let sent = send(certificate.to_str().unwrap(), &[a28, a31]);
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{stdout}{}", String::from_utf8_lossy(&sent.stderr));
    let acks: Vec<&str> = stdout.lines().collect();
    assert_eq!(acks.len(), 2, "{stdout}");
    assert!(acks[0].contains("MSA|AA|TLS1") && acks[1].contains("MSA|AA|TLS2"), "{stdout}");
    let messages = kith.ok(&["hl7", "messages", "--org", "RXH"]);
    assert_eq!(messages["messages"].as_array().unwrap().len(), 2, "both stored: {messages}");

    // A client that does not trust the certificate stops at the handshake.
    let untrusting = send("-", &[a28]);
    assert_eq!(untrusting.status.code(), Some(3), "{}", String::from_utf8_lossy(&untrusting.stderr));

    // Plain MLLP to the TLS port gets no ACK: the bytes are not a TLS handshake.
    let mut plain = TcpStream::connect(&mllp).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(&kith_hl7::mllp::frame(a28.replace('\n', "\r").as_bytes())).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("MSA"), "no ACK over plain TCP: {answer:?}");

    let _ = server.kill();
    let _ = server.wait();
}
