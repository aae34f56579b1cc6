//! The outbox: a message written with the change that causes it ([`Tx::enqueue`]), and its
//! delivery: claiming due messages under a lease, recording each outcome, and counting
//! messages for a status display. Which message it is (`template`) and what it carries
//! (`payload`) are kith-app's (`kith_app::outbox::Notice`); the store keeps them as text.
//!
//! A message moves `pending` → `sending` (claimed) → `sent`, or → `failed` (due again at
//! `next_attempt_at`) → `sending` → … → `dead`. Letters are never claimed here: they are
//! exported as a batch by another command. The raw code a message carries (`secret`) is
//! cleared as soon as the message is sent or dead.

use std::time::Duration;

use kith_core::Timestamp;
use uuid::Uuid;

use super::transaction::Tx;
use crate::conn::Dialect;
use crate::error::StoreError;
use crate::value::{Param, Row};

/// A message for the outbox, written in the transaction of the change that causes it and
/// delivered later by the outbox worker (`kith-app`'s `deliver_outbox`).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    /// `email`, `sms` or `letter`.
    pub channel: &'static str,
    /// Which message this is: `kith_app::outbox::Notice::template`, read back by
    /// `Notice::read` (the store keeps it as text).
    pub template: String,
    pub recipient: String,
    /// Identifiers only: never health information.
    pub payload: String,
    /// The raw one-time code the message carries (a password-reset or invitation code),
    /// kept only until the message is sent or given up.
    pub secret: Option<String>,
    pub created_at: Timestamp,
}

/// Never prints the secret or the recipient.
impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .field("payload", &self.payload)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A stored outbox message and its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub message: OutboxMessage,
    /// `pending`, `sending`, `sent`, `failed` or `dead`.
    pub status: String,
    /// Attempts that failed (or were abandoned by a worker that stopped mid-send).
    pub attempts: i64,
    /// When a `pending` or `failed` message is due; for `sending`, when its lease runs out;
    /// for `dead`, when it was given up.
    pub next_attempt_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// A short description of the last failure, free of recipients and content.
    pub last_error: Option<String>,
}

macro_rules! outbox_columns {
    () => {
        "id, channel, template, recipient, payload, secret, created_at, status, attempts, next_attempt_at, sent_at, last_error"
    };
}

/// Every outbox status, in the order a message meets them.
pub const OUTBOX_STATUSES: &[&str] = &["pending", "sending", "sent", "failed", "dead"];

/// How many messages of one channel are in one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxCount {
    pub channel: String,
    pub status: String,
    pub count: i64,
}

/// Claims in one statement: the rows chosen by the subquery are re-checked by the outer
/// `WHERE` after any wait for a row lock, so that of two workers racing for a row only one
/// updates it. A `sending` row whose lease ran out was abandoned by a worker that stopped
/// mid-send: claiming it again counts that attempt. PostgreSQL skips rows another worker
/// has locked instead of waiting for them.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET status = 'sending', next_attempt_at = ?,
                 attempts = attempts + CASE WHEN status = 'sending' THEN 1 ELSE 0 END,
                 last_error = CASE WHEN status = 'sending' THEN 'delivery interrupted (lease ran out)' ELSE last_error END
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE status IN ('pending', 'failed', 'sending') AND channel IN ('email', 'sms') AND next_attempt_at <= ?
                 ORDER BY created_at, id LIMIT ?",
            $lock,
            ")
               AND status IN ('pending', 'failed', 'sending') AND channel IN ('email', 'sms') AND next_attempt_at <= ?
             RETURNING ",
            outbox_columns!()
        )
    };
}

impl Tx<'_> {
    /// Claims up to `limit` email and SMS messages that are due at `now` — `pending` or
    /// `failed` with `next_attempt_at <= now`, or `sending` whose lease ran out — oldest
    /// first, marking them `sending` until `now + lease`. A message is claimed by one
    /// caller only, even with several workers on several nodes.
    pub fn claim_due_outbox(
        &mut self,
        now: Timestamp,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => claim_sql!(""),
            Dialect::Postgres => claim_sql!(" FOR UPDATE SKIP LOCKED"),
        };
        let mut claimed =
            self.all(sql, &[now.plus(lease).into(), now.into(), limit.into(), now.into()], outbox_row_from)?;
        // RETURNING promises no order.
        claimed.sort_by_key(|row| (row.message.created_at, row.message.id));
        Ok(claimed)
    }

    /// Records that the message was delivered: `sent`, with its code forgotten. Returns
    /// whether the message was there to update (and not already sent).
    pub fn mark_outbox_sent(&mut self, id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, secret = NULL, last_error = NULL WHERE id = ? AND status <> 'sent'",
            &[now.into(), id.into()],
        )?;
        Ok(changed > 0)
    }

    /// Records a failed attempt of a claimed message: `failed` and due again at
    /// `next_attempt_at`, or, without one, `dead` (given up at `now`, its code forgotten).
    /// `error` is a short description free of recipients and content. Returns whether the
    /// message was still claimed (a message sent meanwhile is left alone).
    pub fn mark_outbox_failed(
        &mut self,
        id: Uuid,
        now: Timestamp,
        error: &str,
        next_attempt_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let changed = match next_attempt_at {
            Some(next) => self.conn.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, next_attempt_at = ?
                 WHERE id = ? AND status = 'sending'",
                &[error.into(), next.into(), id.into()],
            )?,
            None => self.conn.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?, next_attempt_at = ?, secret = NULL
                 WHERE id = ? AND status = 'sending'",
                &[error.into(), now.into(), id.into()],
            )?,
        };
        Ok(changed > 0)
    }

    /// How many messages there are per channel and status.
    pub fn outbox_counts(&mut self) -> Result<Vec<OutboxCount>, StoreError> {
        self.all(
            "SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status",
            &[],
            |row| {
                Ok(OutboxCount {
                    channel: row.text(0)?.to_owned(),
                    status: row.text(1)?.to_owned(),
                    count: row.int(2)?,
                })
            },
        )
    }

    /// The newest `limit` messages, newest first, of one status or of all.
    pub fn recent_outbox(&mut self, status: Option<&str>, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        match status {
            Some(status) => self.all(
                concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?"
                ),
                &[status.into(), limit.into()],
                outbox_row_from,
            ),
            None => self.all(
                concat!("SELECT ", outbox_columns!(), " FROM outbox ORDER BY created_at DESC, id DESC LIMIT ?"),
                &[limit.into()],
                outbox_row_from,
            ),
        }
    }
}

impl Tx<'_> {
    // ----- outbox ------------------------------------------------------------------------

    pub fn enqueue(&mut self, message: &OutboxMessage) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO outbox (id, channel, template, recipient, payload, secret, status, attempts, next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            &[
                message.id.into(),
                message.channel.into(),
                Param::Text(&message.template),
                Param::Text(&message.recipient),
                Param::Text(&message.payload),
                message.secret.as_deref().into(),
                message.created_at.into(),
                message.created_at.into(),
            ],
        )?;
        Ok(())
    }

    /// Outbox messages, oldest first.
    pub fn outbox(&mut self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.all(
            concat!("SELECT ", outbox_columns!(), " FROM outbox ORDER BY created_at, id LIMIT ?"),
            &[limit.into()],
            outbox_row_from,
        )
    }
}

fn outbox_row_from(row: &Row) -> Result<OutboxRow, StoreError> {
    let channel = row.text(1)?;
    Ok(OutboxRow {
        message: OutboxMessage {
            id: row.uuid(0)?,
            channel: ["email", "sms", "letter"]
                .into_iter()
                .find(|known| *known == channel)
                .ok_or_else(|| StoreError::corrupt(format!("stored outbox channel {channel:?} is unknown")))?,
            template: row.text(2)?.to_owned(),
            recipient: row.text(3)?.to_owned(),
            payload: row.text(4)?.to_owned(),
            secret: row.opt_text(5)?.map(str::to_owned),
            created_at: row.timestamp(6)?,
        },
        status: row.text(7)?.to_owned(),
        attempts: row.int(8)?,
        next_attempt_at: row.timestamp(9)?,
        sent_at: row.opt_timestamp(10)?,
        last_error: row.opt_text(11)?.map(str::to_owned),
    })
}
