//! The SQLite backend: the embedded default.
//!
//! One writer connection behind a mutex (SQLite allows one writer at a time; taking it in
//! process avoids `SQLITE_BUSY` between our own threads) and a small pool of readers, which
//! WAL lets run beside the writer. Write transactions start with `BEGIN IMMEDIATE` so a
//! transaction never has to upgrade a read lock. `synchronous=FULL`: a commit is on disk
//! before it returns. Checkpoints run on a thread of their own (`crate::checkpoint`), not
//! in the writer's commits.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::checkpoint::Checkpointer;
use crate::pool::Pool;
use crate::{Backend, Conn, Dialect, Finish, MigrationReport, Param, Row, StoreError, StoreErrorKind, Value};

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
];

pub struct SqliteBackend {
    path: std::path::PathBuf,
    writer: Mutex<Connection>,
    readers: Pool<Connection>,
    /// Checkpoints the writer's log on a thread of its own (crate::checkpoint).
    pub(crate) _checkpointer: Checkpointer,
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

pub(crate) fn map_error(error: rusqlite::Error) -> StoreError {
    let kind = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Conflict,
        Some(ErrorCode::ConstraintViolation) => {
            let message = error.to_string();
            if message.contains("UNIQUE") || message.contains("PRIMARY KEY") {
                StoreErrorKind::Duplicate
            } else {
                StoreErrorKind::Database
            }
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => {
            StoreErrorKind::Unavailable
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Database,
    };
    StoreError::new(kind, error.to_string())
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
        crate::apply_migrations(self, MIGRATIONS, None)
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
}
