//! The small interface each backend implements: a connection inside one transaction
//! ([`Conn`]) and the transaction discipline and migrations ([`Backend`]).

use crate::error::StoreError;
use crate::value::{Param, Row};

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
