//! The crash test: while 8 connections send over MLLP, the server is killed with SIGKILL
//! and restarted; each sender resends what was not acknowledged. Afterwards every message
//! is stored exactly once — none lost, none duplicated — and every acknowledged message was
//! durable when it was acknowledged.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kith_core::patient::NhsNumber;
use kith_hl7::mllp::{self, FrameEvent, Framer};
use kith_test_support::TestDatabase;

const SENDERS: usize = 8;
const MESSAGES_PER_SENDER: usize = 120;

/// Valid NHS numbers in the range reserved for testing.
fn nhs_numbers(count: usize) -> Vec<String> {
    (1u32..)
        .filter_map(|serial| {
            let digits: Vec<u32> = format!("999{serial:06}").bytes().map(|b| u32::from(b - b'0')).collect();
            NhsNumber::check_digit(&digits).map(|check| format!("999{serial:06}{check}"))
        })
        .take(count)
        .collect()
}

/// Sends `messages` in order over MLLP to whatever address is current, reconnecting and
/// resending from the first unacknowledged message whenever the connection fails.
fn sender(
    address: Arc<Mutex<String>>,
    messages: Vec<(String, Vec<u8>)>,
    acknowledged: Arc<AtomicUsize>,
) -> HashSet<String> {
    let mut acked = HashSet::new();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < messages.len() {
        assert!(Instant::now() < deadline, "the sender could not finish");
        let current = address.lock().unwrap().clone();
        let Ok(mut stream) = TcpStream::connect(&current) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut framer = Framer::default();
        let mut buffer = [0u8; 4096];
        'connection: while next < messages.len() {
            let (control, bytes) = &messages[next];
            if stream.write_all(&mllp::frame(bytes)).is_err() {
                break;
            }
            let ack = loop {
                if let Some(FrameEvent::Frame(frame)) = framer.next_event() {
                    break frame;
                }
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break 'connection,
                    Ok(read) => framer.push(&buffer[..read]),
                }
            };
            let message = kith_hl7::parse(&ack).message.expect("an ACK");
            let msa = message.segment("MSA").expect("MSA");
            assert_eq!(msa.value(2), control, "the ACK answers the message sent");
            assert_eq!(msa.value(1), "AA", "{}", String::from_utf8_lossy(&ack));
            acked.insert(control.clone());
            acknowledged.fetch_add(1, Ordering::SeqCst);
            next += 1;
        }
    }
    acked
}

fn scenario(database: &TestDatabase) {
    let kith = Kith { database };
    kith.ok(&["org", "create", "--name", "Riverside Hospitals", "--code", "RXH"]);
    kith.ok(&["integration", "create", "--org", "RXH", "--name", "PAS", "--facility", "RXH-PAS"]);
    kith.ok(&["integration", "bind", "--org", "RXH", "--facility", "RXH-PAS", "--allow-address", "127.0.0.1"]);
    let serve =
        || start_server(&mut kith.command(&["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"]));
    let (mut server, listening) = serve();
    let address = Arc::new(Mutex::new(listening.mllp.unwrap()));
    let acknowledged = Arc::new(AtomicUsize::new(0));

    let numbers = nhs_numbers(SENDERS * MESSAGES_PER_SENDER);
    let mut all_controls = Vec::new();
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let messages: Vec<(String, Vec<u8>)> = (0..MESSAGES_PER_SENDER)
                .map(|i| {
                    let control = format!("C{s}-{i}");
                    let nhs = &numbers[s * MESSAGES_PER_SENDER + i];
                    let text = format!(
                        "MSH|^~\\&|PAS|RXH-PAS|KITH|KITH|20261125||ADT^A28^ADT_A05|{control}|P|2.4\rEVN|A28\rPID|1||{nhs}^^^NHS^NH||Crash^Test{s}x{i}||19800101|U\r"
                    );
                    (control, text.into_bytes())
                })
                .collect();
            all_controls.extend(messages.iter().map(|(control, _)| control.clone()));
            let (address, acknowledged) = (address.clone(), acknowledged.clone());
            std::thread::spawn(move || sender(address, messages, acknowledged))
        })
        .collect();

    // Kill the server mid-stream, twice, and start it again each time.
    for threshold in [SENDERS * MESSAGES_PER_SENDER / 4, SENDERS * MESSAGES_PER_SENDER / 2] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.load(Ordering::SeqCst) < threshold {
            assert!(Instant::now() < deadline, "the senders stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        let (restarted, listening) = serve();
        server = restarted;
        *address.lock().unwrap() = listening.mllp.unwrap();
    }
    let mut acked = HashSet::new();
    for sender in senders {
        acked.extend(sender.join().expect("a sender failed"));
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Every message is stored exactly once, accepted; every patient created once.
    let stored = kith.ok(&["hl7", "messages", "--org", "RXH", "--limit", "10000"]);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in stored["messages"].as_array().unwrap() {
        assert_eq!(message["status"], "accepted", "{message}");
        *counts.entry(message["control_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(acked.len(), all_controls.len(), "every message was acknowledged in the end");
    for control in &all_controls {
        assert_eq!(counts.get(control), Some(&1), "{control} is stored exactly once");
    }
    assert_eq!(counts.len(), all_controls.len(), "nothing else was stored");
    let audit = kith.ok(&["audit", "verify"]);
    assert_eq!(audit["intact"], true);
    let creations = kith.ok(&["audit", "list", "--limit", "100000"])["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] == "patient.create")
        .count();
    assert_eq!(creations, all_controls.len(), "each A28 created its patient once");
}

#[test]
fn killing_the_server_loses_and_duplicates_nothing_on_sqlite() {
    scenario(&TestDatabase::sqlite());
}

#[test]
fn killing_the_server_loses_and_duplicates_nothing_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        scenario(&database);
    }
}
