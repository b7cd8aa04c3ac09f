//! Change feeds: a view's rows at a point, then every change after it in
//! log-time order, with progress marks as the view's frontier advances.
//! A feed resumes from any point within the view's history. (The server
//! exposes this as SUBSCRIBE.)

use crate::query::StoredView;
use crate::value::decode_row;
use crate::{Engine, EngineError};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use kappa_log::LogTime;
use kappa_store::ViewId;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where a feed starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// The rows now (at the view's frontier), then what changes.
    Now,
    /// The rows as of this log time, then every change after it.
    SnapshotAt(LogTime),
    /// No rows: every change after this log time (to resume a feed from
    /// its last progress mark or change).
    After(LogTime),
}

/// One event of a feed.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedEvent {
    /// Some of the view's rows at `at`: a snapshot comes as one or more
    /// of these (of up to 8,192 rows each, in key order, read as the feed
    /// is consumed), the one with `last` ending it, before any change.
    Snapshot {
        at: LogTime,
        rows: RecordBatch,
        last: bool,
    },
    /// One row changed at `log_time`: `before` `None` is an insert, `after`
    /// `None` a delete.
    Change {
        log_time: LogTime,
        key: Vec<u8>,
        before: Option<Vec<ScalarValue>>,
        after: Option<Vec<ScalarValue>>,
    },
    /// Every change up to `frontier` has been delivered.
    Progress { frontier: LogTime },
    /// The view was replaced by `version` (CREATE OR REPLACE, a rebuild,
    /// a rollback): the feed goes on with that version's snapshot (its
    /// columns may differ), then its changes.
    Replaced { version: u32 },
}

/// A running feed; [`Feed::next`] gives its events in order.
pub struct Feed {
    engine: Arc<Engine>,
    view: String,
    id: ViewId,
    schema: SchemaRef,
    types: Vec<DataType>,
    /// Every change up to here is delivered (or queued).
    cursor: u64,
    queue: VecDeque<FeedEvent>,
    /// The snapshot being read, delivered after `queue`.
    snapshot: Option<Snapshot>,
}

/// A snapshot read from one store snapshot on a blocking thread, a batch
/// at a time, as the feed is consumed.
struct Snapshot {
    at: LogTime,
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, EngineError>>,
    /// A batch received and not yet delivered: it is the last one if the
    /// reader ends after it.
    held: Option<RecordBatch>,
}

impl Snapshot {
    fn start(view: StoredView, at: LogTime) -> Snapshot {
        let schema = view.schema.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut sink = |batch| tx.blocking_send(Ok(batch)).is_ok();
            if let Err(e) = view.stream_rows(&mut sink) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Snapshot {
            at,
            schema,
            rx,
            held: None,
        }
    }

    /// The next part of the snapshot; `None` once the last was given.
    async fn next(&mut self) -> Option<Result<FeedEvent, EngineError>> {
        loop {
            let received = self.rx.recv().await;
            let part = |rows, last| FeedEvent::Snapshot {
                at: self.at,
                rows,
                last,
            };
            match received {
                Some(Ok(batch)) => {
                    if let Some(rows) = self.held.replace(batch) {
                        return Some(Ok(part(rows, false)));
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    // An empty view still has a (last, empty) snapshot.
                    let rows = self
                        .held
                        .take()
                        .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
                    return Some(Ok(part(rows, true)));
                }
            }
        }
    }
}

/// At most this many changes are read from the store at a time (a feed's
/// memory stays bounded however far behind it starts).
const FETCH_CHANGES: usize = 10_000;

impl Engine {
    /// Starts a change feed on `view`.
    pub async fn subscribe(
        self: &Arc<Self>,
        view: &str,
        start: FeedStart,
    ) -> Result<Feed, EngineError> {
        let stored = self.stored_view(view, None).await?;
        let types = stored
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut feed = Feed {
            engine: self.clone(),
            view: view.to_string(),
            id: stored.id,
            schema: stored.schema.clone(),
            types,
            cursor: 0,
            queue: VecDeque::new(),
            snapshot: None,
        };
        let meta = self.store.read()?.meta(stored.id)?.unwrap_or_default();
        let point = match start {
            FeedStart::Now => meta.frontier,
            FeedStart::SnapshotAt(t) | FeedStart::After(t) => t.0,
        };
        let start_at = crate::query::window_start(&meta, stored.history_micros);
        if point < start_at {
            return Err(EngineError::AsOf {
                requested: LogTime(point).to_rfc3339(),
                reason: format!(
                    "view {view} keeps history from {} on; a feed can start there or later",
                    LogTime(start_at).to_rfc3339()
                ),
            });
        }
        if !matches!(start, FeedStart::After(_)) {
            let at = StoredView {
                as_of: Some(point),
                ..stored
            };
            feed.snapshot = Some(Snapshot::start(at, LogTime(point)));
        }
        feed.cursor = point;
        Ok(feed)
    }
}

impl Feed {
    /// The next event, waiting for the view to move when there is none.
    pub async fn next(&mut self) -> Result<FeedEvent, EngineError> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(e);
            }
            if let Some(snapshot) = &mut self.snapshot {
                let part = snapshot.next().await;
                if matches!(
                    part,
                    Some(Ok(FeedEvent::Snapshot { last: true, .. })) | Some(Err(_))
                ) {
                    self.snapshot = None;
                }
                if let Some(part) = part {
                    return part;
                }
                continue;
            }
            if self.fetch()? {
                continue;
            }
            if self.follow_replacement().await? {
                continue;
            }
            self.wait().await?;
        }
    }

    /// If the view now has another version, goes on with it: queues
    /// `Replaced`, then the new version's snapshot.
    async fn follow_replacement(&mut self) -> Result<bool, EngineError> {
        let current = self
            .engine
            .view(&self.view)
            .await
            .ok_or_else(|| EngineError::NotFound(self.view.clone()))?;
        if current.id == self.id {
            return Ok(false);
        }
        let mut next = self.engine.subscribe(&self.view, FeedStart::Now).await?;
        next.queue.push_front(FeedEvent::Replaced {
            version: current.version,
        });
        *self = next;
        Ok(true)
    }

    /// The view's columns (of snapshot rows and of changed rows).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The next event if it is already queued (never waits or reads).
    /// After a change, the queue holds at least the rest of its log time:
    /// a feed reads whole log times, then a progress mark.
    pub fn queued(&self) -> Option<&FeedEvent> {
        self.queue.front()
    }

    /// The log time up to which every change has been delivered or queued.
    pub fn position(&self) -> LogTime {
        LogTime(self.cursor)
    }

    /// Queues the changes after the cursor; false when there were none
    /// and the frontier has not moved.
    fn fetch(&mut self) -> Result<bool, EngineError> {
        let read = self.engine.store.read()?;
        // No meta yet: the view has not committed (just created, its
        // first catch-up to come). Whether it still exists is
        // `follow_replacement`'s question, asked next.
        let Some(meta) = read.meta(self.id)? else {
            return Ok(false);
        };
        if meta.frontier <= self.cursor {
            return Ok(false);
        }
        // A running feed is cut off only when a change it has not read
        // was let go of (not merely because the window moved past it: a
        // feed that keeps up must never fall out of history).
        if self.cursor < meta.history_start {
            return Err(EngineError::AsOf {
                requested: LogTime(self.cursor).to_rfc3339(),
                reason: format!(
                    "the feed fell behind view {}'s history (it starts at {}); start a new feed",
                    self.view,
                    LogTime(meta.history_start).to_rfc3339()
                ),
            });
        }
        let mut changes = Vec::new();
        let mut cut = None;
        read.changes(self.id, self.cursor, &mut |c| {
            // Stop between two log times only, so a resumed feed repeats
            // and skips nothing.
            if changes.len() >= FETCH_CHANGES
                && changes
                    .last()
                    .is_some_and(|l: &kappa_store::Change| l.log_time != c.log_time)
            {
                cut = changes.last().map(|l: &kappa_store::Change| l.log_time);
                return false;
            }
            if c.log_time <= meta.frontier {
                changes.push(c.clone());
            }
            true
        })?;
        drop(read);
        for c in changes {
            let decode = |row: Option<Vec<u8>>| -> Result<_, EngineError> {
                row.map(|b| {
                    decode_row(&b, &self.types).ok_or_else(|| {
                        EngineError::Store(kappa_store::StoreError::Corrupt(format!(
                            "a change of view {} does not decode",
                            self.view
                        )))
                    })
                })
                .transpose()
            };
            self.queue.push_back(FeedEvent::Change {
                log_time: LogTime(c.log_time),
                key: c.key,
                before: decode(c.before)?,
                after: decode(c.after)?,
            });
        }
        match cut {
            Some(t) => self.cursor = t,
            None => {
                self.cursor = meta.frontier;
                self.queue.push_back(FeedEvent::Progress {
                    frontier: LogTime(meta.frontier),
                });
            }
        }
        Ok(true)
    }

    /// Waits for the view to move: for the maintenance task's next
    /// commit, or, with none running, for the log, catching the view up
    /// itself.
    async fn wait(&mut self) -> Result<(), EngineError> {
        if self.engine.maintained.load(Ordering::SeqCst) {
            let mut progress = self.engine.progress.subscribe();
            progress.borrow_and_update();
            if self.fetch()? {
                return Ok(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), progress.changed()).await;
        } else {
            self.engine
                .log
                .wait_for_commit(LogTime(self.cursor), Duration::from_secs(1))
                .await?;
            self.engine.catch_up_view(&self.view).await?;
        }
        Ok(())
    }
}
