//! Group commit for the audit events of reads.
//!
//! A read of patient data is audited, and the data may not leave Kith before its audit event
//! is durable. Running every read as a write transaction would serialise reads behind the
//! single writer and spend one disk flush on each. Instead, [`crate::Store::read_audited`]
//! reads in a read-only transaction (concurrently with other readers), then hands the
//! audit events it recorded — owned values — to this writer and waits. One thread appends
//! the events of every read waiting at that moment to the hash chain in one write
//! transaction, commits once, and answers each: many reads share one flush.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kith_core::audit::AuditRecord;

use crate::{Backend, Finish, StoreError, StoreErrorKind, Tx};

/// The most reads whose events one transaction appends.
const MAX_GROUP: usize = 512;
/// How many transactions run again after a conflict before the group fails.
const MAX_ATTEMPTS: u32 = 8;

type Reply = SyncSender<Result<(), StoreError>>;

type Queue = SyncSender<(Vec<AuditRecord>, Reply)>;

pub(crate) struct AuditWriter {
    backend: Arc<dyn Backend>,
    /// The queue and the thread, started on first use.
    thread: Mutex<Option<(Queue, JoinHandle<()>)>>,
}

impl Drop for AuditWriter {
    /// Closes the queue and waits for the thread, so that its connections are given back
    /// before the store is gone.
    fn drop(&mut self) {
        let thread = self.thread.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((queue, handle)) = thread {
            drop(queue);
            let _ = handle.join();
        }
    }
}

impl AuditWriter {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend, thread: Mutex::new(None) }
    }

    /// Appends `records` to the audit chain durably, together with those of other reads
    /// waiting now; returns once they are committed (or the commit failed).
    pub(crate) fn append(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let sender = {
            let mut guard = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.get_or_insert_with(|| spawn(self.backend.clone())).0.clone()
        };
        let (reply, answer) = sync_channel(1);
        let gone = || StoreError::new(StoreErrorKind::Unavailable, "the audit writer stopped");
        sender.send((records, reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// Starts the writer thread. It ends when its [`AuditWriter`] (shared by every clone of the
/// store) is dropped.
fn spawn(backend: Arc<dyn Backend>) -> (Queue, JoinHandle<()>) {
    let (sender, receiver) = sync_channel(4 * MAX_GROUP);
    let handle = std::thread::Builder::new()
        .name("kith-audit-writer".into())
        .spawn(move || run(backend.as_ref(), &receiver))
        .expect("the audit writer thread starts");
    (sender, handle)
}

fn run(backend: &dyn Backend, receiver: &Receiver<(Vec<AuditRecord>, Reply)>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let result = commit(backend, &group);
        for (_, reply) in group {
            // A reader that gave up waiting is not an error here.
            let _ = reply.send(result.clone());
        }
    }
}

fn commit(backend: &dyn Backend, group: &[(Vec<AuditRecord>, Reply)]) -> Result<(), StoreError> {
    let mut attempt = 1;
    loop {
        let result = backend.write_transaction(&mut |conn| {
            let mut tx = Tx::new(conn);
            for (records, _) in group {
                for record in records {
                    tx.audit(record.clone());
                }
            }
            tx.flush_audit()?;
            Ok(Finish::Commit)
        });
        match result {
            Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt * attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}
