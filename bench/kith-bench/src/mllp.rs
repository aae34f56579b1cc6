//! `kith-bench mllp-load`: an MLLP client that measures an HL7 v2 listener's ingest rate and
//! ACK latency (bench/hl7/mllp runs it against `kith serve --mllp-listen` and a peer).
//!
//! Each connection is a thread that sends one MLLP-framed message, waits for the whole ACK
//! frame, records the time between the two, and sends the next. Connections take whole
//! patients from a shared cursor over the corpus, so every message is sent at most once in
//! a run and a patient's messages go in corpus order on one connection (the ADT that
//! creates the record before the results about it). The corpus must not repeat a
//! (MSH-3, MSH-4, MSH-10) key: a receiver that deduplicates would only look up its stored
//! ACK. The first seconds (warm-up) are sent but not measured.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use kith_hl7::mllp::{self, FrameEvent, Framer};

use crate::Failure;
use crate::access::group;
use crate::hl7::split_corpus;

pub const USAGE: &str = "\
usage: kith-bench mllp-load --addr HOST:PORT --corpus FILE [options]

  --addr HOST:PORT   the MLLP listener
  --corpus FILE      a corpus written by `kith-bench hl7-corpus` (use --feed for a receiver
                     that stores messages, so that results follow their patient's ADT)
  --name NAME        the name in the RESULT line (default: the address)
  --connections N    concurrent connections, one thread each (default 8)
  --seconds S        measured duration, after the warm-up (default 10; 0: until the corpus
                     or --count runs out)
  --count N          send at most the first N messages of the corpus (default: all)
  --warm-up S        seconds sent but not measured, at the start (default 1)
  --timeout S        give up when an ACK takes longer than this (default 30)

Every message is sent once. Connections take whole patients (messages with the same first
PID-3 identifier) in corpus order. The latency of a message is from just before it is
written to the socket to the moment its whole ACK frame has been read. Prints messages per
second, latency percentiles (nearest rank), MSA-1 counts, and a RESULT line.";

const DEFAULT_CONNECTIONS: usize = 8;
const DEFAULT_SECONDS: f64 = 10.0;
const DEFAULT_WARM_UP: f64 = 1.0;
const DEFAULT_TIMEOUT: f64 = 30.0;
/// How many distinct AR/AE reasons are listed.
const REASONS_SHOWN: usize = 8;

struct Options {
    addr: SocketAddr,
    corpus: PathBuf,
    name: String,
    connections: usize,
    /// The measured duration; `None`: until the messages run out.
    seconds: Option<Duration>,
    count: Option<usize>,
    warm_up: Duration,
    timeout: Duration,
}

fn seconds_value(flag: &str, value: &str, zero_allowed: bool) -> Result<f64, Failure> {
    value.parse::<f64>().ok().filter(|s| s.is_finite() && (*s > 0.0 || (zero_allowed && *s == 0.0))).ok_or_else(|| {
        let what = if zero_allowed { "a number of seconds, 0 or more" } else { "a positive number of seconds" };
        Failure::Usage(format!("{flag} needs {what}, not {value:?}"))
    })
}

fn whole_number(flag: &str, value: &str) -> Result<usize, Failure> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Failure::Usage(format!("{flag} needs a positive whole number, not {value:?}")))
}

fn options(args: &[String]) -> Result<Options, Failure> {
    let (mut addr, mut corpus, mut name, mut count) = (None, None, None, None);
    let mut connections = DEFAULT_CONNECTIONS;
    let mut seconds = DEFAULT_SECONDS;
    let mut warm_up = DEFAULT_WARM_UP;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--addr" => addr = Some(value.clone()),
            "--corpus" => corpus = Some(PathBuf::from(value)),
            "--name" => name = Some(value.clone()),
            "--connections" => connections = whole_number(flag, value)?,
            "--seconds" => seconds = seconds_value(flag, value, true)?,
            "--count" => count = Some(whole_number(flag, value)?),
            "--warm-up" => warm_up = seconds_value(flag, value, true)?,
            "--timeout" => timeout = seconds_value(flag, value, false)?,
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let addr_text = addr.ok_or_else(|| Failure::Usage("--addr HOST:PORT is required".to_owned()))?;
    let addr = addr_text
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Failure::Usage(format!("--addr: {addr_text:?} is not HOST:PORT")))?;
    Ok(Options {
        addr,
        corpus: corpus.ok_or_else(|| Failure::Usage("--corpus FILE is required".to_owned()))?,
        name: name.unwrap_or(addr_text),
        connections,
        seconds: (seconds > 0.0).then(|| Duration::from_secs_f64(seconds)),
        count,
        warm_up: Duration::from_secs_f64(warm_up),
        timeout: Duration::from_secs_f64(timeout),
    })
}

/// A message ready to send: its frame and the control id its ACK must echo.
struct Outgoing {
    frame: Vec<u8>,
    control_id: String,
}

/// The corpus as the connections take it: messages grouped by patient.
struct Work {
    messages: Vec<Outgoing>,
    /// Indexes into `messages`, one list per patient, in corpus order.
    patients: Vec<Vec<usize>>,
    bytes: usize,
}

/// Frames the messages and groups them by patient (the first PID-3 identifier with its
/// assigning authority; a message without one is a group of its own). Refuses a corpus
/// that repeats an (MSH-3, MSH-4, MSH-10) key or has a message without a control id.
fn prepare(messages: &[&[u8]]) -> Result<Work, String> {
    let mut keys = HashSet::with_capacity(messages.len());
    let mut by_patient: HashMap<String, usize> = HashMap::new();
    let mut work = Work { messages: Vec::with_capacity(messages.len()), patients: Vec::new(), bytes: 0 };
    for (index, raw) in messages.iter().enumerate() {
        let parsed = kith_hl7::parse(raw);
        let Some(message) = parsed.message else {
            return Err(format!("message {} does not parse", index + 1));
        };
        let control_id = message.control_id().to_owned();
        if control_id.is_empty() {
            return Err(format!("message {} has no control id (MSH-10)", index + 1));
        }
        let key = (message.header_value(3).to_owned(), message.header_value(4).to_owned(), control_id.clone());
        if !keys.insert(key) {
            return Err(format!(
                "message {} repeats the (MSH-3, MSH-4, MSH-10) key of an earlier message ({control_id}): a \
                 receiver that deduplicates would only look up its ACK",
                index + 1
            ));
        }
        let patient = message.segment("PID").and_then(|pid| pid.repetitions(3).first()).and_then(|identifier| {
            let (id, authority) = (identifier.component(1), identifier.component(4));
            (!id.is_empty()).then(|| format!("{id}^{authority}"))
        });
        let group = match patient {
            Some(patient) => *by_patient.entry(patient).or_insert_with(|| {
                work.patients.push(Vec::new());
                work.patients.len() - 1
            }),
            None => {
                work.patients.push(Vec::new());
                work.patients.len() - 1
            }
        };
        work.patients[group].push(index);
        work.bytes += raw.len();
        work.messages.push(Outgoing { frame: mllp::frame(raw), control_id });
    }
    Ok(work)
}

/// MSA-1 of an acknowledgement.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Code {
    Aa,
    Ar,
    Ae,
    /// Anything else (CA, CE, CR, no MSA, not HL7).
    Other,
}

/// One message sent and acknowledged.
struct Sample {
    sent: Instant,
    latency: Duration,
    code: Code,
}

/// What one connection did.
#[derive(Default)]
struct Connection {
    samples: Vec<Sample>,
    /// ACKs whose MSA-2 is not the message's control id.
    mismatched: usize,
    /// Non-AA answers by MSA-1 and MSA-3.
    reasons: BTreeMap<String, usize>,
}

/// Reads an ACK: its code, and whether MSA-2 echoes `control_id`; the reason when not AA.
fn read_ack(ack: &[u8], control_id: &str) -> (Code, bool, Option<String>) {
    let parsed = kith_hl7::parse(ack);
    let Some(msa) = parsed.message.as_ref().and_then(|message| message.segment("MSA")) else {
        let start: String = String::from_utf8_lossy(&ack[..ack.len().min(60)]).escape_debug().collect();
        return (Code::Other, false, Some(format!("no MSA segment in the answer: {start}")));
    };
    let code = match msa.value(1) {
        "AA" => Code::Aa,
        "AR" => Code::Ar,
        "AE" => Code::Ae,
        _ => Code::Other,
    };
    let reason = (code != Code::Aa).then(|| format!("{} {}", msa.value(1), msa.value(3)));
    (code, msa.value(2) == control_id, reason)
}

/// Sends messages on one connection until the patients or the time run out.
fn connect_and_send(
    options: &Options,
    work: &Work,
    cursor: &AtomicUsize,
    start_line: &Barrier,
    start: &OnceLock<Instant>,
    stop: &AtomicBool,
) -> Result<Connection, String> {
    let connected = TcpStream::connect_timeout(&options.addr, options.timeout)
        .and_then(|stream| {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(options.timeout))?;
            stream.set_write_timeout(Some(options.timeout))?;
            Ok(stream)
        })
        .map_err(|error| format!("connect to {}: {error}", options.addr));
    // Every connection waits at the start line, connected or not, so none is left waiting.
    start_line.wait();
    let mut stream = connected?;
    let start = *start.get_or_init(Instant::now);
    let deadline = options.seconds.map(|seconds| start + options.warm_up + seconds);
    let mut framer = Framer::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut done = Connection::default();
    'patients: loop {
        let patient = cursor.fetch_add(1, Ordering::Relaxed);
        let Some(indexes) = work.patients.get(patient) else { break };
        for &index in indexes {
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                break 'patients;
            }
            let outgoing = &work.messages[index];
            let sent = Instant::now();
            stream.write_all(&outgoing.frame).map_err(|error| format!("send: {error}"))?;
            let ack = loop {
                if let Some(event) = framer.next_event() {
                    break event;
                }
                let read = stream.read(&mut buffer).map_err(|error| {
                    format!(
                        "waiting for the ACK of {} ({} s timeout): {error}",
                        outgoing.control_id,
                        options.timeout.as_secs_f64()
                    )
                })?;
                if read == 0 {
                    return Err(format!("the server closed the connection before the ACK of {}", outgoing.control_id));
                }
                framer.push(&buffer[..read]);
            };
            let latency = sent.elapsed();
            let FrameEvent::Frame(ack) = ack else {
                return Err("an ACK frame over 4 MiB".to_owned());
            };
            let (code, matched, reason) = read_ack(&ack, &outgoing.control_id);
            done.mismatched += usize::from(!matched);
            if let Some(reason) = reason {
                *done.reasons.entry(reason).or_default() += 1;
            }
            done.samples.push(Sample { sent, latency, code });
        }
    }
    Ok(done)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(args: &[String]) -> Result<(), Failure> {
    let options = options(args)?;
    println!(
        "kith-bench mllp-load: {} at {}, {} connection{}",
        options.name,
        options.addr,
        options.connections,
        if options.connections == 1 { "" } else { "s" }
    );
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; figures are meaningless (use bench/hl7/mllp)");
    }
    let file = try_to!(format!("read {}", options.corpus.display()), std::fs::read(&options.corpus));
    let raw = split_corpus(&file).map_err(|error| Failure::Run(format!("{}: {error}", options.corpus.display())))?;
    let limit = options.count.unwrap_or(raw.len()).min(raw.len());
    let work =
        prepare(&raw[..limit]).map_err(|error| Failure::Run(format!("{}: {error}", options.corpus.display())))?;
    if work.messages.is_empty() {
        return Err(Failure::Run(format!("{}: no messages", options.corpus.display())));
    }
    println!(
        "corpus {}: {} messages about {} patients, {} bytes (mean {:.1})",
        options.corpus.display(),
        group(work.messages.len() as u64),
        group(work.patients.len() as u64),
        group(work.bytes as u64),
        work.bytes as f64 / work.messages.len() as f64
    );
    match options.seconds {
        Some(seconds) => println!(
            "{} s warm-up, then {} s measured; one message at a time per connection",
            options.warm_up.as_secs_f64(),
            seconds.as_secs_f64()
        ),
        None => println!(
            "{} s warm-up, then measured until the messages run out; one message at a time per connection",
            options.warm_up.as_secs_f64()
        ),
    }

    let cursor = AtomicUsize::new(0);
    let start_line = Barrier::new(options.connections);
    let start = OnceLock::new();
    let stop = AtomicBool::new(false);
    let outcomes: Vec<Result<Connection, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..options.connections)
            .map(|_| {
                scope.spawn(|| {
                    let outcome = connect_and_send(&options, &work, &cursor, &start_line, &start, &stop);
                    // One connection failing ends the run.
                    if outcome.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or_else(|_| Err("a connection thread panicked".to_owned())))
            .collect()
    });
    let mut connections = Vec::with_capacity(outcomes.len());
    for (number, outcome) in outcomes.into_iter().enumerate() {
        connections.push(outcome.map_err(|error| Failure::Run(format!("connection {}: {error}", number + 1)))?);
    }
    let Some(&start) = start.get() else {
        return Err(Failure::Run("no connection started".to_owned()));
    };
    let measured_from = start + options.warm_up;

    let samples = || connections.iter().flat_map(|connection| &connection.samples);
    let sent = samples().count();
    let end = samples().map(|sample| sample.sent + sample.latency).max().unwrap_or(start);
    let mut latencies: Vec<Duration> =
        samples().filter(|sample| sample.sent >= measured_from).map(|sample| sample.latency).collect();
    latencies.sort_unstable();
    if latencies.is_empty() {
        return Err(Failure::Run(format!(
            "the {sent} messages were all sent during the warm-up: generate a larger corpus"
        )));
    }
    let window = end.saturating_duration_since(measured_from);
    let rate = latencies.len() as f64 / window.as_secs_f64();
    let count = |code: Code| samples().filter(|sample| sample.code == code).count();
    let (aa, ar, ae, other) = (count(Code::Aa), count(Code::Ar), count(Code::Ae), count(Code::Other));
    let mismatched: usize = connections.iter().map(|connection| connection.mismatched).sum();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for connection in &connections {
        for (reason, n) in &connection.reasons {
            *reasons.entry(reason).or_default() += n;
        }
    }
    let per_connection: Vec<usize> = connections.iter().map(|connection| connection.samples.len()).collect();

    println!(
        "  sent {} messages ({} in the warm-up); measured {} in {:.2} s: {} messages/s",
        group(sent as u64),
        group((sent - latencies.len()) as u64),
        group(latencies.len() as u64),
        window.as_secs_f64(),
        group(rate.round() as u64)
    );
    if options.seconds.is_some() && cursor.load(Ordering::Relaxed) >= work.patients.len() {
        println!("  NOTE: the corpus ran out before the time did: generate a larger one for a full run");
    }
    println!(
        "  messages per connection: {}",
        per_connection.iter().map(|n| group(*n as u64)).collect::<Vec<_>>().join(", ")
    );
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!("  ACK latency, send to whole ACK frame (ms, nearest rank):");
    println!(
        "    min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
        millis(latencies[0]),
        millis(percentile(&latencies, 50.0)),
        millis(percentile(&latencies, 90.0)),
        millis(percentile(&latencies, 99.0)),
        millis(latencies[latencies.len() - 1]),
        millis(mean)
    );
    println!(
        "  MSA-1 of all {} ACKs: AA {}, AR {}, AE {}, other {}; MSA-2 {}",
        group(sent as u64),
        group(aa as u64),
        group(ar as u64),
        group(ae as u64),
        group(other as u64),
        if mismatched == 0 {
            "echoed every control id".to_owned()
        } else {
            format!("did not echo the control id {mismatched} times")
        }
    );
    if !reasons.is_empty() {
        let mut reasons: Vec<(&str, usize)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        println!("  answers other than AA, by MSA-1 and MSA-3 ({} kinds):", reasons.len());
        for (reason, n) in reasons.iter().take(REASONS_SHOWN) {
            println!("    {n:>7}  {reason}");
        }
    }
    println!(
        "RESULT name={} connections={} messages={} seconds={:.3} messages_per_second={rate:.1} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} mean_ms={:.3} sent={sent} aa={aa} ar={ar} ae={ae} other={other} mismatched={mismatched}",
        options.name,
        options.connections,
        latencies.len(),
        window.as_secs_f64(),
        millis(percentile(&latencies, 50.0)),
        millis(percentile(&latencies, 90.0)),
        millis(percentile(&latencies, 99.0)),
        millis(latencies[latencies.len() - 1]),
        millis(mean)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_grouped_by_patient_in_order() {
        let corpus: [&[u8]; 4] = [
            b"MSH|^~\\&|PAS|RXH|||1||ADT^A28|1|P|2.4\rPID|1||111^^^NHS^NH~K1^^^RXH-MRN^MR\r",
            b"MSH|^~\\&|PAS|RXH|||1||ADT^A28|2|P|2.4\rPID|1||222^^^NHS^NH\r",
            b"MSH|^~\\&|LAB|RXH|||1||ORU^R01|3|P|2.4\rPID|1||111^^^NHS^NH\r",
            b"MSH|^~\\&|LAB|RXH|||1||ORU^R01|4|P|2.4\r",
        ];
        let work = prepare(&corpus).unwrap();
        assert_eq!(work.patients, [vec![0, 2], vec![1], vec![3]]);
        assert_eq!(work.messages[2].control_id, "3");
        assert_eq!(work.messages[0].frame, mllp::frame(corpus[0]));
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let corpus: [&[u8]; 2] =
            [b"MSH|^~\\&|PAS|RXH|||1||ADT^A28|1|P|2.4\r", b"MSH|^~\\&|PAS|RXH|||1||ADT^A31|1|P|2.4\r"];
        assert!(matches!(prepare(&corpus), Err(error) if error.contains("repeats")));
        let other_application: [&[u8]; 2] =
            [b"MSH|^~\\&|PAS|RXH|||1||ADT^A28|1|P|2.4\r", b"MSH|^~\\&|LAB|RXH|||1||ORU^R01|1|P|2.4\r"];
        assert!(prepare(&other_application).is_ok());
    }

    #[test]
    fn acks_are_read() {
        let ack = b"MSH|^~\\&|KITH|KITH|PAS|RXH|20261125||ACK^A28^ACK|K1|P|2.4\rMSA|AR|C1|patient not found\r";
        assert_eq!(read_ack(ack, "C1"), (Code::Ar, true, Some("AR patient not found".to_owned())));
        let ack = b"MSH|^~\\&|KITH|KITH|PAS|RXH|20261125||ACK^A28^ACK|K1|P|2.4\rMSA|AA|C2|OK\r";
        assert_eq!(read_ack(ack, "C1"), (Code::Aa, false, None));
        assert_eq!(read_ack(b"nonsense", "C1").0, Code::Other);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
    }
}
