//! The PostgreSQL backend.
//!
//! Synchronous `postgres` clients in a small pool: use cases are synchronous closures run on
//! a blocking thread, so a transaction holds one connection from start to commit. Write
//! transactions run at READ COMMITTED; the few invariants that need serialising (the audit
//! chain head, a team's coordinators) take row locks with `FOR UPDATE`.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, IsolationLevel, NoTls, Statement};

use crate::conn::{Backend, Conn, Dialect, Finish, MigrationReport};
use crate::error::{StoreError, StoreErrorKind};
use crate::pool::Pool;
use crate::value::{Param, Row, Value};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("../migrations/postgres/0001_core.sql")),
    (2, "hl7", include_str!("../migrations/postgres/0002_hl7.sql")),
    (3, "feed_entries", include_str!("../migrations/postgres/0003_feed_entries.sql")),
    (4, "api_tokens", include_str!("../migrations/postgres/0004_api_tokens.sql")),
    (5, "accounts_web", include_str!("../migrations/postgres/0005_accounts_web.sql")),
    (6, "outbox_delivery", include_str!("../migrations/postgres/0006_outbox_delivery.sql")),
    (7, "outbox_recipient", include_str!("../migrations/postgres/0007_outbox_recipient.sql")),
    (8, "professional_details", include_str!("../migrations/postgres/0008_professional_details.sql")),
    (9, "entry_end", include_str!("../migrations/postgres/0009_entry_end.sql")),
    (10, "feed_identity", include_str!("../migrations/postgres/0010_feed_identity.sql")),
    (11, "break_glass_binding", include_str!("../migrations/postgres/0011_break_glass_binding.sql")),
    (12, "membership_invitations", include_str!("../migrations/postgres/0012_membership_invitations.sql")),
    (13, "on_behalf_consent", include_str!("../migrations/postgres/0013_on_behalf_consent.sql")),
    (14, "entry_documents", include_str!("../migrations/postgres/0014_entry_documents.sql")),
    (15, "notification_settings", include_str!("../migrations/postgres/0015_notification_settings.sql")),
    (16, "visits_and_welcomes", include_str!("../migrations/postgres/0016_visits_and_welcomes.sql")),
];

/// Serialises concurrent migrations (several Kith nodes starting at once).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7235891)";

pub struct PostgresBackend {
    url: String,
    pool: Pool<PgConnection>,
}

struct PgConnection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PostgresBackend {
    /// Opens the pool and checks that one connection can be made.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let backend = Self { url: url.to_owned(), pool: Pool::new(16, Duration::from_secs(30)) };
        backend.pool.with(|| backend.connect(), |_| ((), false))?;
        Ok(backend)
    }

    fn connect(&self) -> Result<PgConnection, StoreError> {
        let mut config: postgres::Config =
            self.url.parse().map_err(|error| StoreError::unavailable(format!("invalid PostgreSQL URL: {error}")))?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("kith");
        let client = config.connect(NoTls).map_err(map_error)?;
        Ok(PgConnection { client, statements: HashMap::new() })
    }

    fn transaction(
        &self,
        read_only: bool,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<Finish, StoreError>,
    ) -> Result<(), StoreError> {
        self.pool.with(
            || self.connect(),
            |connection| {
                let result = (|| {
                    let mut transaction = connection
                        .client
                        .build_transaction()
                        .isolation_level(IsolationLevel::ReadCommitted)
                        .read_only(read_only)
                        .start()
                        .map_err(map_error)?;
                    let finish =
                        work(&mut PgConn { transaction: &mut transaction, statements: &mut connection.statements })?;
                    match finish {
                        Finish::Commit => transaction.commit().map_err(map_error),
                        Finish::Rollback => transaction.rollback().map_err(map_error),
                    }
                })();
                let broken = connection.client.is_closed();
                (result, broken)
            },
        )?
    }
}

/// Maps a PostgreSQL error to a store error, keeping the server's message for operators.
pub(crate) fn map_error(error: postgres::Error) -> StoreError {
    let kind = match error.code() {
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED => {
            StoreErrorKind::Conflict
        }
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreErrorKind::Duplicate,
        Some(_) => StoreErrorKind::Database,
        None if error.is_closed() => StoreErrorKind::Unavailable,
        None if error.source().is_some_and(|source| source.is::<std::io::Error>()) => StoreErrorKind::Unavailable,
        None => StoreErrorKind::Database,
    };
    let message = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    };
    StoreError::new(kind, message)
}

/// Rewrites `?` placeholders as `$1, $2, …`. Kith's SQL has no `?` inside literals.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 1;
    for c in sql.chars() {
        if c == '?' {
            out.push('$');
            out.push_str(&next.to_string());
            next += 1;
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(value) if *ty == Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
            Param::Int(value) if *ty == Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
            Param::Int(value) => value.to_sql(ty, out),
            Param::Text(text) => text.to_sql(ty, out),
            Param::Bool(value) => value.to_sql(ty, out),
            Param::Uuid(uuid) => uuid.to_sql(ty, out),
            Param::Bytes(bytes) => bytes.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

struct PgConn<'t, 'c> {
    transaction: &'t mut postgres::Transaction<'c>,
    statements: &'t mut HashMap<&'static str, Statement>,
}

impl PgConn<'_, '_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.transaction.prepare(&numbered_placeholders(sql)).map_err(map_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

fn to_sql_params<'p>(params: &'p [Param<'p>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|param| param as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn<'_, '_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.transaction.execute(&statement, &to_sql_params(params)).map_err(map_error)
    }

    fn query_each(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let rows = self.transaction.query(&statement, &to_sql_params(params)).map_err(map_error)?;
        let mut out = Row::default();
        out.resize(statement.columns().len());
        for row in &rows {
            for (index, column) in row.columns().iter().enumerate() {
                let ty = column.type_();
                let get_error =
                    |error: postgres::Error| StoreError::corrupt(format!("column {}: {error}", column.name()));
                if *ty == Type::INT8 {
                    let value = row.try_get::<_, Option<i64>>(index).map_err(get_error)?;
                    out.set(index, value.map_or(Value::Null, Value::Int));
                } else if *ty == Type::INT4 {
                    let value = row.try_get::<_, Option<i32>>(index).map_err(get_error)?;
                    out.set(index, value.map_or(Value::Null, |v| Value::Int(v.into())));
                } else if *ty == Type::INT2 {
                    let value = row.try_get::<_, Option<i16>>(index).map_err(get_error)?;
                    out.set(index, value.map_or(Value::Null, |v| Value::Int(v.into())));
                } else if *ty == Type::BOOL {
                    let value = row.try_get::<_, Option<bool>>(index).map_err(get_error)?;
                    out.set(index, value.map_or(Value::Null, Value::Bool));
                } else if *ty == Type::UUID {
                    let value = row.try_get::<_, Option<uuid::Uuid>>(index).map_err(get_error)?;
                    out.set(index, value.map_or(Value::Null, Value::Uuid));
                } else if *ty == Type::BYTEA {
                    match row.try_get::<_, Option<&[u8]>>(index).map_err(get_error)? {
                        Some(bytes) => out.set_bytes(index, bytes),
                        None => out.set(index, Value::Null),
                    }
                } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::BPCHAR || *ty == Type::NAME {
                    match row.try_get::<_, Option<&str>>(index).map_err(get_error)? {
                        Some(text) => out.set_text(index, text),
                        None => out.set(index, Value::Null),
                    }
                } else {
                    return Err(StoreError::corrupt(format!("column {} has unsupported type {ty}", column.name())));
                }
            }
            each(&out)?;
        }
        Ok(())
    }

    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.transaction.batch_execute(sql).map_err(map_error)
    }
}

impl Backend for PostgresBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn write_transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<Finish, StoreError>,
    ) -> Result<(), StoreError> {
        self.transaction(false, work)
    }

    fn read_transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.transaction(true, &mut |conn| {
            work(conn)?;
            Ok(Finish::Rollback)
        })
    }

    fn migrate(&self) -> Result<MigrationReport, StoreError> {
        crate::migrations::apply_migrations(self, MIGRATIONS, Some(MIGRATION_LOCK))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            super::numbered_placeholders("SELECT a FROM t WHERE b = ? AND c = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
    }
}
