//! The audit trail: appending a transaction's events to the hash chain at commit, and
//! reading the chain back (verification, export, a patient's access log).

use kith_core::audit::{ChainedEvent, StoredAuditRecord, event_hash};
use kith_core::{AccountId, PatientId};
use uuid::Uuid;

use super::bulk::insert_statements;
use super::rows::{audit_columns, audit_from, hash_from};
use super::transaction::Tx;
use crate::conn::Dialect;
use crate::error::StoreError;
use crate::value::Param;

impl Tx<'_> {
    /// Appends the pending events to the chain. Done last, so that on PostgreSQL the chain
    /// head is locked only for the end of the transaction.
    pub(crate) fn flush_audit(&mut self) -> Result<(), StoreError> {
        if self.pending_audit.is_empty() {
            return Ok(());
        }
        let head_sql = match self.dialect() {
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        };
        let (mut seq, mut hash) = self
            .one(head_sql, &[], |row| Ok((row.int(0)?, hash_from(row.bytes(1)?)?)))?
            .ok_or_else(|| StoreError::corrupt("the audit chain head is missing"))?;
        // Chain the events, then write them with multi-row inserts (one round trip per up to
        // 128 events instead of one per event).
        let mut chained = Vec::with_capacity(self.pending_audit.len());
        for record in std::mem::take(&mut self.pending_audit) {
            let stored = StoredAuditRecord::from(&record);
            seq += 1;
            let next = event_hash(&hash, seq, &stored);
            chained.push((seq, stored, hash, next));
            hash = next;
        }
        static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let statements =
            insert_statements(&SQL, concat!("INSERT INTO audit_events (", audit_columns!(), ") VALUES"), 18);
        self.insert_in_chunks(statements, &chained, |(seq, stored, prev, next), params| {
            params.extend([
                Param::Int(*seq),
                stored.at.into(),
                Param::Text(&stored.actor_kind),
                stored.actor_account.into(),
                stored.actor_name.as_ref().into(),
                Param::Text(&stored.channel),
                stored.organisation.into(),
                stored.acting_team.into(),
                stored.patient.into(),
                Param::Text(&stored.action),
                Param::Text(&stored.outcome),
                stored.basis.as_ref().into(),
                Param::Text(&stored.entry_kinds),
                Param::Int(i64::from(stored.labels)),
                stored.subject.as_ref().into(),
                stored.reason.as_ref().into(),
                Param::Bytes(prev),
                Param::Bytes(next),
            ]);
        })?;
        self.conn
            .execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", &[seq.into(), Param::Bytes(&hash)])?;
        Ok(())
    }

    /// The chain head: the last event's sequence number and hash.
    pub fn audit_head(&mut self) -> Result<(i64, [u8; 32]), StoreError> {
        self.one("SELECT seq, hash FROM audit_head WHERE id = 1", &[], |row| {
            Ok((row.int(0)?, hash_from(row.bytes(1)?)?))
        })?
        .ok_or_else(|| StoreError::corrupt("the audit chain head is missing"))
    }

    /// Up to `limit` events after `seq`, in order (for verification and export).
    pub fn audit_events_after(&mut self, seq: i64, limit: i64) -> Result<Vec<ChainedEvent>, StoreError> {
        self.all(
            concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[seq.into(), limit.into()],
            audit_from,
        )
    }

    /// [`Tx::audit_events_after`] for the chain's verification: a row that cannot be read as an
    /// event (a damaged column) is `Err(seq)` instead of failing the whole read.
    pub fn audit_events_after_checked(
        &mut self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Result<ChainedEvent, i64>>, StoreError> {
        self.all(
            concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[seq.into(), limit.into()],
            |row| Ok(audit_from(row).map_err(|_| row.int(0).unwrap_or(seq + 1))),
        )
    }

    /// The newest `limit` events about a patient, newest first, leaving out those by
    /// `except_actor` (the patient's own, in their access log).
    /// A patient's events, newest first: all, or all but `except_actor`'s; those before the
    /// event `before` (the last of the page before), at most `limit`.
    pub fn audit_events_for_patient(
        &mut self,
        patient: PatientId,
        except_actor: Option<AccountId>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE patient_id = ? AND (? OR actor_account_id IS NULL OR actor_account_id <> ?)
              AND (? OR seq < ?) ORDER BY seq DESC LIMIT ?"
        );
        let except = except_actor.map(|account| account.as_uuid()).unwrap_or(Uuid::nil());
        let params = [
            patient.into(),
            except_actor.is_none().into(),
            except.into(),
            before.is_none().into(),
            before.unwrap_or_default().into(),
            limit.into(),
        ];
        self.all(sql, &params, audit_from)
    }
}
