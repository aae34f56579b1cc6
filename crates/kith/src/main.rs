//! `kith`: the operator CLI and the server.
//!
//! Names and flags here are a stable interface that scripts and external acceptance tests
//! use; change them only by adding. Errors go to stderr as `error: …` with exit status 1;
//! usage errors exit with 2.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kith_app::{App, AppError, Operator, SystemClock};
use kith_store::{DatabaseUrl, Store};

/// mimalloc instead of the system allocator: a FHIR search allocates and frees thousands
/// of small objects (rows, JSON values), and the server spends much of its time there
/// (bench/RESULTS.md, fhir).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod delivery;
mod demo;
mod import;
mod letters;
mod mllp;
mod private_file;
mod serve;

/// Kith, a patient-held health record: operator commands and the server.
#[derive(Parser, Debug)]
#[command(name = "kith", version, about, long_about = None)]
pub struct Cli {
    /// Print results as one JSON object (create commands always include "id").
    #[arg(long, global = true)]
    json: bool,

    #[command(flatten)]
    config: StorageConfig,

    #[command(subcommand)]
    command: Command,
}

/// Where the data lives.
#[derive(Args, Debug, Clone)]
pub struct StorageConfig {
    /// The database: postgres://… or sqlite://PATH. Default: SQLite in the data directory.
    #[arg(long, env = "KITH_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,

    /// The data directory for the default SQLite database.
    #[arg(long, env = "KITH_DATA_DIR", global = true, default_value = "./kith-data")]
    data_dir: PathBuf,
}

impl StorageConfig {
    pub fn database_url(&self) -> anyhow::Result<DatabaseUrl> {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => DatabaseUrl::parse(url).map_err(anyhow::Error::msg),
            _ => Ok(DatabaseUrl::Sqlite(self.data_dir.join("kith.db"))),
        }
    }

    /// The server's sealing key: `KITH_SECRET_KEY` (64 hexadecimal digits), else the file
    /// `secret.key` in the data directory, made (readable by its owner only) when missing.
    /// Two-step verification keys are sealed with it: keep it, and back it up.
    pub fn sealing_key(&self) -> anyhow::Result<kith_app::sealing::SealingKey> {
        if let Ok(text) = std::env::var("KITH_SECRET_KEY")
            && !text.trim().is_empty()
        {
            return kith_app::sealing::SealingKey::from_hex(&text)
                .context("KITH_SECRET_KEY must be 64 hexadecimal digits (32 bytes), e.g. from `openssl rand -hex 32`");
        }
        let path = self.data_dir.join("secret.key");
        if !path.exists() {
            crate::private_file::create_dir(&self.data_dir)
                .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
            file.write_all(format!("{}\n", kith_app::sealing::SealingKey::generate_hex()).as_bytes())?;
            eprintln!("kith: made a new secret key in {} (keep it, and back it up)", path.display());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        kith_app::sealing::SealingKey::from_hex(&text)
            .with_context(|| format!("{} must hold 64 hexadecimal digits", path.display()))
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Organisations.
    #[command(subcommand)]
    Org(commands::OrgCommand),
    /// Teams.
    #[command(subcommand)]
    Team(commands::TeamCommand),
    /// Professionals and coordinators of teams.
    #[command(subcommand)]
    Professional(commands::ProfessionalCommand),
    /// Privacy officers of organisations.
    #[command(subcommand, name = "privacy-officer")]
    PrivacyOfficer(commands::PrivacyOfficerCommand),
    /// Patient records.
    #[command(subcommand)]
    Patient(commands::PatientCommand),
    /// Record entries.
    #[command(subcommand)]
    Entry(commands::EntryCommand),
    /// HL7 integrations (feeds).
    #[command(subcommand)]
    Integration(commands::IntegrationCommand),
    /// API tokens for the FHIR API (bearer secrets acting for one account).
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Rules giving incoming HL7 data its privacy label.
    #[command(subcommand, name = "label-rule")]
    LabelRule(commands::LabelRuleCommand),
    /// HL7 v2 messages received.
    #[command(subcommand)]
    Hl7(commands::Hl7Command),
    /// Read a record as a professional (audited as that professional, through the CLI).
    #[command(subcommand)]
    Record(commands::RecordCommand),
    /// Emergency access as a professional (audited; the patient and privacy officers are told).
    #[command(subcommand, name = "break-glass")]
    BreakGlass(commands::BreakGlassCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(commands::AuditCommand),
    /// Deliver the outbox (email over SMTP, SMS over HTTP, or as files) until SIGINT or SIGTERM.
    Worker,
    /// The outbox: messages waiting, sent and given up.
    #[command(subcommand)]
    Outbox(delivery::OutboxCommand),
    /// Letter invitations: print the pending ones as a PDF.
    #[command(subcommand)]
    Letters(commands::LettersCommand),
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create a fresh demo database with a realistic organisation, print how to use it, and serve.
    Demo(demo::DemoArgs),
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KITH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("KITH_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the store and applies pending migrations (every command does so at start).
pub fn open_app(config: &StorageConfig) -> anyhow::Result<App> {
    let url = config.database_url()?;
    let store = Store::open_and_migrate(&url).with_context(|| format!("opening the database {url}"))?;
    Ok(App::new(store, Arc::new(SystemClock)))
}

/// Reads a password from standard input (one line; the trailing newline is dropped).
pub fn read_password_from_stdin() -> anyhow::Result<kith_core::text::Secret> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the password from standard input")?;
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(kith_core::text::Secret::new(password.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) | Command::Demo(_) | Command::Worker => "info",
        _ => "warn",
    };
    init_logging(default_level);
    let operator = Operator::from_environment();
    match commands::run(cli, &operator) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<AppError>() {
                Some(app_error) => eprintln!("error: {app_error}"),
                None => eprintln!("error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
