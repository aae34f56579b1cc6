//! The SQLite backend: the embedded default.
//!
//! One writer connection behind a mutex (SQLite allows one writer at a time; taking it in
//! process avoids `SQLITE_BUSY` between our own threads) and a small pool of readers, which
//! WAL lets run beside the writer. Write transactions start with `BEGIN IMMEDIATE` so a
//! transaction never has to upgrade a read lock. `synchronous=FULL`: a commit is on disk
//! before it returns. Checkpoints run on a thread of their own (`checkpoint`), not
//! in the writer's commits.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

mod checkpoint;
mod errors;

use checkpoint::Checkpointer;
use errors::map_error;

use crate::conn::{Backend, Conn, Dialect, Finish, MigrationReport};
use crate::error::{StoreError, StoreErrorKind};
use crate::pool::Pool;
use crate::value::{Param, Row, Value};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../migrations/sqlite/0001_core.sql")),
    (2, "hl7", include_str!("../migrations/sqlite/0002_hl7.sql")),
    (3, "feed_entries", include_str!("../migrations/sqlite/0003_feed_entries.sql")),
    (4, "api_tokens", include_str!("../migrations/sqlite/0004_api_tokens.sql")),
    (5, "accounts_web", include_str!("../migrations/sqlite/0005_accounts_web.sql")),
    (6, "outbox_delivery", include_str!("../migrations/sqlite/0006_outbox_delivery.sql")),
    (7, "outbox_recipient", include_str!("../migrations/sqlite/0007_outbox_recipient.sql")),
    (8, "professional_details", include_str!("../migrations/sqlite/0008_professional_details.sql")),
    (9, "entry_end", include_str!("../migrations/sqlite/0009_entry_end.sql")),
    (10, "feed_identity", include_str!("../migrations/sqlite/0010_feed_identity.sql")),
    (11, "break_glass_binding", include_str!("../migrations/sqlite/0011_break_glass_binding.sql")),
    (12, "membership_invitations", include_str!("../migrations/sqlite/0012_membership_invitations.sql")),
    (13, "on_behalf_consent", include_str!("../migrations/sqlite/0013_on_behalf_consent.sql")),
    (14, "entry_documents", include_str!("../migrations/sqlite/0014_entry_documents.sql")),
    (15, "notification_settings", include_str!("../migrations/sqlite/0015_notification_settings.sql")),
    (16, "visits_and_welcomes", include_str!("../migrations/sqlite/0016_visits_and_welcomes.sql")),
];

pub struct SqliteBackend {
    path: std::path::PathBuf,
    writer: Mutex<Connection>,
    readers: Pool<Connection>,
    /// Checkpoints the writer's log on a thread of its own (`checkpoint`).
    _checkpointer: Checkpointer,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty())
            && !parent.is_dir()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::unavailable(format!("cannot create the data directory {}: {error}", parent.display()))
            })?;
            owner_only(parent, 0o700)?;
        }
        // The database holds patient data: readable by its owner only, whatever the umask.
        // SQLite gives its -wal and -shm files the mode of the database file.
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(path)
                .map_err(|error| StoreError::unavailable(format!("cannot create {}: {error}", path.display())))?;
        }
        let beside = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        for file in [path.to_owned(), beside("-wal"), beside("-shm")] {
            if file.exists() {
                owner_only(&file, 0o600)?;
            }
        }
        let mut writer = connect(path, true)?;
        let checkpointer = Checkpointer::start(&mut writer, connect(path, false)?, path)?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Pool::new(4, Duration::from_secs(30)),
            _checkpointer: checkpointer,
        })
    }
}

/// Makes a file or directory the owner's only (on Unix).
fn owner_only(path: &Path, mode: u32) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|error| StoreError::unavailable(format!("cannot restrict {}: {error}", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// A plain connection to a Kith SQLite file, for tools and tests that must bypass Kith.
pub fn raw_connection(path: &Path) -> Result<Connection, StoreError> {
    connect(path, false)
}

fn connect(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let connection = Connection::open_with_flags(path, flags)
        .map_err(|error| StoreError::unavailable(format!("cannot open {}: {error}", path.display())))?;
    connection.busy_timeout(Duration::from_secs(10)).map_err(map_error)?;
    // No memory-mapped I/O: the audit writer grows the file with every commit, and each
    // growth made every reader remap the database and fault its pages in again (bench/fhir
    // SQLite: 4,607 requests/s mapped, 5,750 with reads through the page cache).
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -32000;
             PRAGMA mmap_size = 0;",
        )
        .map_err(map_error)?;
    connection.set_prepared_statement_cache_capacity(256);
    // Plans that do not depend on the values bound (the query planner stability guarantee).
    // Without it this SQLite re-prepares a cached statement on its next step whenever a
    // parameter the planner looked at is bound again: five of the six queries of a record
    // read were parsed and planned again on every read.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(map_error)?;
    Ok(connection)
}

struct SqliteConn<'a>(&'a Connection);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(value) => ToSqlOutput::Borrowed(ValueRef::Integer(value)),
            Param::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Param::Bool(value) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(value))),
            Param::Uuid(ref uuid) => ToSqlOutput::Borrowed(ValueRef::Blob(uuid.as_bytes())),
            Param::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        })
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(map_error)?;
        let changed = statement.execute(rusqlite::params_from_iter(params.iter())).map_err(map_error)?;
        Ok(changed as u64)
    }

    fn query_each(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = self.0.prepare_cached(sql).map_err(map_error)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter())).map_err(map_error)?;
        let mut out = Row::default();
        out.resize(columns);
        while let Some(row) = rows.next().map_err(map_error)? {
            for index in 0..columns {
                match row.get_ref(index).map_err(map_error)? {
                    ValueRef::Null => out.set(index, Value::Null),
                    ValueRef::Integer(value) => out.set(index, Value::Int(value)),
                    ValueRef::Real(value) => out.set(index, Value::Int(value as i64)),
                    ValueRef::Text(text) => match std::str::from_utf8(text) {
                        Ok(text) => out.set_text(index, text),
                        Err(_) => out.set_text(index, &String::from_utf8_lossy(text)),
                    },
                    ValueRef::Blob(bytes) => out.set_bytes(index, bytes),
                }
            }
            each(&out)?;
        }
        Ok(())
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.0.execute_batch(sql).map_err(map_error)
    }
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn write_transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<Finish, StoreError>,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poison| poison.into_inner());
        let transaction = writer.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
        match work(&mut SqliteConn(&transaction))? {
            Finish::Commit => transaction.commit().map_err(map_error),
            Finish::Rollback => transaction.rollback().map_err(map_error),
        }
    }

    fn read_transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.readers.with(
            || connect(&self.path, false),
            |reader| {
                let result = (|| {
                    let transaction = reader.transaction().map_err(map_error)?;
                    work(&mut SqliteConn(&transaction))?;
                    transaction.rollback().map_err(map_error)
                })();
                let broken = matches!(&result, Err(error) if error.kind == StoreErrorKind::Unavailable);
                (result, broken)
            },
        )?
    }

    fn migrate(&self) -> Result<MigrationReport, StoreError> {
        crate::migrations::apply_migrations(self, MIGRATIONS, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite is built with the options `.cargo/config.toml` gives it (no memory
    /// statistics: a process-wide mutex less on every allocation).
    #[test]
    fn the_bundled_sqlite_keeps_no_memory_statistics() {
        let connection = Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> =
            statement.query_map([], |row| row.get::<_, String>(0)).unwrap().collect::<Result<_, _>>().unwrap();
        for wanted in ["DEFAULT_MEMSTATUS=0", "DISABLE_PAGECACHE_OVERFLOW_STATS"] {
            assert!(options.iter().any(|option| option == wanted), "{wanted} missing from {options:?}");
        }
    }

    // ----- the checkpoint thread (`checkpoint`) with the backend it serves ----------------

    use std::time::Instant;

    use super::checkpoint::{INLINE_PAGES, PACE};

    const PAGE: u64 = 4096;

    /// Appends `pages` pages of fresh rows in one write transaction.
    fn write_pages(backend: &SqliteBackend, pages: usize) {
        backend
            .write_transaction(&mut |conn| {
                conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (bytes BLOB NOT NULL)")?;
                for _ in 0..pages {
                    conn.execute("INSERT INTO filler (bytes) VALUES (randomblob(4000))", &[])?;
                }
                Ok(Finish::Commit)
            })
            .unwrap();
    }

    fn rows(backend: &SqliteBackend) -> i64 {
        let mut count = None;
        backend
            .read_transaction(&mut |conn| {
                count = conn.query("SELECT COUNT(*) FROM filler", &[])?.first().map(|row| row.int(0)).transpose()?;
                Ok(())
            })
            .unwrap();
        count.expect("a count")
    }

    /// Waits (up to 20 s) until `done` holds.
    fn wait_for_a_checkpoint(done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(20), "no background checkpoint within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A new database in a directory of its own.
    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db");
        let backend = SqliteBackend::open(&path).unwrap();
        (dir, path, backend)
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
    }

    #[test]
    fn a_commit_s_pages_are_copied_back_by_the_thread_not_the_writer() {
        let (_dir, path, backend) = fresh();
        write_pages(&backend, 1_200);
        // The commit asked the thread (below the inline threshold the writer copies nothing
        // back itself); the thread copies the pages into the database file.
        wait_for_a_checkpoint(|| backend._checkpointer.passes() > 0 && size(&path) >= 1_200 * PAGE);
        let rows = rows(&backend);
        assert_eq!(rows, 1_200);
    }

    #[test]
    fn the_log_stays_bounded_under_a_writer_that_never_pauses() {
        let (dir, _path, backend) = fresh();
        let wal = dir.path().join("kith.db-wal");
        // Each frame is a page and a 24-byte header; the log may reach the inline threshold
        // plus one transaction's frames before the writer checkpoints it.
        let per_transaction = 400;
        let bound = (INLINE_PAGES as u64 + 2 * per_transaction as u64) * (PAGE + 24);
        for _ in 0..40 {
            write_pages(&backend, per_transaction);
            assert!(size(&wal) <= bound, "the log grew to {} bytes (bound {bound})", size(&wal));
        }
    }

    #[test]
    fn a_steady_writer_gets_at_most_one_checkpoint_per_pace_not_one_per_commit() {
        let (_dir, _path, backend) = fresh();
        // Small commits, one after the other, as a feed makes them.
        let started = Instant::now();
        let commits = 600;
        for _ in 0..commits {
            write_pages(&backend, 5);
        }
        let elapsed = started.elapsed();
        let at_most = (elapsed.as_micros() / PACE.as_micros()) as u64 + 1;
        let passes = backend._checkpointer.passes();
        assert!(passes <= at_most, "{passes} background checkpoints for {commits} commits in {elapsed:?}");
        // And the thread did run (on a loaded machine perhaps only after the last commit).
        wait_for_a_checkpoint(|| backend._checkpointer.passes() > 0);
    }

    #[test]
    fn closing_the_store_stops_the_thread_and_removes_the_log() {
        let (dir, path, backend) = fresh();
        write_pages(&backend, 1_100);
        drop(backend);
        // The last connection to close checkpoints and deletes the log: the thread's
        // connection was closed, not left behind.
        assert!(!dir.path().join("kith.db-wal").exists());
        let backend = SqliteBackend::open(&path).unwrap();
        assert_eq!(rows(&backend), 1_100);
    }
}
