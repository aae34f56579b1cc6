//! `kith hl7 import`: backfill from files, with a progress bar on a terminal, a summary and a
//! file of the rejected and held messages with their reasons. Every message gets its own
//! outcome: the import stops only when the files cannot be read or the database cannot be
//! reached, never because of one message.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kith_app::{App, Ingested, Operator};
use kith_core::model::Hl7MessageStatus;
use kith_core::text::OrganisationCode;
use kith_hl7::ack::AckCode;
use kith_hl7::batch::{BatchItem, split_batch};
use serde_json::json;

/// Messages committed together by `kith hl7 import`.
const IMPORT_BATCH: usize = 500;
/// Batches handed to [`App::import_hl7`] at once, per worker: it reads the next batch
/// while it applies one, and the progress bar moves after each call.
const BATCHES_PER_CALL: usize = 4;

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    /// Accepted with something not applied (an email another record has, …).
    with_notes: u64,
    rejected: u64,
    held: u64,
    /// Not stored at all (an `AE`): a frame too large to keep, or a store failure.
    errors: u64,
    duplicates: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.accepted + self.rejected + self.held + self.errors
    }
}

/// One message's outcome, as the summary counts it.
struct Outcome {
    number: usize,
    code: AckCode,
    status: Option<Hl7MessageStatus>,
    duplicate: bool,
    ack: String,
}

impl Outcome {
    fn of(number: usize, ingested: Ingested) -> Self {
        Outcome {
            number,
            code: ingested.code,
            status: ingested.status,
            duplicate: ingested.duplicate,
            ack: ingested.ack,
        }
    }
}

/// Counts outcomes and writes the refused and held ones (with MSA-2 and MSA-3) to the rejects
/// text: `FILE:MESSAGE-NUMBER<tab>CONTROL-ID<tab>OUTCOME<tab>REASON`.
fn record(file: &Path, outcomes: &mut Vec<Outcome>, tally: &mut Tally, rejects: &mut String) {
    for outcome in outcomes.drain(..) {
        if outcome.duplicate {
            tally.duplicates += 1;
        }
        let msa = || {
            let message = kith_hl7::parse(outcome.ack.as_bytes()).message;
            let msa = message.as_ref().and_then(|m| m.segment("MSA"));
            (
                msa.map_or(String::new(), |msa| msa.value(2).to_owned()),
                msa.map_or(String::new(), |msa| msa.value(3).to_owned()),
            )
        };
        let listed = match (outcome.status, outcome.code) {
            (Some(Hl7MessageStatus::Held), _) => {
                tally.held += 1;
                Some("held")
            }
            (Some(Hl7MessageStatus::Accepted), _) | (None, AckCode::Accept) => {
                tally.accepted += 1;
                if !msa().1.is_empty() {
                    tally.with_notes += 1;
                }
                None
            }
            (_, AckCode::Reject) | (Some(Hl7MessageStatus::Rejected), _) => {
                tally.rejected += 1;
                Some("AR")
            }
            _ => {
                tally.errors += 1;
                Some("AE")
            }
        };
        if let Some(listed) = listed {
            let (control, reason) = msa();
            rejects.push_str(&format!("{}:{}\t{control}\t{listed}\t{reason}\n", file.display(), outcome.number + 1));
        }
    }
}

/// The progress bar: `[#######-------------]  35% 3500/10000 messages, 812/s, about 8s left`.
fn progress_line(done: u64, expected: u64, elapsed: Duration) -> String {
    const WIDTH: usize = 24;
    let fraction = if expected == 0 { 1.0 } else { (done as f64 / expected as f64).min(1.0) };
    let filled = (fraction * WIDTH as f64).round() as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let left = expected.saturating_sub(done) as f64 / rate.max(1.0);
    format!(
        "[{}{}] {:>3.0}% {done}/{expected} messages, {rate:.0}/s, about {left:.0}s left",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        fraction * 100.0
    )
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    app: &App,
    operator: &Operator,
    json: bool,
    org: &str,
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
        // keeps what must stay in order in order, and applies a failed batch one message at
        // a time).
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
        let mut pending: Vec<(usize, &[u8])> = Vec::new();
        let flush = |pending: &mut Vec<(usize, &[u8])>, outcomes: &mut Vec<Outcome>| -> anyhow::Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let messages: Vec<&[u8]> = pending.iter().map(|(_, bytes)| *bytes).collect();
            let ingested = app
                .import_hl7(organisation, operator, &messages, workers, IMPORT_BATCH)
                .context("the import cannot go on (the messages before this point are stored)")?;
            for ((number, _), ingested) in pending.drain(..).zip(ingested) {
                outcomes.push(Outcome::of(number, ingested));
            }
            Ok(())
        };
        for (number, item) in items.iter().enumerate() {
            match item {
                BatchItem::Message(bytes) => pending.push((number, bytes)),
                BatchItem::TooLarge => {
                    flush(&mut pending, &mut outcomes)?;
                    let reason = format!("message larger than {} bytes", kith_hl7::mllp::DEFAULT_MAX_FRAME);
                    outcomes.push(Outcome {
                        number,
                        code: AckCode::Reject,
                        status: None,
                        duplicate: false,
                        ack: app.ack_without_ingesting(None, AckCode::Reject, &reason),
                    });
                }
            }
            if pending.len() >= IMPORT_BATCH * workers * BATCHES_PER_CALL {
                flush(&mut pending, &mut outcomes)?;
            }
            record(file, &mut outcomes, &mut tally, &mut rejects);
            if progress && last_report.elapsed() >= Duration::from_millis(250) {
                last_report = Instant::now();
                eprint!("\r{}   ", progress_line(tally.total(), expected as u64, started.elapsed()));
                let _ = std::io::stderr().flush();
            }
        }
        flush(&mut pending, &mut outcomes)?;
        record(file, &mut outcomes, &mut tally, &mut rejects);
    }
    if progress {
        eprintln!("\r{}   ", progress_line(tally.total(), expected as u64, started.elapsed()));
    }
    if !rejects.is_empty() {
        crate::private_file::write(rejects_path, rejects.as_bytes(), crate::private_file::Existing::Replace)
            .with_context(|| format!("writing {}", rejects_path.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let value = json!({
        "messages": tally.total(),
        "accepted": tally.accepted,
        "accepted_with_notes": tally.with_notes,
        "rejected": tally.rejected,
        "held": tally.held,
        "errors": tally.errors,
        "duplicates": tally.duplicates,
        "seconds": elapsed,
        "rejects_file": (!rejects.is_empty()).then(|| rejects_path.display().to_string()),
    });
    if json {
        println!("{value}");
    } else {
        let mut lines = vec![format!(
            "{} messages in {elapsed:.1}s ({:.0}/s): {} accepted ({} with notes), {} rejected, {} held for review, {} not stored ({} were repeats of stored messages)",
            tally.total(),
            tally.total() as f64 / elapsed.max(1e-9),
            tally.accepted,
            tally.with_notes,
            tally.rejected,
            tally.held,
            tally.errors,
            tally.duplicates,
        )];
        if !rejects.is_empty() {
            lines.push(format!("rejected and held messages, with their reasons: {}", rejects_path.display()));
        }
        if tally.rejected > 0 {
            lines.push(format!("  kith hl7 messages --org {org} --status rejected   (fix, then kith hl7 reprocess)"));
        }
        if tally.held > 0 {
            lines.push(format!("  kith hl7 held --org {org}   (resolve each with kith hl7 resolve)"));
        }
        if tally.with_notes > 0 {
            lines.push(format!("  kith hl7 messages --org {org} --with-notes   (what was not applied, and why)"));
        }
        println!("{}", lines.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar() {
        assert_eq!(
            progress_line(250, 1000, Duration::from_secs(1)),
            "[######------------------]  25% 250/1000 messages, 250/s, about 3s left"
        );
        assert!(progress_line(0, 0, Duration::ZERO).starts_with("[########################] 100%"));
    }
}
