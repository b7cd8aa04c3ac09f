//! Making relaxed commits durable in the background. A live step commits
//! visible at once without an fsync (`StoreWrite::commit_soon`); this
//! thread then makes the store durable within the interval asked, with an
//! empty durable commit (which carries every relaxed commit before it), so
//! that no step waits for the disk. A failed durable commit is fatal: the
//! store refuses every later write (never retried), and reopening it
//! recovers the last durable state.

use redb::Database;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// When a commit last reached the disk.
    last_sync: Instant,
    /// Relaxed commits so far, and how many of them a durable commit has
    /// carried to the disk.
    relaxed: u64,
    synced: u64,
    /// A relaxed commit is durable within this long.
    within: Duration,
    stop: bool,
    /// Why a durable commit failed.
    failed: Option<String>,
}

impl Syncer {
    pub(crate) fn start(db: Arc<Database>) -> Result<Syncer, std::io::Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                last_sync: Instant::now(),
                relaxed: 0,
                synced: 0,
                within: Duration::ZERO,
                stop: false,
                failed: None,
            }),
            wake: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kappa-store-sync".into())
            .spawn(move || run(&db, &for_thread))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the store may not commit any more, if a durable commit failed.
    pub(crate) fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// A durable commit landed: everything committed before it is on disk.
    pub(crate) fn synced(&self) {
        let mut s = self.lock();
        s.last_sync = Instant::now();
        s.synced = s.relaxed;
    }

    /// A relaxed commit landed: make it durable within `within`.
    pub(crate) fn relaxed(&self, within: Duration) {
        let mut s = self.lock();
        s.relaxed += 1;
        s.within = within;
        self.shared.wake.notify_one();
    }
}

impl Drop for Syncer {
    /// Stops the thread, after a last durable commit if one is owed.
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: &Database, shared: &Shared) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = lock();
    loop {
        while !s.stop && s.relaxed == s.synced {
            s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.relaxed == s.synced || s.failed.is_some() {
            return;
        }
        let due = s.last_sync + s.within;
        let now = Instant::now();
        if !s.stop && now < due {
            s = shared
                .wake
                .wait_timeout(s, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        drop(s);
        // Once this transaction begins, every relaxed commit counted so
        // far has landed (one writer at a time): it carries them all.
        let result = db.begin_write().map_err(|e| e.to_string()).and_then(|txn| {
            let covered = lock().relaxed;
            txn.commit().map(|()| covered).map_err(|e| e.to_string())
        });
        s = lock();
        match result {
            Ok(covered) => {
                s.synced = s.synced.max(covered);
                s.last_sync = Instant::now();
            }
            Err(e) => {
                tracing::error!(error = %e, "the state store's durable commit failed; it takes no more commits");
                s.failed = Some(e);
                return;
            }
        }
    }
}
