//! Keeping views current, and reading them consistently.
//!
//! A maintenance task catches every view up whenever the log commits (the
//! same catch-up that replays history). A query that carries a token waits,
//! bounded, until every view it reads has applied the log up to the token;
//! without a maintenance task the waiting query catches the views up
//! itself, as an embedded engine does.

use crate::{Engine, EngineError};
use kappa_log::{LogTime, Token};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The running maintenance task. Dropping the handle leaves it running;
/// [`Maintenance::stop`] ends it after the catch-up in progress.
pub struct Maintenance {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    regen_stop: Option<oneshot::Sender<()>>,
    regen: JoinHandle<()>,
}

impl Maintenance {
    pub async fn stop(mut self) {
        for stop in [self.stop.take(), self.regen_stop.take()]
            .into_iter()
            .flatten()
        {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let _ = (&mut self.regen).await;
    }
}

/// How long the maintenance task waits for a commit before it looks again
/// (for new views and retries).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// After a failed catch-up, wait this long before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Engine {
    /// Starts keeping every view current with the log.
    pub fn maintain(self: &Arc<Self>) -> Maintenance {
        let engine = self.clone();
        let (stop_tx, mut stop_rx) = oneshot::channel();
        engine.maintained.store(true, Ordering::SeqCst);
        let task = tokio::spawn(async move {
            let mut seen = LogTime::ZERO;
            loop {
                match engine.catch_up_live().await {
                    Ok(done) => {
                        if let Some(f) = done.iter().map(|(_, p)| p.frontier).min() {
                            seen = seen.max(LogTime(f));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "view maintenance failed; retrying");
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            _ = tokio::time::sleep(RETRY_AFTER) => {}
                        }
                        continue;
                    }
                }
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = engine.kick.notified() => {}
                    head = engine.log.wait_for_commit(seen, IDLE_WAIT) => {
                        if let Ok(h) = head { seen = seen.max(h.log_time()); }
                    }
                }
            }
            engine.maintained.store(false, Ordering::SeqCst);
        });
        // Versions being built (CREATE OR REPLACE) advance on their own
        // task: a long backfill never holds the live views up.
        let engine = self.clone();
        let (regen_stop, mut regen_rx) = oneshot::channel();
        let regen = tokio::spawn(async move {
            loop {
                let advanced = match engine.advance_replacements().await {
                    Ok(_) => engine.verify_due().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let wait = match advanced {
                    Ok(()) => IDLE_WAIT,
                    Err(e) => {
                        tracing::warn!(error = %e, "building a view's next version (or verifying one) failed; retrying");
                        RETRY_AFTER
                    }
                };
                if !engine.replacing_any().await {
                    tokio::select! {
                        _ = &mut regen_rx => break,
                        _ = engine.regen_kick.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                } else if wait == RETRY_AFTER {
                    tokio::select! {
                        _ = &mut regen_rx => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                } else if !matches!(
                    regen_rx.try_recv(),
                    Err(oneshot::error::TryRecvError::Empty)
                ) {
                    break;
                }
            }
        });
        Maintenance {
            stop: Some(stop_tx),
            task,
            regen_stop: Some(regen_stop),
            regen,
        }
    }

    /// A watch that changes whenever a catch-up commits (for observers of
    /// view progress).
    pub fn progress_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Waits until every view in `views` has applied the log up to
    /// `token`, for at most `timeout`.
    pub async fn wait_for(
        &self,
        views: &[String],
        token: Token,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let target = token.log_time().0;
        let started = Instant::now();
        let mut progress = self.progress.subscribe();
        loop {
            // Marked seen before the check, so a bump after it wakes us.
            progress.borrow_and_update();
            let mut behind = None;
            for v in views {
                let f = self.frontier(v).await?.0;
                if f < target {
                    behind = Some((v.clone(), f));
                    break;
                }
            }
            let Some((view, frontier)) = behind else {
                return Ok(());
            };
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(EngineError::Timeout {
                    view,
                    token: token.to_string(),
                    frontier: LogTime(frontier).to_rfc3339(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            if self.maintained.load(Ordering::SeqCst) {
                let _ = tokio::time::timeout(timeout - waited, progress.changed()).await;
            } else {
                // Nobody else will: bring the views up to the head (which
                // is at or past the token, if the token is real).
                let head = self.log.head().await?.log_time().0;
                if head < target {
                    return Err(EngineError::AsOf {
                        requested: format!("TOKEN '{token}'"),
                        reason: "the log has not reached this token (is it from another Kappa?)"
                            .into(),
                    });
                }
                self.catch_up().await?;
            }
        }
    }
}
