//! `kith hl7 import`: backfill from files, with a progress line, a summary and a file of
//! the rejected messages with their reasons.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kith_app::{App, Hl7Sender, Operator};
use kith_core::text::OrganisationCode;
use kith_hl7::ack::AckCode;
use kith_hl7::batch::{BatchItem, split_batch};
use serde_json::json;

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

pub fn run(
    app: &App,
    operator: &Operator,
    json: bool,
    organisation: &OrganisationCode,
    files: &[PathBuf],
    rejects_path: &Path,
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
        for (number, item) in items.iter().enumerate() {
            let (code, ack) = match item {
                BatchItem::Message(bytes) => {
                    let ingested = app.ingest_hl7(Hl7Sender::Import { organisation, operator }, bytes)?;
                    if ingested.duplicate {
                        tally.duplicates += 1;
                    }
                    (ingested.code, ingested.ack)
                }
                BatchItem::TooLarge => {
                    let reason = format!("message larger than {} bytes", kith_hl7::mllp::DEFAULT_MAX_FRAME);
                    (AckCode::Reject, app.ack_without_ingesting(None, AckCode::Reject, &reason))
                }
            };
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
            if progress && last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let done = tally.total();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let remaining = (expected as u64).saturating_sub(done) as f64 / rate.max(1.0);
                eprint!("\r{done} / {expected} messages ({rate:.0}/s, about {remaining:.0}s left)   ");
                let _ = std::io::stderr().flush();
            }
        }
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
