//! A view's committer thread: writes, in the order sent, the commits a
//! catch-up seals behind its operators and the change blocks it stages
//! ahead of them (`history.rs`). One per view for as long as it lives,
//! not a thread per commit (whose allocations would each land in an
//! arena of its own).

use crate::EngineError;
use crate::view::{Sealed, Spare};
use kappa_store::{Block, StateStore, ViewId};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A commit being written on the committer's thread while the operators
/// go on.
pub(crate) struct Inflight {
    pub(crate) position: u64,
    /// Memory it holds: what was pending, and its encoding for the store.
    pub(crate) bytes: usize,
    pub(crate) done: tokio::sync::oneshot::Receiver<Result<Spare, EngineError>>,
}

enum Job {
    Commit(
        Box<Sealed>,
        tokio::sync::oneshot::Sender<Result<Spare, EngineError>>,
    ),
    /// Change blocks past the frontier, in a transaction of their own.
    Stage { view: ViewId, blocks: Vec<Block> },
    /// Answered once every job sent before it is written.
    Barrier(tokio::sync::oneshot::Sender<Result<(), EngineError>>),
}

pub(crate) struct Committer {
    jobs: std::sync::mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    /// Bytes of staged blocks sent and not yet written.
    staging: Arc<AtomicUsize>,
}

impl Committer {
    pub(crate) fn start(view: &str, store: Arc<dyn StateStore>) -> Result<Committer, EngineError> {
        let (jobs, received) = std::sync::mpsc::channel::<Job>();
        let staging = Arc::new(AtomicUsize::new(0));
        let written = staging.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kappa-commit-{view}"))
            .spawn(move || {
                // A staging that fails fails the next commit or barrier
                // (reported once): the catch-up then stops, and the view
                // starts again from what is committed.
                let mut failed: Option<EngineError> = None;
                for job in received {
                    match job {
                        Job::Stage { view, blocks } => {
                            if failed.is_none()
                                && let Err(e) = stage(store.as_ref(), view, &blocks)
                            {
                                failed = Some(e);
                            }
                            written.fetch_sub(blocks_bytes(&blocks), Ordering::Relaxed);
                        }
                        Job::Commit(sealed, done) => {
                            let result = match failed.take() {
                                Some(e) => Err(e),
                                None => sealed.write(store.as_ref()),
                            };
                            let _ = done.send(result);
                        }
                        Job::Barrier(done) => {
                            let _ = done.send(failed.take().map_or(Ok(()), Err));
                        }
                    }
                }
            })
            .map_err(|e| EngineError::Query(format!("cannot start the view's committer: {e}")))?;
        Ok(Committer {
            jobs,
            thread,
            staging,
        })
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    pub(crate) fn commit(
        &self,
        sealed: Sealed,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Spare, EngineError>>, EngineError> {
        let (tx, done) = tokio::sync::oneshot::channel();
        self.send(Job::Commit(Box::new(sealed), tx))?;
        Ok(done)
    }

    pub(crate) fn stage(&self, view: ViewId, blocks: Vec<Block>) -> Result<(), EngineError> {
        self.staging
            .fetch_add(blocks_bytes(&blocks), Ordering::Relaxed);
        self.send(Job::Stage { view, blocks })
    }

    /// Waits until every job sent so far is written; an error of a
    /// staging not yet reported.
    pub(crate) async fn barrier(&self) -> Result<(), EngineError> {
        let (tx, done) = tokio::sync::oneshot::channel();
        self.send(Job::Barrier(tx))?;
        done.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Bytes of staged blocks not yet written.
    pub(crate) fn staging_bytes(&self) -> usize {
        self.staging.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), EngineError> {
        self.jobs.send(job).map_err(|_| stopped())
    }

    /// Writes what was sent, then stops.
    pub(crate) fn stop(self) {
        drop(self.jobs);
        let _ = self.thread.join();
    }
}

pub(crate) fn stopped() -> EngineError {
    EngineError::Query("the view's committer stopped".into())
}

fn blocks_bytes(blocks: &[Block]) -> usize {
    blocks.iter().map(|b| b.bytes.len() + b.filter.len()).sum()
}

/// Writes staged blocks durably: they reach the disk while the catch-up
/// goes on, not in its last commit.
fn stage(store: &dyn StateStore, view: ViewId, blocks: &[Block]) -> Result<(), EngineError> {
    let mut w = store.write()?;
    w.stage_changes(view, blocks)?;
    w.commit()?;
    Ok(())
}
