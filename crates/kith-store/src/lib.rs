//! Kith's storage.
//!
//! One query layer ([`Tx`]) is written once, in the SQL both engines share, over a small
//! connection trait ([`Conn`]). Each backend ([`sqlite`], [`postgres`]) implements the trait
//! and the transaction discipline ([`Backend`]) and owns its migrations. Every use case runs
//! as one closure in one transaction ([`Store::write`]); its audit events are appended to
//! the hash chain just before commit, so data and audit commit together or not at all.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

mod audit_writer;
mod checkpoint;
mod pool;
pub mod postgres;
pub mod sqlite;
mod tx;
mod value;

pub use tx::*;
pub use value::{Param, Row, Value};

/// What went wrong in storage. The message is for logs and operators, never for patients.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another transaction got in the way (SQLite busy, PostgreSQL serialization failure or
    /// deadlock): running the transaction again may succeed.
    Conflict,
    /// A unique constraint: usually a concurrent insert of the same thing; running the
    /// transaction again lets it see the other row and say so properly.
    Duplicate,
    /// The database cannot be reached or is out of connections.
    Unavailable,
    /// The stored data is not what Kith wrote (or a newer Kith wrote it).
    Corrupt,
    /// Anything else the database reported.
    Database,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Conflict => "transaction conflict",
            StoreErrorKind::Duplicate => "duplicate",
            StoreErrorKind::Unavailable => "database unavailable",
            StoreErrorKind::Corrupt => "unexpected stored data",
            StoreErrorKind::Database => "database error",
        })
    }
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Corrupt, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Unavailable, message)
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Conflict | StoreErrorKind::Duplicate)
    }
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

/// An error type that use cases return from inside a transaction: it can carry a store
/// error, and says whether the transaction is worth running again.
pub trait TransactionError: From<StoreError> {
    fn is_retryable(&self) -> bool;
}

impl TransactionError for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }
}

/// The SQL dialect of a connection, for the few statements the engines spell differently.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One connection inside one transaction. SQL uses `?` placeholders; the PostgreSQL backend
/// rewrites them to `$1…`.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs a query and hands its rows to `each`, in order. The row lends its buffers to the
    /// next one, so `each` copies out what it keeps; an error from `each` stops the query.
    fn query_each(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        self.query_each(sql, params, &mut |row| {
            rows.push(row.clone());
            Ok(())
        })?;
        Ok(rows)
    }
    /// Runs several statements without parameters (migrations).
    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError>;
}

/// Whether a transaction's closure wants its work committed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Finish {
    Commit,
    Rollback,
}

/// A storage backend: how to open a transaction on it and how to migrate it.
pub trait Backend: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Runs `work` in one read-write transaction (serialised with other writers where the
    /// engine needs it) and commits when it returns [`Finish::Commit`].
    fn write_transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<Finish, StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs `work` in one read-only transaction (a consistent snapshot).
    fn read_transaction(&self, work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>)
    -> Result<(), StoreError>;
    /// Applies this backend's migrations that are not applied yet.
    fn migrate(&self) -> Result<MigrationReport, StoreError>;
}

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub current_version: i64,
}

/// Where the data lives, from `KITH_DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// `postgres://…` / `postgresql://…`, or `sqlite://PATH` (`sqlite:///abs/path` or
    /// `sqlite://relative/path`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("a sqlite:// URL needs a file path, e.g. sqlite://./kith-data/kith.db".to_owned());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err("KITH_DATABASE_URL must start with postgres://, postgresql:// or sqlite://".to_owned())
    }
}

/// Never prints a PostgreSQL password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &url[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or_default();
                    write!(f, "{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                _ => f.write_str(url),
            },
        }
    }
}

/// The result of an audited read ([`Store::read_then_audit`]), given up only once the read's
/// audit events are durable — nothing read leaves Kith unaudited.
#[must_use = "an audited read's result is given up only by waiting for its audit events"]
pub struct Audited<R> {
    value: R,
    ack: Option<audit_writer::Ack>,
}

impl<R> Audited<R> {
    /// Blocks the thread until the events are committed; then the result, or the error that
    /// kept them from being committed.
    pub fn wait(self) -> Result<R, StoreError> {
        match self.ack {
            Some(ack) => ack.wait().map(|()| self.value),
            None => Ok(self.value),
        }
    }

    /// [`Audited::wait`] without blocking the thread.
    pub async fn durable(self) -> Result<R, StoreError> {
        match self.ack {
            Some(ack) => ack.await.map(|()| self.value),
            None => Ok(self.value),
        }
    }
}

/// How many times a transaction that conflicted is run again before giving up.
const MAX_ATTEMPTS: u32 = 8;

/// The store: a backend plus the transaction discipline every use case goes through.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    audit_writer: Arc<audit_writer::AuditWriter>,
    growth: Arc<Growth>,
}

/// Messages stored through this store since it opened, and at what count the planner's
/// statistics are refreshed next (see [`Store::note_growth`]).
struct Growth {
    stored: std::sync::atomic::AtomicU64,
    next_refresh: std::sync::atomic::AtomicU64,
}

/// The first refresh of the planner's statistics, in messages stored; then at each doubling.
const FIRST_STATISTICS_REFRESH: u64 = 2_000;

impl Store {
    /// Opens (creating a SQLite file and its directory when needed) without migrating.
    pub fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = match url {
            DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteBackend::open(path)?),
            DatabaseUrl::Postgres(url) => Arc::new(postgres::PostgresBackend::open(url)?),
        };
        let audit_writer = Arc::new(audit_writer::AuditWriter::new(backend.clone()));
        let growth = Arc::new(Growth {
            stored: std::sync::atomic::AtomicU64::new(0),
            next_refresh: std::sync::atomic::AtomicU64::new(FIRST_STATISTICS_REFRESH),
        });
        Ok(Self { backend, audit_writer, growth })
    }

    /// Opens and applies pending migrations.
    pub fn open_and_migrate(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let store = Self::open(url)?;
        store.migrate()?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    pub fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.backend.migrate()
    }

    /// Runs `work` in one write transaction and commits what it wrote, together with the
    /// audit events it recorded, when it returns `Ok`. On `Err` nothing it wrote remains.
    /// A transaction that meets a conflict is run again (so `work` must be repeatable).
    pub fn write<R, E: TransactionError>(&self, mut work: impl FnMut(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut attempt = 1;
        loop {
            let mut outcome: Option<Result<R, E>> = None;
            let result = self.backend.write_transaction(&mut |conn| {
                let mut tx = Tx::new(conn);
                tx.last_attempt = attempt >= MAX_ATTEMPTS;
                match work(&mut tx) {
                    Ok(value) => {
                        tx.flush_audit()?;
                        outcome = Some(Ok(value));
                        Ok(Finish::Commit)
                    }
                    Err(error) => {
                        outcome = Some(Err(error));
                        Ok(Finish::Rollback)
                    }
                }
            });
            let retry = match (&result, &outcome) {
                (Err(error), _) => error.is_retryable(),
                (Ok(()), Some(Err(error))) => error.is_retryable(),
                _ => false,
            };
            if retry && attempt < MAX_ATTEMPTS {
                tracing::debug!(attempt, "transaction conflicted; running it again");
                std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt * attempt)));
                attempt += 1;
                continue;
            }
            result?;
            return outcome.expect("the transaction ran its work");
        }
    }

    /// Runs `work` in one read-only transaction. It must not record audit events: reads of
    /// patient data are audited, so they go through [`Store::write`].
    pub fn read<R, E: TransactionError>(&self, mut work: impl FnMut(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut outcome: Option<Result<R, E>> = None;
        self.backend.read_transaction(&mut |conn| {
            let mut tx = Tx::new(conn);
            let result = work(&mut tx);
            if tx.has_pending_audit() {
                return Err(StoreError::new(
                    StoreErrorKind::Database,
                    "audit events recorded in a read-only transaction",
                ));
            }
            outcome = Some(result);
            Ok(())
        })?;
        outcome.expect("the transaction ran its work")
    }

    /// Runs `work` — a read of patient data, which records its audit events — in one
    /// read-only transaction, concurrently with other readers; then, when it returned `Ok`,
    /// appends its audit events to the chain through the audit writer, which commits the
    /// events of every read waiting at that moment together, and returns only once they are
    /// durable. `work` must write nothing but audit events. When the events cannot be
    /// committed, the result is withheld and the error returned: nothing read leaves Kith
    /// unaudited.
    pub fn read_audited<R, E: TransactionError>(&self, work: impl FnMut(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E> {
        Ok(self.read_then_audit(work)?.wait()?)
    }

    /// [`Store::read_audited`] for callers that should not block while the events are
    /// committed (an async handler): the result comes back held in an [`Audited`], which
    /// gives it up only once its events are durable.
    pub fn read_then_audit<R, E: TransactionError>(
        &self,
        mut work: impl FnMut(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<Audited<R>, E> {
        let reading = self.audit_writer.reading();
        let mut outcome: Option<Result<R, E>> = None;
        let mut records = Vec::new();
        self.backend.read_transaction(&mut |conn| {
            let mut tx = Tx::new(conn);
            let result = work(&mut tx);
            records = tx.take_pending_audit();
            outcome = Some(result);
            Ok(())
        })?;
        let value = outcome.expect("the transaction ran its work")?;
        let ack = if records.is_empty() { None } else { Some(self.audit_writer.submit(records, reading)?) };
        Ok(Audited { value, ack })
    }

    /// Whether a read costs only this process's CPU (SQLite, in process) rather than round
    /// trips to a server: an async caller may then run it in place instead of handing it to
    /// a blocking thread.
    pub fn reads_in_process(&self) -> bool {
        self.backend.dialect() == Dialect::Sqlite
    }

    /// Refreshes PostgreSQL's planner statistics for the tables a feed or an import fills
    /// (`ANALYZE`), which also makes every connection plan its cached statements again.
    /// A bulk load needs it: a statement prepared while a table was nearly empty keeps the
    /// plan it got then (a sequential scan), and without autovacuum nothing replaces it as
    /// the table grows — every lookup then reads the whole table. SQLite needs nothing here
    /// (its planner takes an index for these lookups whatever the statistics).
    pub fn refresh_planner_statistics(&self) -> Result<(), StoreError> {
        if self.dialect() != Dialect::Postgres {
            return Ok(());
        }
        self.backend.write_transaction(&mut |conn| {
            conn.execute_batch(
                "ANALYZE hl7_messages, patients, patient_identifiers, care_links, record_entries, observations, audit_events, outbox",
            )?;
            Ok(Finish::Commit)
        })
    }

    /// Counts `messages` just stored (the HL7 feed and imports); after the first 2,000 and
    /// at each doubling since the store opened, refreshes the planner's statistics on a
    /// thread of its own ([`Store::refresh_planner_statistics`]), so that a database filled
    /// from empty by a feed or an import does not keep the plans of its empty tables.
    pub fn note_growth(&self, messages: u64) {
        use std::sync::atomic::Ordering;
        if self.dialect() != Dialect::Postgres || messages == 0 {
            return;
        }
        let stored = self.growth.stored.fetch_add(messages, Ordering::AcqRel) + messages;
        let next = self.growth.next_refresh.load(Ordering::Acquire);
        if stored < next
            || self
                .growth
                .next_refresh
                .compare_exchange(next, stored.saturating_mul(2), Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new().name("kith-statistics".into()).spawn(move || {
            if let Err(error) = store.refresh_planner_statistics() {
                tracing::warn!(%error, "refreshing the planner's statistics failed; trying again later");
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start refreshing the planner's statistics");
        }
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.ping())
    }
}

/// Applies `migrations` (version, name, SQL) over `conn`, each in its own transaction run by
/// `in_transaction`. Shared by both backends.
pub(crate) fn apply_migrations(
    backend: &dyn Backend,
    migrations: &[(i64, &'static str, &'static str)],
    lock: Option<&'static str>,
) -> Result<MigrationReport, StoreError> {
    backend.write_transaction(&mut |conn| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kith_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )?;
        Ok(Finish::Commit)
    })?;
    let mut applied = Vec::new();
    let mut current_version = 0;
    for &(version, name, sql) in migrations {
        let mut ran = false;
        backend.write_transaction(&mut |conn| {
            if let Some(lock) = lock {
                conn.execute(lock, &[])?;
            }
            let rows = conn.query("SELECT version FROM kith_migrations WHERE version = ?", &[Param::Int(version)])?;
            ran = false;
            if !rows.is_empty() {
                return Ok(Finish::Rollback);
            }
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO kith_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                &[Param::Int(version), Param::Text(name), Param::Int(now_micros())],
            )?;
            ran = true;
            Ok(Finish::Commit)
        })?;
        if ran {
            applied.push(format!("{version:04}_{name}"));
        }
        current_version = version;
    }
    let mut newest = 0;
    backend.read_transaction(&mut |conn| {
        let rows = conn.query("SELECT MAX(version) FROM kith_migrations", &[])?;
        newest = rows.first().map(|row| row.opt_int(0)).transpose()?.flatten().unwrap_or(0);
        Ok(())
    })?;
    if newest > current_version {
        return Err(StoreError::corrupt(format!(
            "the database is at schema version {newest}, newer than this Kith knows ({current_version}): run a newer Kith"
        )));
    }
    Ok(MigrationReport { applied, current_version })
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/kith.db").unwrap(),
            DatabaseUrl::Sqlite("./data/kith.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/kith.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/kith.db".into())
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        let pg = DatabaseUrl::parse("postgres://kith:s3cret@db.internal:5432/kith").unwrap();
        assert_eq!(pg.to_string(), "postgres://kith:***@db.internal:5432/kith");
        assert!(!format!("{pg:?}").contains("s3cret"));
    }
}
