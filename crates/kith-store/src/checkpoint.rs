//! SQLite checkpoints on a thread of their own.
//!
//! In WAL mode a commit appends pages to the write-ahead log; a checkpoint copies them back
//! into the database file and syncs it. By default SQLite runs that checkpoint inside the
//! commit that takes the log past 1,000 pages, on the committing thread: the writer (an
//! import, the feed, the audit writer answering reads) stops for the copy and the sync.
//! Instead, the writer connection's WAL hook only signals this thread, which checkpoints
//! with its own connection (`PASSIVE`: it waits for no reader and no writer) while the
//! writer goes on.
//!
//! A log can only start again from its beginning when a write transaction begins with every
//! frame copied back, which a checkpointer running behind a busy writer rarely sees. So
//! that the log stays bounded, the writer checkpoints inline, as SQLite would, once the log
//! reaches [`INLINE_PAGES`]; by then the thread has copied nearly all of it and the inline
//! pass has little left to do.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

use crate::StoreError;

/// A commit that leaves at least this many more pages in the log than when the thread was
/// last asked asks it for a checkpoint (SQLite's own threshold for its automatic
/// checkpoint). Asking after every commit once the log is long — under a steady feed it
/// rarely starts again — cost a checkpoint and a sync of the database file per commit.
pub(crate) const SIGNAL_PAGES: i32 = 1_000;
/// A commit that leaves at least this many pages in the log checkpoints inline.
pub(crate) const INLINE_PAGES: i32 = 8 * SIGNAL_PAGES;

#[derive(Default)]
struct State {
    requested: bool,
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
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.wake.notify_one();
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
        let signal = shared.clone();
        // The log's length when the thread was last asked: it is asked again only once the
        // log has grown by another SIGNAL_PAGES (SQLite's own rhythm), not after every
        // commit while the log stays long.
        let mut asked_at = 0;
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages < asked_at {
                    // The log started again from its beginning.
                    asked_at = 0;
                }
                if pages >= INLINE_PAGES {
                    // The thread has fallen behind, or the writer never paused: bound the
                    // log here. Busy (the thread is checkpointing) is fine: the next
                    // commit tries again.
                    if let Err(error) = wal.checkpoint() {
                        tracing::debug!(%error, "inline checkpoint skipped");
                    }
                } else if pages - asked_at >= SIGNAL_PAGES {
                    asked_at = pages;
                    signal.update(|state| state.requested = true);
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
}

impl Checkpointer {
    /// How many checkpoints the thread has run.
    #[cfg(test)]
    fn passes(&self) -> u64 {
        self.shared.passes.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.update(|state| state.stopping = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(connection: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.requested && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.stopping {
                return;
            }
            state.requested = false;
        }
        match connection.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok(_) => {
                shared.passes.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "a background checkpoint failed; the writer will checkpoint inline"),
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

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
    }

    #[test]
    fn a_log_past_the_threshold_is_copied_back_by_the_thread_not_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db");
        let backend = SqliteBackend::open(&path).unwrap();
        write_pages(&backend, 1_200);
        // The commit signalled the thread (below the inline threshold the writer copies
        // nothing back itself); the thread copies the pages into the database file.
        let started = Instant::now();
        while backend._checkpointer.passes() == 0 || size(&path) < 1_200 * PAGE {
            assert!(started.elapsed() < Duration::from_secs(20), "no background checkpoint within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let rows = rows(&backend);
        assert_eq!(rows, 1_200);
    }

    #[test]
    fn the_log_stays_bounded_under_a_writer_that_never_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db");
        let wal = dir.path().join("kith.db-wal");
        let backend = SqliteBackend::open(&path).unwrap();
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
    fn a_long_log_is_checkpointed_once_per_thousand_pages_not_once_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db");
        let backend = SqliteBackend::open(&path).unwrap();
        // Small commits, one after the other, as a feed makes them.
        let commits = 600;
        let per_commit = 5;
        for _ in 0..commits {
            write_pages(&backend, per_commit);
        }
        let asked_at_most = (commits * per_commit) as u64 / SIGNAL_PAGES as u64 + 1;
        assert!(
            backend._checkpointer.passes() <= asked_at_most,
            "{} background checkpoints for {} pages",
            backend._checkpointer.passes(),
            commits * per_commit
        );
    }

    #[test]
    fn closing_the_store_stops_the_thread_and_removes_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db");
        let backend = SqliteBackend::open(&path).unwrap();
        write_pages(&backend, 1_100);
        drop(backend);
        // The last connection to close checkpoints and deletes the log: the thread's
        // connection was closed, not left behind.
        assert!(!dir.path().join("kith.db-wal").exists());
        let backend = SqliteBackend::open(&path).unwrap();
        assert_eq!(rows(&backend), 1_100);
    }
}
