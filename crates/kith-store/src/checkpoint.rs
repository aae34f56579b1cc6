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

use crate::StoreError;

/// The least time between the starts of two checkpoints of the thread.
pub(crate) const PACE: Duration = Duration::from_millis(20);
/// A commit that leaves at least this many pages in the log checkpoints inline.
pub(crate) const INLINE_PAGES: i32 = 8_000;

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
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, with `connection` (to the same file as `writer`), and hands the
    /// writer's checkpoints to it.
    pub(crate) fn start(writer: &mut Connection, connection: Connection, path: &Path) -> Result<Self, StoreError> {
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
            .map_err(crate::sqlite::map_error)?;
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
    fn passes(&self) -> u64 {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sqlite::SqliteBackend;
    use crate::{Backend, Finish};

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
