//! SQLite checkpoints on a thread of their own.
//!
//! In WAL mode a commit appends pages to the write-ahead log; a checkpoint copies them back
//! into the database file and syncs it. By default SQLite runs that checkpoint inside the
//! commit that takes the log past 1,000 pages, on the committing thread: the writer (an
//! import, the feed, the audit writer answering reads) stops for the copy and the sync of
//! 4 MB. Instead, the writer connection's WAL hook asks this thread, which checkpoints with
//! its own connection (`PASSIVE`: it waits for no reader and no writer) while the writer
//! goes on.
//!
//! The thread checkpoints whenever the log has grown, at most once per [`PACE`]. Both
//! bounds were measured (bench/RESULTS.md): asked only once per 1,000 pages, each
//! checkpoint synced megabytes at once and the writer's own syncs waited behind it (FHIR
//! searches' p99 26–31 ms against 10–12); asked after every commit with no pace, a
//! steady feed paid a checkpoint and a file sync per commit (MLLP 4,299 messages/s
//! against 5,784).
//!
//! A log only starts again from its beginning when a write transaction begins with every
//! frame copied back, which a checkpointer running beside a writer that never pauses may
//! not see. So that the log stays bounded, the writer checkpoints inline, as SQLite would,
//! once the log reaches [`INLINE_PAGES`]; by then the thread has copied nearly all of it and
//! the inline pass has little left to do.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode};

use super::errors::map_error;
use crate::error::StoreError;

/// The least time between the starts of two checkpoints of the thread.
pub(super) const PACE: Duration = Duration::from_millis(20);
/// A commit that leaves at least this many pages in the log checkpoints inline.
pub(super) const INLINE_PAGES: i32 = 8_000;

#[derive(Default)]
struct State {
    /// The log has grown since the thread's last checkpoint began.
    requested: bool,
    /// The thread waits for a request (not pacing itself or checkpointing): a request must
    /// wake it.
    idle: bool,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints the thread has run.
    passes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a checkpoint; wakes the thread only when it waits for one.
    fn request(&self) {
        let mut state = self.lock();
        if !state.requested {
            state.requested = true;
            if state.idle {
                drop(state);
                self.wake.notify_one();
            }
        }
    }
}

/// The checkpoint thread of one database file. Dropping it stops the thread and closes its
/// connection.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, with `connection` (to the same file as `writer`), and hands the
    /// writer's checkpoints to it.
    pub(super) fn start(writer: &mut Connection, connection: Connection, path: &Path) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::default());
        let asking = shared.clone();
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages >= INLINE_PAGES {
                    // The thread has fallen behind, or the writer never paused: bound the
                    // log here. Busy (the thread is checkpointing) is fine: the next
                    // commit tries again.
                    if let Err(error) = wal.checkpoint() {
                        tracing::debug!(%error, "inline checkpoint skipped");
                    }
                } else if pages > 0 {
                    asking.request();
                }
                // An error here would fail the statement whose commit has already happened.
                Ok(())
            }))
            .map_err(map_error)?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kith-checkpoint".into())
            .spawn(move || run(&connection, &thread_shared))
            .map_err(|error| {
                StoreError::unavailable(format!("cannot start the checkpoint thread for {}: {error}", path.display()))
            })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// How many checkpoints the thread has run.
    #[cfg(test)]
    pub(super) fn passes(&self) -> u64 {
        self.shared.passes.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(connection: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            state.idle = true;
            while !state.requested && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.idle = false;
            if state.stopping {
                return;
            }
            state.requested = false;
        }
        let started = Instant::now();
        match connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok(_) => {
                shared.passes.fetch_add(1, Ordering::Relaxed);
            }
            // Another connection is checkpointing (the writer inline, another process).
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                tracing::debug!("background checkpoint skipped: another is under way");
            }
            Err(error) => tracing::warn!(%error, "a background checkpoint failed; the writer will checkpoint inline"),
        }
        let mut state = shared.lock();
        while !state.stopping && started.elapsed() < PACE {
            let left = PACE.saturating_sub(started.elapsed());
            state = shared.wake.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        if state.stopping {
            return;
        }
    }
}
