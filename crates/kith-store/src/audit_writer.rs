//! Group commit for the audit events of reads.
//!
//! A read of patient data is audited, and the data may not leave Kith before its audit event
//! is durable. Running every read as a write transaction would serialise reads behind the
//! single writer and spend one disk flush on each. Instead, [`crate::Store::read_audited`]
//! reads in a read-only transaction (concurrently with other readers), then hands the
//! audit events it recorded — owned values — to this writer and waits. One thread appends
//! the events of every read waiting at that moment to the hash chain in one write
//! transaction, commits once, and answers each: many reads share one flush.
//!
//! Like PostgreSQL's `commit_delay` with `commit_siblings`, the writer waits a little
//! before committing when other audited reads are under way (they hold a [`Reading`]): it
//! takes their events into the same commit as they arrive, for at most [`GROUP_WINDOW`], and
//! commits at once when no other read is under way. Fewer, larger commits spend fewer
//! flushes, and every commit also makes each reader's SQLite connection drop its page cache
//! at its next read, so fewer commits keep those caches warm for longer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kith_core::audit::AuditRecord;

use crate::conn::{Backend, Finish};
use crate::error::{StoreError, StoreErrorKind};
use crate::tx::Tx;

/// The most reads whose events one transaction appends.
const MAX_GROUP: usize = 512;
/// How many transactions run again after a conflict before the group fails.
const MAX_ATTEMPTS: u32 = 8;
/// How long a commit may wait for the events of reads under way.
const GROUP_WINDOW: Duration = Duration::from_micros(500);

/// The answer to one read's events: set once by the writer, waited for by the reader.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    answered: Condvar,
}

#[derive(Default)]
struct SlotState {
    answer: Option<Result<(), StoreError>>,
    /// The task awaiting the answer, when it is awaited.
    waker: Option<Waker>,
}

/// The writer's side of a [`Slot`]. Dropped unanswered (the writer stopped), it answers
/// with an error, so no reader waits for ever.
struct Reply(Option<Arc<Slot>>);

impl Reply {
    fn new(slot: Arc<Slot>) -> Self {
        Reply(Some(slot))
    }

    fn send(mut self, result: Result<(), StoreError>) {
        if let Some(slot) = self.0.take() {
            answer(&slot, result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            answer(&slot, Err(stopped()));
        }
    }
}

/// Sets the answer and wakes whoever waits for it, a thread or a task.
fn answer(slot: &Slot, result: Result<(), StoreError>) {
    let waker = {
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.answer = Some(result);
        state.waker.take()
    };
    slot.answered.notify_all();
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn stopped() -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, "the audit writer stopped")
}

/// The reader's side: whether its events are durable, waited for on a thread
/// ([`Ack::wait`]) or awaited (it is a future; the writer wakes the task).
pub(crate) struct Ack(Arc<Slot>);

impl Ack {
    pub(crate) fn wait(self) -> Result<(), StoreError> {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = state.answer.take() {
                return result;
            }
            state = self.0.answered.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Future for Ack {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.answer.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

type Queue = SyncSender<(Vec<AuditRecord>, Reply)>;

pub(crate) struct AuditWriter {
    backend: Arc<dyn Backend>,
    /// Audited reads under way whose events are not yet queued.
    reading: Arc<AtomicUsize>,
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
        Self { backend, reading: Arc::new(AtomicUsize::new(0)), thread: Mutex::new(None) }
    }

    /// Marks an audited read as under way until the guard is given to [`Self::append`] or
    /// dropped.
    pub(crate) fn reading(&self) -> Reading {
        self.reading.fetch_add(1, Ordering::AcqRel);
        Reading(self.reading.clone())
    }

    /// Queues `records` to be appended to the audit chain durably, together with those of
    /// other reads waiting now; the [`Ack`] answers once they are committed (or the commit
    /// failed).
    pub(crate) fn submit(&self, records: Vec<AuditRecord>, reading: Reading) -> Result<Ack, StoreError> {
        let sender = {
            let mut guard = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.get_or_insert_with(|| spawn(self.backend.clone(), self.reading.clone())).0.clone()
        };
        // No longer under way: the writer need not wait for this read once it is queued.
        drop(reading);
        let slot = Arc::new(Slot::default());
        sender.send((records, Reply::new(slot.clone()))).map_err(|_| stopped())?;
        Ok(Ack(slot))
    }
}

/// Starts the writer thread. It ends when its [`AuditWriter`] (shared by every clone of the
/// store) is dropped.
fn spawn(backend: Arc<dyn Backend>, reading: Arc<AtomicUsize>) -> (Queue, JoinHandle<()>) {
    let (sender, receiver) = sync_channel(4 * MAX_GROUP);
    let handle = std::thread::Builder::new()
        .name("kith-audit-writer".into())
        .spawn(move || run(backend.as_ref(), &receiver, &reading))
        .expect("the audit writer thread starts");
    (sender, handle)
}

/// An audited read under way (see [`AuditWriter::reading`]).
pub(crate) struct Reading(Arc<AtomicUsize>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run(backend: &dyn Backend, receiver: &Receiver<(Vec<AuditRecord>, Reply)>, reading: &AtomicUsize) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        let deadline = Instant::now() + GROUP_WINDOW;
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) if reading.load(Ordering::Acquire) == 0 => break,
                Err(_) => match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(next) => group.push(next),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                },
            }
        }
        let result = commit(backend, &group);
        for (_, reply) in group {
            reply.send(result.clone());
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
