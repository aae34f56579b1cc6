//! `kith hl7 import`: backfill from files, with a progress line, a summary and a file of
//! the rejected messages with their reasons.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kith_app::{App, Operator};
use kith_core::text::OrganisationCode;
use kith_hl7::ack::AckCode;
use kith_hl7::batch::{BatchItem, split_batch};
use serde_json::json;

/// Messages committed together by `kith hl7 import`.
const IMPORT_BATCH: usize = 500;
/// Batches handed to [`App::import_hl7`] at once, per worker: it reads the next batch
/// while it applies one, and the progress line moves after each call.
const BATCHES_PER_CALL: usize = 4;

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    rejected: u64,
    errors: u64,
    duplicates: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.accepted + self.rejected + self.errors
    }
}

/// Counts outcomes and writes the refused ones (with MSA-2 and MSA-3) to the rejects text.
fn record(file: &Path, outcomes: &mut Vec<(usize, AckCode, String)>, tally: &mut Tally, rejects: &mut String) {
    for (number, code, ack) in outcomes.drain(..) {
        match code {
            AckCode::Accept => tally.accepted += 1,
            AckCode::Reject => tally.rejected += 1,
            AckCode::Error => tally.errors += 1,
        }
        if code != AckCode::Accept {
            let message = kith_hl7::parse(ack.as_bytes()).message;
            let msa = message.as_ref().and_then(|m| m.segment("MSA"));
            rejects.push_str(&format!(
                "{}:{}\t{}\t{}\t{}\n",
                file.display(),
                number + 1,
                msa.map_or("", |msa| msa.value(2)),
                code.code(),
                msa.map_or("", |msa| msa.value(3))
            ));
        }
    }
}

pub fn run(
    app: &App,
    operator: &Operator,
    json: bool,
    organisation: &OrganisationCode,
    files: &[PathBuf],
    rejects_path: &Path,
    workers: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut batches = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        batches.push((file, split_batch(&bytes, kith_hl7::mllp::DEFAULT_MAX_FRAME)));
    }
    let expected: usize = batches.iter().map(|(_, items)| items.len()).sum();
    let progress = std::io::stderr().is_terminal() && !json;
    let mut tally = Tally::default();
    let mut rejects = String::new();
    let mut last_report = Instant::now();
    for (file, items) in &batches {
        // Messages are committed in batches (plain registrations written together, every
        // other message in its own savepoint): one transaction and one disk flush per batch,
        // not per message; with several workers, that many batches at once (App::import_hl7
        // keeps what must stay in order in order).
        let mut outcomes: Vec<(usize, AckCode, String)> = Vec::with_capacity(items.len());
        let mut pending: Vec<(usize, &[u8])> = Vec::new();
        let flush = |pending: &mut Vec<(usize, &[u8])>,
                     outcomes: &mut Vec<(usize, AckCode, String)>,
                     tally: &mut Tally|
         -> anyhow::Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let messages: Vec<&[u8]> = pending.iter().map(|(_, bytes)| *bytes).collect();
            let ingested = app.import_hl7(organisation, operator, &messages, workers, IMPORT_BATCH)?;
            for ((number, _), ingested) in pending.drain(..).zip(ingested) {
                if ingested.duplicate {
                    tally.duplicates += 1;
                }
                outcomes.push((number, ingested.code, ingested.ack));
            }
            Ok(())
        };
        for (number, item) in items.iter().enumerate() {
            match item {
                BatchItem::Message(bytes) => pending.push((number, bytes)),
                BatchItem::TooLarge => {
                    flush(&mut pending, &mut outcomes, &mut tally)?;
                    let reason = format!("message larger than {} bytes", kith_hl7::mllp::DEFAULT_MAX_FRAME);
                    outcomes.push((number, AckCode::Reject, app.ack_without_ingesting(None, AckCode::Reject, &reason)));
                }
            }
            if pending.len() >= IMPORT_BATCH * workers * BATCHES_PER_CALL {
                flush(&mut pending, &mut outcomes, &mut tally)?;
            }
            record(file, &mut outcomes, &mut tally, &mut rejects);
            if progress && last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let done = tally.total();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let remaining = (expected as u64).saturating_sub(done) as f64 / rate.max(1.0);
                eprint!("\r{done} / {expected} messages ({rate:.0}/s, about {remaining:.0}s left)   ");
                let _ = std::io::stderr().flush();
            }
        }
        flush(&mut pending, &mut outcomes, &mut tally)?;
        record(file, &mut outcomes, &mut tally, &mut rejects);
    }
    if progress {
        eprintln!();
    }
    if !rejects.is_empty() {
        std::fs::write(rejects_path, &rejects).with_context(|| format!("writing {}", rejects_path.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let value = json!({
        "messages": tally.total(),
        "accepted": tally.accepted,
        "rejected": tally.rejected,
        "errors": tally.errors,
        "duplicates": tally.duplicates,
        "seconds": elapsed,
        "rejects_file": (!rejects.is_empty()).then(|| rejects_path.display().to_string()),
    });
    if json {
        println!("{value}");
    } else {
        println!(
            "{} messages in {elapsed:.1}s ({:.0}/s): {} accepted, {} rejected, {} errors ({} were repeats of stored messages){}",
            tally.total(),
            tally.total() as f64 / elapsed.max(1e-9),
            tally.accepted,
            tally.rejected,
            tally.errors,
            tally.duplicates,
            if rejects.is_empty() {
                String::new()
            } else {
                format!("; rejects with reasons in {}", rejects_path.display())
            }
        );
    }
    Ok(())
}
