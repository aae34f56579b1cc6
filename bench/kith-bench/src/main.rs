//! Kith's benchmarks, one subcommand each. Run them through the scripts in `bench/`
//! (e.g. `bench/access/run`); results are kept in `bench/RESULTS.md`.

#![forbid(unsafe_code)]

mod access;

use std::process::ExitCode;

const USAGE: &str = "\
usage: kith-bench <benchmark> [options]

benchmarks:
  access    the access rule (decisions per second) and the record read (latency) on
            SQLite, and on PostgreSQL when KITH_BENCH_POSTGRES_URL is set

run `kith-bench <benchmark> --help` for its options";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(benchmark) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let outcome = match benchmark.as_str() {
        "access" => access::run(&rest),
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
        Err(access::Failure::Usage(message)) => {
            eprintln!("kith-bench access: {message}\n\n{}", access::USAGE);
            ExitCode::from(2)
        }
        Err(access::Failure::Run(message)) => {
            eprintln!("kith-bench access: {message}");
            ExitCode::FAILURE
        }
    }
}
