//! Kith's benchmarks, one subcommand each. Run them through the scripts in `bench/`
//! (e.g. `bench/access/run`); results are kept in `bench/RESULTS.md`.

#![forbid(unsafe_code)]

/// `expression?`, with a failure that says what was being done.
macro_rules! try_to {
    ($context:expr, $expression:expr) => {
        $expression.map_err(|error| Failure::Run(format!("{}: {error}", $context)))?
    };
}

mod access;
mod fhir;
mod flood;
mod hl7;
mod mllp;
mod onboarding;

use std::process::ExitCode;

const USAGE: &str = "\
usage: kith-bench <benchmark> [options]

benchmarks:
  access      the access rule (decisions per second) and the record read (latency) on
              SQLite, and on PostgreSQL when KITH_BENCH_POSTGRES_URL is set
  fhir-db     fills a fresh database for the FHIR read benchmark (bench/fhir/run)
  fhir-check  checks a running kith serve's answers to FHIR Observation searches on it
  pg-scratch  creates or drops a scratch PostgreSQL database (KITH_BENCH_POSTGRES_URL)
  hl7-corpus  writes a deterministic corpus of HL7 v2.4 messages for hl7-parse and its
              peers (bench/hl7/run), or with --feed for mllp-load (bench/hl7/mllp)
  hl7-parse   kith_hl7::parse throughput (messages and MB per second) on such a corpus
  mllp-load   an MLLP client: an HL7 listener's messages per second and ACK latency over
              N connections (bench/hl7/mllp)
  onboarding-csv  a 10,000-row professionals CSV file: preview and import times on SQLite,
              and on PostgreSQL with --postgres URL (bench/onboarding/run)
  sign-in-flood  other pages' latency while 200 clients send wrong passwords
              (bench/onboarding/run)

run `kith-bench <benchmark> --help` for its options";

/// Why a benchmark stopped.
pub enum Failure {
    Usage(String),
    Run(String),
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(benchmark) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let (outcome, usage) = match benchmark.as_str() {
        "access" => (access::run(&rest), access::USAGE),
        "fhir-db" => (fhir::generate(&rest), fhir::DB_USAGE),
        "fhir-check" => (fhir::check(&rest), fhir::CHECK_USAGE),
        "pg-scratch" => (fhir::scratch(&rest), fhir::SCRATCH_USAGE),
        "hl7-corpus" => (hl7::corpus(&rest), hl7::CORPUS_USAGE),
        "hl7-parse" => (hl7::parse_throughput(&rest), hl7::PARSE_USAGE),
        "mllp-load" => (mllp::run(&rest), mllp::USAGE),
        "onboarding-csv" => (onboarding::run(&rest), onboarding::USAGE),
        "sign-in-flood" => (flood::run(&rest), flood::USAGE),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("kith-bench: unknown benchmark {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("kith-bench {benchmark}: {message}\n\n{usage}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("kith-bench {benchmark}: {message}");
            ExitCode::FAILURE
        }
    }
}
