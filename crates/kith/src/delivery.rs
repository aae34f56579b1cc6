//! Delivering the outbox: the transports (email over SMTP with lettre, SMS as a JSON POST
//! with ureq, and a file sink for whichever is not configured), their configuration from
//! the environment, the worker thread ([`spawn_worker`]), `kith worker` and `kith outbox`.
//!
//! What to send and when to retry is `kith_app::outbox`; this module only moves bytes.
//! Errors and logs name a message by id, channel and attempt, and a failure by its class
//! ("SMTP 550 mailbox unavailable"): never a recipient, a code or a message's text.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use kith_app::App;
use kith_app::outbox::{DeliveryError, Envelope, Transport};
use kith_store::OUTBOX_STATUSES;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use serde_json::{Value, json};

use crate::{StorageConfig, open_app};

/// How long one SMTP conversation or one SMS request may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Messages claimed per round; a full batch is followed at once by another round. Small, so
/// that a round of sends that each time out still ends well within the claim's lease
/// (`kith_app::outbox::DELIVERY_LEASE`, 5 minutes).
const BATCH: i64 = 5;
/// The longest the worker sleeps between rounds.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: no TLS (a relay on the same host or network).
    Plain,
    /// `smtp+starttls://`: STARTTLS required; nothing is sent if the upgrade fails.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
}

/// Where email goes, from `KITH_SMTP_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    password: Option<String>,
}

/// Never prints the password.
impl std::fmt::Display for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::Plain => "smtp",
            SmtpSecurity::StartTls => "smtp+starttls",
            SmtpSecurity::ImplicitTls => "smtps",
        };
        let user = self.user.as_deref().map(|user| format!("{user}:***@")).unwrap_or_default();
        if self.host.contains(':') {
            write!(f, "{scheme}://{user}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpConfig({self})")
    }
}

impl SmtpConfig {
    /// `smtp://host[:port]` (plain, default port 25), `smtp+starttls://[user:pass@]host[:port]`
    /// (STARTTLS required, default 587) or `smtps://[user:pass@]host[:port]` (implicit TLS,
    /// default 465); the user and password are percent-decoded. A password is refused over
    /// plain SMTP. Errors never repeat the URL (it may hold a password).
    ///
    /// The `url` crate reads it (lettre's own `SmtpTransport::from_url` uses the same crate,
    /// but hands an IPv6 host on with its brackets and has no STARTTLS scheme); lettre's
    /// builders make the transport.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if !text.contains("://") {
            bail!(
                "KITH_SMTP_URL must look like smtp://host:port, smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
            );
        }
        let url = url::Url::parse(text).map_err(|error| match error {
            url::ParseError::EmptyHost => anyhow!("KITH_SMTP_URL: the host is missing"),
            url::ParseError::InvalidPort => anyhow!("KITH_SMTP_URL: the port must be a number from 1 to 65535"),
            other => anyhow!("KITH_SMTP_URL: {other}"),
        })?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (SmtpSecurity::Plain, 25),
            "smtp+starttls" => (SmtpSecurity::StartTls, 587),
            "smtps" => (SmtpSecurity::ImplicitTls, 465),
            other => bail!("KITH_SMTP_URL: unknown scheme {other:?} (use smtp, smtp+starttls or smtps)"),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            bail!("KITH_SMTP_URL: give only the scheme, credentials, host and port (no path or query)");
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            _ => bail!("KITH_SMTP_URL: the host is missing"),
        };
        if url.port() == Some(0) {
            bail!("KITH_SMTP_URL: the port must be a number from 1 to 65535");
        }
        let decode = |text: &str, what: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| anyhow!("KITH_SMTP_URL: the {what} is not valid percent-encoded UTF-8"))
        };
        let has_userinfo = !url.username().is_empty() || url.password().is_some();
        let (user, password) = if has_userinfo {
            (Some(decode(url.username(), "user")?), Some(decode(url.password().unwrap_or(""), "password")?))
        } else {
            (None, None)
        };
        if user.as_deref().is_some_and(str::is_empty) {
            bail!("KITH_SMTP_URL: the user is empty");
        }
        if security == SmtpSecurity::Plain && user.is_some() {
            bail!("KITH_SMTP_URL: credentials are only sent over TLS; use smtp+starttls:// or smtps://");
        }
        Ok(Self { security, host, port: url.port().unwrap_or(default_port), user, password })
    }

    fn transport(&self) -> anyhow::Result<SmtpTransport> {
        let builder = match self.security {
            SmtpSecurity::Plain => SmtpTransport::builder_dangerous(&self.host),
            SmtpSecurity::StartTls => SmtpTransport::starttls_relay(&self.host)
                .with_context(|| format!("KITH_SMTP_URL: cannot use TLS with the host {}", self.host))?,
            SmtpSecurity::ImplicitTls => SmtpTransport::relay(&self.host)
                .with_context(|| format!("KITH_SMTP_URL: cannot use TLS with the host {}", self.host))?,
        };
        let mut builder = builder.port(self.port).timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// Where and how the outbox is delivered.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// `KITH_SMTP_URL`; without it email goes to the file sink.
    pub smtp: Option<SmtpConfig>,
    /// `KITH_MAIL_FROM`, default `Kith <no-reply@localhost>`.
    pub mail_from: Mailbox,
    /// `KITH_SMS_URL`: an HTTP(S) endpoint taking a JSON POST `{"to": …, "body": …}`;
    /// without it SMS go to the file sink.
    pub sms_url: Option<String>,
    /// `KITH_OUTBOX_DIR`, default `kith-outbox` in the current directory: the file sink.
    pub outbox_dir: PathBuf,
    /// `KITH_PUBLIC_URL`, default `http://127.0.0.1:8080`: where links in messages point.
    pub public_url: String,
}

impl DeliveryConfig {
    /// Reads the configuration from the environment and checks it (a bad value is an error
    /// at start-up, not a failure at each send).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()))
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let smtp = lookup("KITH_SMTP_URL").map(|url| SmtpConfig::parse(&url)).transpose()?;
        let mail_from = lookup("KITH_MAIL_FROM")
            .unwrap_or_else(|| "Kith <no-reply@localhost>".to_owned())
            .parse::<Mailbox>()
            .map_err(|error| {
                anyhow!("KITH_MAIL_FROM must be an address such as Kith <no-reply@example.org>: {error}")
            })?;
        let sms_url = lookup("KITH_SMS_URL").map(|url| url.trim().to_owned());
        if let Some(url) = &sms_url {
            let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if !host.is_some_and(|host| !host.is_empty() && !host.starts_with('/')) {
                bail!("KITH_SMS_URL must be an http:// or https:// URL");
            }
        }
        let outbox_dir = lookup("KITH_OUTBOX_DIR").map_or_else(|| PathBuf::from("kith-outbox"), PathBuf::from);
        let public_url = lookup("KITH_PUBLIC_URL").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let public_url = public_url.trim().trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("KITH_PUBLIC_URL must start with http:// or https://");
        }
        let config = Self { smtp, mail_from, sms_url, outbox_dir, public_url };
        config.transports()?;
        Ok(config)
    }

    /// One line for operators: where each channel goes (no password, no SMS URL path).
    pub fn describe(&self) -> String {
        let email = match &self.smtp {
            Some(smtp) => smtp.to_string(),
            None => format!("files in {}", self.outbox_dir.display()),
        };
        let sms = match &self.sms_url {
            Some(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
                format!("POST to {scheme}://{host}/…")
            }
            None => format!("files in {}", self.outbox_dir.display()),
        };
        format!("email: {email}; SMS: {sms}; links to {}", self.public_url)
    }

    fn transports(&self) -> anyhow::Result<Transports> {
        let sink = FileSink { directory: self.outbox_dir.clone() };
        let email = match &self.smtp {
            Some(smtp) => EmailTransport::Smtp(smtp.transport()?),
            None => EmailTransport::Files(sink.clone()),
        };
        let sms = match &self.sms_url {
            Some(url) => {
                let agent_config = ureq::Agent::config_builder()
                    .timeout_global(Some(SEND_TIMEOUT))
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .build();
                SmsTransport::Http { url: url.clone(), agent: agent_config.into() }
            }
            None => SmsTransport::Files(sink),
        };
        Ok(Transports { email, sms, mail_from: self.mail_from.clone() })
    }
}

/// Writes each message as a file, counted as sent: for demos and development, and for a
/// channel that is not configured.
#[derive(Clone, Debug)]
struct FileSink {
    directory: PathBuf,
}

impl FileSink {
    /// `<dir>/<created>-<id>.<extension>`, written to a hidden temporary name first so that
    /// whoever watches the directory never sees half a message (0600, in a 0700 directory).
    fn write(&self, envelope: &Envelope<'_>, extension: &str, bytes: &[u8]) -> Result<(), DeliveryError> {
        let failed = |error: std::io::Error| DeliveryError::transient(format!("file sink: {}", error.kind()));
        // The messages carry invitation codes and reset links: the owner's only.
        crate::private_file::create_dir(&self.directory).map_err(failed)?;
        let created: String = envelope.created_at.to_string().chars().filter(|c| !matches!(c, '-' | ':')).collect();
        let name = format!("{created}-{}.{extension}", envelope.id);
        crate::private_file::write(&self.directory.join(&name), bytes, crate::private_file::Existing::Replace)
            .map_err(failed)
    }
}

enum EmailTransport {
    Smtp(SmtpTransport),
    Files(FileSink),
}

enum SmsTransport {
    Http { url: String, agent: ureq::Agent },
    Files(FileSink),
}

/// The transports the worker sends through.
struct Transports {
    email: EmailTransport,
    sms: SmsTransport,
    mail_from: Mailbox,
}

impl Transport for Transports {
    fn send_email(&self, envelope: &Envelope<'_>, subject: &str, text: &str) -> Result<(), DeliveryError> {
        let to: Mailbox =
            envelope.to.parse().map_err(|_| DeliveryError::permanent("the recipient is not a valid email address"))?;
        let message = lettre::Message::builder()
            .from(self.mail_from.clone())
            .to(to)
            .subject(subject)
            // The same id on every attempt, so that a receiver can drop a duplicate.
            .message_id(Some(format!("<{}@{}>", envelope.id, self.mail_from.email.domain())))
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|_| DeliveryError::permanent("cannot build the email"))?;
        match &self.email {
            EmailTransport::Smtp(smtp) => {
                lettre::Transport::send(smtp, &message).map(drop).map_err(|error| smtp_failure(&error))
            }
            EmailTransport::Files(sink) => sink.write(envelope, "eml", &message.formatted()),
        }
    }

    fn send_sms(&self, envelope: &Envelope<'_>, text: &str) -> Result<(), DeliveryError> {
        match &self.sms {
            SmsTransport::Http { url, agent } => {
                let body = json!({ "to": envelope.to, "body": text }).to_string();
                let response = agent
                    .post(url)
                    .header("Content-Type", "application/json")
                    .send(body.as_bytes())
                    .map_err(|error| http_failure(&error))?;
                match response.status().as_u16() {
                    200..=299 => Ok(()),
                    // Our credentials (fixed by the operator), too slow, too many: worth trying again.
                    status @ (401 | 403 | 408 | 429) => {
                        Err(DeliveryError::transient(format!("SMS endpoint HTTP {status}")))
                    }
                    status @ 400..=499 => Err(DeliveryError::permanent(format!("SMS endpoint HTTP {status}"))),
                    status => Err(DeliveryError::transient(format!("SMS endpoint HTTP {status}"))),
                }
            }
            SmsTransport::Files(sink) => {
                sink.write(envelope, "sms.txt", format!("To: {}\n\n{text}\n", envelope.to).as_bytes())
            }
        }
    }
}

/// The class of an SMTP failure, without the server's text (which may echo the recipient).
/// A 5xx reply is permanent, except an authentication failure, which is about Kith's
/// configuration rather than the message; anything else may pass on a later attempt.
fn smtp_failure(error: &lettre::transport::smtp::Error) -> DeliveryError {
    if let Some(code) = error.status() {
        let code = code.to_string();
        let meaning = match code.as_str() {
            "421" => "service not available",
            "450" | "550" => "mailbox unavailable",
            "451" => "local error in processing",
            "452" => "insufficient storage",
            "530" => "authentication required",
            "535" => "authentication failed",
            "551" => "user not local",
            "552" => "storage allocation exceeded",
            "553" => "mailbox name not allowed",
            "554" => "transaction failed",
            _ if error.is_permanent() => "permanent failure",
            _ => "transient failure",
        };
        let description = format!("SMTP {code} {meaning}");
        let authentication = matches!(code.as_str(), "530" | "534" | "535" | "538");
        return if error.is_permanent() && !authentication {
            DeliveryError::permanent(description)
        } else {
            DeliveryError::transient(description)
        };
    }
    DeliveryError::transient(if error.is_timeout() {
        "SMTP timeout"
    } else if error.is_tls() {
        "SMTP TLS failure"
    } else if error.is_response() {
        "SMTP unreadable response"
    } else if error.is_client() {
        "SMTP client error"
    } else {
        "SMTP connection failed"
    })
}

/// The class of an HTTP failure, without the URL (it may carry a key).
fn http_failure(error: &ureq::Error) -> DeliveryError {
    DeliveryError::transient(match error {
        ureq::Error::Timeout(_) => "SMS endpoint timeout",
        ureq::Error::HostNotFound => "SMS endpoint host not found",
        ureq::Error::ConnectionFailed | ureq::Error::Io(_) => "SMS endpoint unreachable",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "SMS endpoint TLS failure",
        _ => "SMS endpoint error",
    })
}

/// Tells the worker thread to stop, waking it from its pause.
struct WorkerSignal {
    stop: Mutex<bool>,
    changed: Condvar,
}

/// The running worker: [`WorkerHandle::stop`] (or dropping it) stops it and waits for the
/// message in hand to be sent and recorded.
pub struct WorkerHandle {
    signal: Arc<WorkerSignal>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        *self.signal.stop.lock().unwrap_or_else(|poison| poison.into_inner()) = true;
        self.signal.changed.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the outbox worker panicked");
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Runs the outbox worker on its own thread: deliver what is due, then sleep up to a second
/// (or until stopped), until stopped. Several workers (nodes) may run on one database.
pub fn spawn_worker(app: App, config: DeliveryConfig) -> WorkerHandle {
    let signal = Arc::new(WorkerSignal { stop: Mutex::new(false), changed: Condvar::new() });
    let thread_signal = signal.clone();
    let thread = std::thread::Builder::new()
        .name("kith-outbox".into())
        .spawn(move || run_worker_loop(&app, &config, &thread_signal))
        .expect("the outbox worker thread starts");
    WorkerHandle { signal, thread: Some(thread) }
}

/// How often the worker forgets stale sign-in state.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60 * 60);

fn run_worker_loop(app: &App, config: &DeliveryConfig, signal: &WorkerSignal) {
    let transports = match config.transports() {
        Ok(transports) => Some(transports),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "the outbox cannot be delivered");
            None
        }
    };
    let mut housekeeping_due = std::time::Instant::now();
    loop {
        // About once an hour, forget dead sessions, old failed sign-ins and spent codes,
        // and refresh the planner's statistics.
        if std::time::Instant::now() >= housekeeping_due {
            housekeeping_due = std::time::Instant::now() + HOUSEKEEPING_INTERVAL;
            match app.forget_stale_sign_in_state() {
                Ok((sessions, failures, codes)) => {
                    tracing::info!(sessions, failures, codes, "housekeeping: stale sign-in state forgotten")
                }
                Err(error) => tracing::warn!(%error, "housekeeping failed; trying again later"),
            }
            // PostgreSQL's planner statistics, so that statements prepared while the feed's
            // tables were small are planned again (autovacuum may be off).
            if let Err(error) = app.store().refresh_planner_statistics() {
                tracing::warn!(%error, "housekeeping: refreshing planner statistics failed; trying again later");
            }
        }
        let mut more = false;
        if let Some(transports) = &transports {
            match app.deliver_outbox(transports, &config.public_url, BATCH) {
                Ok(report) => more = i64::try_from(report.claimed).is_ok_and(|claimed| claimed >= BATCH),
                Err(error) => tracing::warn!(%error, "outbox delivery failed; trying again shortly"),
            }
        }
        let mut stop = signal.stop.lock().unwrap_or_else(|poison| poison.into_inner());
        if !more && !*stop {
            stop = signal
                .changed
                .wait_timeout_while(stop, POLL_INTERVAL, |stop| !*stop)
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
        }
        if *stop {
            return;
        }
    }
}

/// `kith worker`: delivers the outbox until SIGINT or SIGTERM.
pub fn run_worker(storage: &StorageConfig) -> anyhow::Result<()> {
    let config = DeliveryConfig::from_env()?;
    let app = open_app(storage)?;
    let description = config.describe();
    let worker = spawn_worker(app, config);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the signal handler")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
            let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
            eprintln!("kith: outbox worker running ({description})");
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            eprintln!("kith: outbox worker running ({description})");
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
        anyhow::Ok(())
    })?;
    drop(runtime);
    worker.stop();
    eprintln!("kith: outbox worker stopped");
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// List outbox messages, newest first (recipients masked, codes never shown), with the
    /// count per channel and status.
    List {
        /// Only messages in this status.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(OUTBOX_STATUSES))]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// `j***@example.org`, `+44…123`; a letter's address not at all.
fn mask_recipient(channel: &str, recipient: &str) -> String {
    match channel {
        "email" => match recipient.rsplit_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().map(String::from).unwrap_or_default())
            }
            None => "***".to_owned(),
        },
        "sms" if recipient.chars().count() > 6 => {
            let characters: Vec<char> = recipient.chars().collect();
            let head: String = characters[..3].iter().collect();
            let tail: String = characters[characters.len() - 3..].iter().collect();
            format!("{head}…{tail}")
        }
        _ => "***".to_owned(),
    }
}

pub fn outbox_command(app: &App, json: bool, command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::List { status, limit } => {
            let messages = app.outbox_messages(status.as_deref(), limit)?;
            let counts = app.outbox_counts()?;
            let value = json!({
                "messages": messages.iter().map(|row| json!({
                    "id": row.message.id.to_string(),
                    "channel": row.message.channel,
                    "template": row.message.template,
                    "recipient": mask_recipient(row.message.channel, &row.message.recipient),
                    "status": row.status,
                    "attempts": row.attempts,
                    "created_at": row.message.created_at.to_string(),
                    "next_attempt_at": row.next_attempt_at.to_string(),
                    "sent_at": row.sent_at.map(|at| at.to_string()),
                    "last_error": row.last_error,
                })).collect::<Vec<Value>>(),
                "counts": counts.iter().map(|count| json!({
                    "channel": count.channel,
                    "status": count.status,
                    "count": count.count,
                })).collect::<Vec<Value>>(),
            });
            if json {
                println!("{value}");
                return Ok(());
            }
            for row in &messages {
                println!(
                    "{}  {}  {:<6} {:<28} {:<8} {} attempt(s)  {}  {}",
                    row.message.created_at,
                    row.message.id,
                    row.message.channel,
                    row.message.template,
                    row.status,
                    row.attempts,
                    mask_recipient(row.message.channel, &row.message.recipient),
                    row.last_error.as_deref().unwrap_or("")
                );
            }
            let summary: Vec<String> =
                counts.iter().map(|count| format!("{} {}: {}", count.channel, count.status, count.count)).collect();
            println!("{}", if summary.is_empty() { "the outbox is empty".to_owned() } else { summary.join(", ") });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> anyhow::Result<DeliveryConfig> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        DeliveryConfig::from_lookup(|name| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()))
    }

    #[test]
    fn smtp_urls_give_security_credentials_and_default_ports() {
        let plain = SmtpConfig::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (plain.security, plain.host.as_str(), plain.port, plain.user),
            (SmtpSecurity::Plain, "127.0.0.1", 2525, None)
        );
        let starttls = SmtpConfig::parse("smtp+starttls://kith%40example.org:p%40ss%3Aword@mail.example.org").unwrap();
        assert_eq!((starttls.security, starttls.port), (SmtpSecurity::StartTls, 587));
        assert_eq!(starttls.user.as_deref(), Some("kith@example.org"));
        assert_eq!(starttls.password.as_deref(), Some("p@ss:word"));
        assert_eq!(starttls.to_string(), "smtp+starttls://kith@example.org:***@mail.example.org:587");
        assert!(!format!("{starttls:?}").contains("p@ss"));
        let implicit = SmtpConfig::parse("smtps://user:secret@[::1]:4650/").unwrap();
        assert_eq!(
            (implicit.security, implicit.host.as_str(), implicit.port),
            (SmtpSecurity::ImplicitTls, "::1", 4650)
        );
        assert_eq!(SmtpConfig::parse("smtps://mail.example.org").unwrap().port, 465);
        assert_eq!(SmtpConfig::parse("smtp://relay").unwrap().port, 25);

        for (bad, says) in [
            ("mail.example.org", "must look like"),
            ("http://mail.example.org", "unknown scheme"),
            ("smtp://user:secret@relay:25", "only sent over TLS"),
            ("smtp://relay:notaport", "port"),
            ("smtp://relay:0", "port"),
            ("smtp://:25", "host is missing"),
            ("smtp://relay/path", "no path"),
            ("smtps://user:%ff@relay", "percent-encoded"),
        ] {
            let error = SmtpConfig::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn the_configuration_has_defaults_and_refuses_bad_values() {
        let defaults = config(&[]).unwrap();
        assert!(defaults.smtp.is_none() && defaults.sms_url.is_none());
        assert_eq!(defaults.outbox_dir, PathBuf::from("kith-outbox"));
        assert_eq!(defaults.public_url, "http://127.0.0.1:8080");
        assert_eq!(defaults.mail_from.to_string(), "Kith <no-reply@localhost>");
        assert_eq!(
            defaults.describe(),
            "email: files in kith-outbox; SMS: files in kith-outbox; links to http://127.0.0.1:8080"
        );

        let configured = config(&[
            ("KITH_SMTP_URL", "smtps://kith:secret@mail.example.org"),
            ("KITH_SMS_URL", "https://key:secret@sms.example.org/v1/send?token=secret"),
            ("KITH_PUBLIC_URL", "https://kith.example.org/"),
            ("KITH_MAIL_FROM", "Riverside Kith <kith@example.org>"),
        ])
        .unwrap();
        assert_eq!(configured.public_url, "https://kith.example.org");
        let described = configured.describe();
        assert!(!described.contains("secret") && described.contains("sms.example.org"), "{described}");

        assert!(config(&[("KITH_SMS_URL", "ftp://x")]).is_err());
        assert!(config(&[("KITH_PUBLIC_URL", "kith.example.org")]).is_err());
        assert!(config(&[("KITH_MAIL_FROM", "not an address")]).is_err());
    }

    #[test]
    fn recipients_are_masked() {
        assert_eq!(mask_recipient("email", "jane.doe@example.org"), "j***@example.org");
        assert_eq!(mask_recipient("sms", "+447700900123"), "+44…123");
        assert_eq!(mask_recipient("sms", "123"), "***");
        assert_eq!(mask_recipient("letter", "1 High Street"), "***");
    }
}
