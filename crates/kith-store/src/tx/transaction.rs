//! The transaction itself: the connection it runs on, the audit events waiting for commit,
//! and the few helpers every query uses (one row, all rows, whether a row exists, a
//! savepoint).

use kith_core::audit::AuditRecord;

use crate::conn::{Conn, Dialect};
use crate::error::StoreError;
use crate::value::{Param, Row};

/// One transaction's view of the database. Created by [`crate::Store::write`] or
/// [`crate::Store::read`]; audit events recorded with [`Tx::audit`] join the chain at commit.
pub struct Tx<'c> {
    pub(super) conn: &'c mut dyn Conn,
    pub(super) pending_audit: Vec<AuditRecord>,
    /// A write transaction that will not be run again if it fails (see
    /// [`Tx::is_last_attempt`]).
    pub(crate) last_attempt: bool,
}

impl<'c> Tx<'c> {
    pub(crate) fn new(conn: &'c mut dyn Conn) -> Self {
        Self { conn, pending_audit: Vec::new(), last_attempt: true }
    }

    /// Whether this is the last time [`crate::Store::write`] runs this transaction: a
    /// conflict met now is returned to the caller rather than retried. A use case that can
    /// tell a race from a lasting fault (the same unique constraint on every attempt) asks.
    pub fn is_last_attempt(&self) -> bool {
        self.last_attempt
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The first row, mapped.
    pub(super) fn one<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut first = None;
        self.conn.query_each(sql, params, &mut |row| {
            if first.is_none() {
                first = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// Every row, mapped as it is read.
    pub(super) fn all<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.conn.query_each(sql, params, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    pub(crate) fn exists(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<bool, StoreError> {
        let mut found = false;
        self.conn.query_each(sql, params, &mut |_| {
            found = true;
            Ok(())
        })?;
        Ok(found)
    }

    pub fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.query("SELECT 1", &[]).map(drop)
    }

    /// Runs `work` inside a savepoint: on `Err` everything it wrote — rows, outbox messages
    /// and the audit events it recorded — is undone, and the transaction goes on.
    pub fn savepoint<R, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.conn.execute("SAVEPOINT kith_step", &[])?;
        let audit_mark = self.pending_audit.len();
        match work(self) {
            Ok(value) => {
                self.conn.execute("RELEASE SAVEPOINT kith_step", &[])?;
                Ok(value)
            }
            Err(error) => {
                self.conn.execute("ROLLBACK TO SAVEPOINT kith_step", &[])?;
                self.conn.execute("RELEASE SAVEPOINT kith_step", &[])?;
                self.pending_audit.truncate(audit_mark);
                Err(error)
            }
        }
    }

    /// Records an audit event; it joins the chain when the transaction commits.
    pub fn audit(&mut self, record: AuditRecord) {
        self.pending_audit.push(record);
    }

    /// The audit events recorded so far, taken out (for [`crate::Store::read_audited`]).
    pub(crate) fn take_pending_audit(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.pending_audit)
    }

    pub(crate) fn has_pending_audit(&self) -> bool {
        !self.pending_audit.is_empty()
    }
}
