//! The store: a backend plus the transaction discipline every use case goes through.

use std::sync::Arc;

use crate::audit_writer;
use crate::conn::{Backend, Dialect, Finish, MigrationReport};
use crate::error::{StoreError, StoreErrorKind, TransactionError};
use crate::postgres;
use crate::sqlite;
use crate::tx::Tx;
use crate::url::DatabaseUrl;

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
