//! A view at run time: its stages, applied to the log from its frontier.
//! Replay from the start and live tailing are the same loop: read a batch of
//! records in log-time order, push it through the stages, and commit the
//! changed rows, the operator state and the new frontier in one store
//! transaction.

use crate::EngineError;
use crate::committer::{Committer, Inflight, stopped};
use crate::dead_letters::{dead_letter, is_evaluation_error, isolate, run};
use crate::history::History;
use crate::ops::aggregate::StateSource;
use crate::ops::window::WindowState;
use crate::ops::{Delta, Stage};
use crate::pending::{ARENA_LIMIT, Part, Pending, pending_bytes, rows_in_key_order, sink};
use crate::plan::Pipeline;
use crate::reading::{Decoded, Reading, Source, produce};
use crate::schema::TopicDef;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{UInt32Type, UInt64Type};
use kappa_log::{Log, LogTime, ReadLimits};
use kappa_store::{Puts, StateStore, StoreRead, ViewCommit, ViewId};
use std::sync::Arc;

/// Dead letters live in the view's state under this prefix, by log time.
pub const DEAD_LETTER_PREFIX: u8 = 0xFF;

pub struct ViewRuntime {
    pub id: ViewId,
    pub name: String,
    pub topic: TopicDef,
    pub pipeline: Pipeline,
    /// The last committed frontier, once known.
    pub frontier: Option<u64>,
    /// AS OF reaches this far behind the frontier; older changes are
    /// trimmed as the view advances.
    pub history_micros: u64,
    /// A catch-up started and did not finish (it failed, or its future was
    /// dropped): memory may be ahead of the store, so the next catch-up
    /// starts again from what is committed.
    pub interrupted: bool,
    /// This view's part of the engine's memory budget: it reports what
    /// the view holds (groups plus changes not yet committed plus a commit
    /// in flight) and says what it may hold. At half of that the view
    /// commits (a commit holds a second copy while it writes); after a
    /// commit, if its groups alone take more than a quarter, they are
    /// dropped from memory (the store has them).
    pub memory: crate::memory::Share,
    /// The commit being written in the background, if any.
    pub(crate) inflight: Option<Inflight>,
    /// The thread commits are written on behind the operators, once
    /// started (one per view, for as long as it lives: not a thread per
    /// commit, whose allocations would each land in an arena of its own).
    committer: Option<Committer>,
    /// The pending commit's changes encoded so far (and not staged).
    history: History,
    /// Blocks were staged since the last commit: it must land after them.
    staged: bool,
    /// Buffers back from the last commit, for the next pending work.
    spare: Option<Spare>,
    /// Records applied, for the view's rate (shared with status readers,
    /// who must not wait for this runtime's lock).
    pub meter: Arc<crate::rate::RateMeter>,
    /// Threads a catch-up keeps busy. With one, it reads, decodes,
    /// applies and commits in turn; with more, reading and decoding run
    /// ahead of the operators (decoding `workers - 1` batches at once)
    /// and commits are written behind them; and a view that groups
    /// splits its groups into one shard per worker (by key), each shard
    /// folding its rows of a batch on its own thread.
    pub workers: usize,
    /// `EngineOptions::stage_bytes`.
    pub stage_bytes: usize,
    /// The shards of the groups beyond the first (whose stages are the
    /// pipeline's): copies of the pipeline's stages, each with its own
    /// groups. Empty with one worker, or for a view that cannot be split.
    shards: Vec<Vec<Stage>>,
    /// The topic's columns the stages read (`None`: all): the others are
    /// not decoded.
    reads: Option<Arc<[bool]>>,
}

impl ViewRuntime {
    pub fn new(
        id: ViewId,
        name: String,
        topic: TopicDef,
        pipeline: Pipeline,
        history_micros: u64,
        memory: crate::memory::Share,
    ) -> ViewRuntime {
        let reads = topic
            .columns
            .as_ref()
            .and_then(|c| pipeline.columns_read(c.len() + crate::schema::META_COLUMNS.len()))
            .map(Arc::from);
        ViewRuntime {
            reads,
            id,
            name,
            topic,
            pipeline,
            frontier: None,
            history_micros,
            interrupted: false,
            memory,
            inflight: None,
            committer: None,
            history: History::default(),
            staged: false,
            spare: None,
            meter: Arc::default(),
            workers: 2,
            stage_bytes: crate::EngineOptions::default().stage_bytes,
            shards: Vec::new(),
        }
    }
}

impl Drop for ViewRuntime {
    /// A commit in flight finishes before the view (and its hold on the
    /// store) goes.
    fn drop(&mut self) {
        if let Some(c) = self.committer.take() {
            c.stop();
        }
    }
}

/// What a commit writes, taken from the view and its pending work on the
/// operators' thread; [`Sealed::write`] builds the store commit from it
/// and writes it (on any thread).
pub(crate) struct Sealed {
    view: ViewId,
    position: u64,
    /// Changes at or before this log time are past the view's history.
    cutoff: u64,
    /// A live step (a few records).
    live: bool,
    /// Visible at once, durable within [`LIVE_SYNC_INTERVAL`] (on the
    /// store's syncer thread): a live step, or a catch-up's last commit.
    soon: bool,
    /// One per shard of the view's groups (their keys are disjoint).
    parts: Vec<Part>,
    /// The changes before the parts' ones, encoded as the catch-up went
    /// and not staged.
    history: History,
    /// Operator state and dead letters.
    state: Puts,
}

/// A written commit's buffers (emptied), kept for the next pending work.
pub(crate) struct Spare {
    parts: Vec<Part>,
}

impl Sealed {
    pub(crate) fn write(self, store: &dyn StateStore) -> Result<Spare, EngineError> {
        let Sealed {
            view,
            position,
            cutoff,
            live,
            soon,
            mut parts,
            mut history,
            mut state,
        } = self;
        let mut commit = ViewCommit {
            view,
            frontier: position,
            ..ViewCommit::default()
        };
        let started = std::time::Instant::now();
        let mut w = store.write()?;
        let mut marks = [std::time::Duration::ZERO; 5];
        // A big commit has a helper thread put its rows in key order and
        // then encode its changes, while this one sorts the state (the
        // store's own sort then only finds it in order) and then has the
        // store write both (at once, in the redb store). The rows go from
        // the parts' arenas, not copied.
        let many = parts
            .iter()
            .map(|p| p.changes.len() + p.rows.len())
            .sum::<usize>()
            >= PARALLEL_ENCODE;
        let encode = |parts: &[Part], mut history: History| {
            let shards: Vec<_> = parts.iter().map(Part::changes).collect();
            history.encode(&shards, cutoff);
            history.finish()
        };
        let key_orders = |parts: &[Part]| parts.iter().map(Part::key_order).collect::<Vec<_>>();
        let (changes, dropped) = std::thread::scope(|scope| {
            let (sorted, orders_back) = std::sync::mpsc::sync_channel::<Vec<Vec<u32>>>(1);
            let parts = &parts;
            let helper = if many {
                let history = std::mem::take(&mut history);
                let spawned = std::thread::Builder::new()
                    .name("kappa-commit".into())
                    .spawn_scoped(scope, move || {
                        let _ = sorted.send(key_orders(parts));
                        encode(parts, history)
                    });
                Some(spawned.map_err(|e| {
                    EngineError::Query(format!("cannot start a thread for the commit: {e}"))
                })?)
            } else {
                None
            };
            state.sort_by_key();
            let orders = match helper {
                Some(_) => orders_back
                    .recv()
                    .map_err(|_| EngineError::Query("sorting a commit's rows failed".into()))?,
                None => key_orders(parts),
            };
            marks[0] = started.elapsed();
            w.put_rows_and_state(view, &mut rows_in_key_order(parts, &orders), &mut state)?;
            marks[1] = started.elapsed();
            match helper {
                Some(h) => h
                    .join()
                    .map_err(|_| EngineError::Query("encoding a commit's changes failed".into())),
                None => Ok(encode(parts, std::mem::take(&mut history))),
            }
        })?;
        marks[2] = started.elapsed();
        commit.changes = changes;
        // Changes older than the history were let go of as they were
        // applied (`Pending::sink_untracked`), or as they were encoded.
        commit.history_start = parts.iter().map(|p| p.dropped).fold(dropped, u64::max);
        w.apply(&mut commit)?;
        w.trim_history(view, cutoff)?;
        marks[3] = started.elapsed();
        if soon {
            w.commit_soon(LIVE_SYNC_INTERVAL)?;
        } else {
            w.commit()?;
        }
        marks[4] = started.elapsed();
        if !live {
            tracing::debug!(
                view,
                "commit: sorted by {:.2?}, rows and state by {:.2?}, changes encoded by {:.2?}, \
                 written by {:.2?}, committed by {:.2?} (durable {})",
                marks[0],
                marks[1],
                marks[2],
                marks[3],
                marks[4],
                if soon { "soon after" } else { "then" }
            );
        }
        for part in &mut parts {
            part.arena.clear();
            part.rows.clear();
            part.changes.clear();
        }
        Ok(Spare { parts })
    }
}

/// A commit with at least this many changes and rows sorts its rows and
/// encodes its changes beside the store's inserts.
const PARALLEL_ENCODE: usize = 10_000;

pub(crate) struct StoreSource<'a> {
    pub(crate) read: Box<dyn StoreRead + 'a>,
    pub(crate) view: ViewId,
}

impl StateSource for StoreSource<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.read.state(self.view, key)?)
    }
}

/// What one catch-up pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub records: u64,
    pub commits: u64,
    pub frontier: u64,
}

/// During replay a commit is due after this long (or once the view has
/// caught up, or its memory outgrows its budget). A commit writes
/// each changed row and group once, however often it changed, so fewer,
/// larger commits make replay fast; a crash costs at most this much work
/// again. Live, the view catches up within one batch and commits at once.
/// (Kafka Streams commits every 100 ms to 30 s; Flink checkpoints every few
/// seconds.) Pending work is bounded by the view's memory budget.
/// Commits during a catch-up are written on their own thread while the
/// next records are applied (measured: committing more often to overlap
/// more costs more in rewritten rows than the overlap gains, on 2 cores).
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The same with more than one worker, whose commits are written behind
/// the operators: the last commit of a catch-up is not, so it is kept
/// short.
const COMMIT_INTERVAL_BEHIND: std::time::Duration = std::time::Duration::from_secs(1);

/// A step of at most this many records is a live one: committed visible
/// at once and durable within [`LIVE_SYNC_INTERVAL`].
const LIVE_STEP_RECORDS: u64 = 10_000;

/// A written commit's buffers are kept for the next steps up to this size.
const SPARE_MAX: usize = 4 << 20;

/// How long a visible live step may wait to reach the disk: the store's
/// next commit after this long since its last durable one is durable. A
/// fsync per step would be most of a live step's time.
const LIVE_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl ViewRuntime {
    /// Applies the log from the view's frontier to `head` (a log time),
    /// committing as it goes.
    pub async fn catch_up(
        &mut self,
        log: &Arc<dyn Log>,
        store: &Arc<dyn StateStore>,
        head: u64,
        limits: ReadLimits,
    ) -> Result<Progress, EngineError> {
        let mut progress = Progress::default();
        // A catch-up cut short may have left a commit in flight: it lands
        // before anything is read from the store.
        if self.settle().await.is_err() {
            self.interrupted = true;
        }
        if self.interrupted {
            self.reset();
        }
        let shards = crate::shards::count(&self.pipeline.stages, self.workers);
        if shards != self.shards.len() + 1 {
            // Groups in memory belong to the old split: they are read
            // again from the store, into the new one.
            self.reset();
            self.shards = crate::shards::copies(&self.pipeline.stages, shards - 1);
        }
        self.interrupted = true;
        let result = self.run_to(log, store, head, limits, &mut progress).await;
        if result.is_ok() {
            self.interrupted = false;
        }
        result.map(|()| progress)
    }

    /// Forgets everything in memory; the next catch-up reloads from the
    /// store.
    fn reset(&mut self) {
        self.frontier = None;
        self.history = History::default();
        self.staged = false;
        self.each_stage(|s| match s {
            Stage::Aggregate(a) => a.reset(),
            Stage::Window(w) => w.reset(),
            _ => {}
        });
    }

    /// Calls `f` on every stage of every shard.
    fn each_stage(&mut self, mut f: impl FnMut(&mut Stage)) {
        for s in self
            .pipeline
            .stages
            .iter_mut()
            .chain(self.shards.iter_mut().flatten())
        {
            f(s);
        }
    }

    async fn run_to(
        &mut self,
        log: &Arc<dyn Log>,
        store: &Arc<dyn StateStore>,
        head: u64,
        limits: ReadLimits,
        progress: &mut Progress,
    ) -> Result<(), EngineError> {
        let frontier = match self.frontier {
            Some(f) => f,
            None => {
                let meta = store.read()?.meta(self.id)?;
                match meta {
                    Some(m) => {
                        self.discard_staged(store).await?;
                        m.frontier
                    }
                    None => {
                        self.start(store)?;
                        0
                    }
                }
            }
        };
        self.frontier = Some(frontier);
        progress.frontier = frontier;
        if frontier >= head {
            return Ok(());
        }
        let reader = log
            .merged_reader(&[self.topic.name.as_str()], LogTime(frontier))
            .await?;
        let serial = self.workers <= 1;
        // The batches the reading holds at once, each its records and about
        // as much again in columns, take at most an eighth of the view's
        // budget, so that a small budget bounds them too (a commit cannot
        // shrink them). At 10M keys and a 64 MiB budget they were ~47 MiB.
        let held = crate::reading::batches_held(if serial { 0 } else { self.workers - 1 });
        let limits = ReadLimits {
            max_bytes: limits
                .max_bytes
                .min(self.memory.limit() / 16 / held)
                .max(64 << 10),
            ..limits
        };
        let (mut source, producer) = if serial {
            (
                Source::Inline(Reading {
                    reader,
                    topic: self.topic.clone(),
                    position: frontier,
                    head,
                    limits,
                    reads: self.reads.clone(),
                }),
                None,
            )
        } else {
            // Reading and decoding run as their own task, ahead of the
            // operators (on another core when the runtime has one).
            let (tx, rx) = tokio::sync::mpsc::channel(crate::reading::READ_QUEUE);
            let reading = Reading {
                reader,
                topic: self.topic.clone(),
                position: frontier,
                head,
                limits,
                reads: self.reads.clone(),
            };
            let decoders = self.workers - 1;
            (
                Source::Channel(rx),
                Some(tokio::spawn(produce(reading, decoders, tx))),
            )
        };
        let cutoff = self.cutoff(head);
        let mut pending: Vec<Pending> = (0..=self.shards.len())
            .map(|_| Pending::with_cutoff(cutoff))
            .collect();
        let mut uncommitted = None;
        let mut since_commit = std::time::Instant::now();
        let mut timing = Timing::default();
        let mut mark = std::time::Instant::now();
        while let Some(decoded) = source.next().await {
            timing.input += mark.elapsed();
            mark = std::time::Instant::now();
            let decoded = decoded?;
            progress.records += decoded.records as u64;
            self.meter.add(decoded.records as u64);
            self.meter.reached(&decoded.next_offsets);
            self.step(store, &decoded, &mut pending)?;
            if !serial {
                let encoding = std::time::Instant::now();
                self.encode_ahead(store, &mut pending, head)?;
                timing.history += encoding.elapsed();
            }
            timing.operators += mark.elapsed();
            mark = std::time::Instant::now();
            uncommitted = Some(decoded.position);
            // A commit briefly holds a second copy of what it writes, and
            // the store its new pages: half the budget is the trigger. A
            // commit in flight counts until it lands.
            let inflight = self.inflight.as_ref().map_or(0, |f| f.bytes);
            let spare = self
                .spare
                .as_ref()
                .map_or(0, |s| s.parts.iter().map(Part::bytes).sum());
            // The reading's batches count too: the budget is all the
            // catch-up holds.
            let reading = if serial {
                decoded.bytes
            } else {
                decoded.reading_bytes(self.workers - 1)
            };
            let staging =
                self.history.bytes() + self.committer.as_ref().map_or(0, Committer::staging_bytes);
            let memory = pending_bytes(&pending)
                + self.groups_memory()
                + inflight
                + spare
                + reading
                + staging;
            self.memory.set(memory);
            let limit = self.memory.limit();
            let interval = if serial {
                COMMIT_INTERVAL
            } else {
                COMMIT_INTERVAL_BEHIND
            };
            let full = memory >= limit / 2 || pending.iter().any(|p| p.arena.len() >= ARENA_LIMIT);
            // Behind the operators, a commit starts once the last one has
            // landed (unless memory is short): when commits are slow they
            // grow instead of stalling the operators.
            let due = since_commit.elapsed() >= interval && (serial || self.try_settle()?);
            if due || full {
                timing.forced += u32::from(!due);
                if !due {
                    tracing::debug!(
                        view = %self.name,
                        pending = pending_bytes(&pending),
                        groups = self.groups_memory(),
                        inflight,
                        limit,
                        "commit forced by memory"
                    );
                }
                if serial {
                    self.commit(store, &mut pending, decoded.position, head, false)
                        .await?;
                } else {
                    self.commit_behind(store, &mut pending, decoded.position, head)
                        .await?;
                }
                progress.commits += 1;
                uncommitted = None;
                since_commit = std::time::Instant::now();
            }
            timing.committing += mark.elapsed();
            mark = std::time::Instant::now();
        }
        if let Some(producer) = producer {
            producer
                .await
                .map_err(|e| EngineError::Query(format!("the view's reader failed: {e}")))?;
        }
        let last = std::time::Instant::now();
        if let Some(position) = uncommitted {
            // The last commit is visible at once and durable soon after,
            // on the store's syncer thread: the view can answer ~25 ms
            // (its fsync, at 1M records) sooner, and a crash before the
            // fsync applies the records again from the log.
            self.commit(store, &mut pending, position, head, true)
                .await?;
            progress.commits += 1;
        }
        self.settle().await?;
        timing.last_commit = last.elapsed();
        self.memory.set(self.groups_memory());
        // Where a long catch-up's time went (RUST_LOG=kappa_engine=debug).
        if progress.records >= 100_000 {
            tracing::debug!(
                view = %self.name,
                records = progress.records,
                commits = progress.commits,
                forced = timing.forced,
                memory_limit = self.memory.limit(),
                shards = self.shards.len() + 1,
                "catch-up: waited {:.2?} for input, {:.2?} in the operators ({:.2?} of it encoding history), \
                 {:.2?} committing, {:.2?} in the last commit",
                timing.input, timing.operators, timing.history, timing.committing, timing.last_commit
            );
        }
        progress.frontier = self.frontier.unwrap_or(frontier);
        Ok(())
    }

    /// Changes at or before this log time, on the way to `head`, are
    /// older than the view's history: they are not kept.
    fn cutoff(&self, head: u64) -> u64 {
        head.saturating_sub(self.history_micros)
    }

    /// Takes what is pending, with the operators' changed state, for a
    /// commit taking the view to `position` on the way to `head`. History
    /// older than the retention before `head` is trimmed in the same
    /// transaction, and changes that old are not written at all (a long
    /// replay writes only the history it keeps).
    fn seal(&mut self, pending: &mut [Pending], position: u64, head: u64, last: bool) -> Sealed {
        // A live step (a few records) need not reach the disk before it is
        // visible: the log has its records, and a step lost in a crash is
        // applied again from there. Nor need a catch-up's `last` commit.
        // Replay's other big steps are durable at once (on the committer's
        // thread, beside the operators).
        let live = pending.iter().map(|p| p.records).sum::<u64>() <= LIVE_STEP_RECORDS;
        let mut spare = self
            .spare
            .take()
            .map(|s| s.parts)
            .unwrap_or_default()
            .into_iter();
        let mut state = Puts::default();
        let parts = pending
            .iter_mut()
            .map(|p| p.take(spare.next().unwrap_or_default(), &mut state))
            .collect();
        self.take_state(&mut state);
        self.staged = false;
        Sealed {
            view: self.id,
            position,
            cutoff: self.cutoff(head),
            live,
            soon: live || last,
            parts,
            history: std::mem::take(&mut self.history),
            state,
        }
    }

    /// Commits what is pending, on this thread (after any commit in
    /// flight).
    async fn commit(
        &mut self,
        store: &Arc<dyn StateStore>,
        pending: &mut [Pending],
        position: u64,
        head: u64,
        last: bool,
    ) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        self.settle().await?;
        if self.staged
            && let Some(c) = &self.committer
        {
            // The blocks staged land first: the commit reaches them.
            c.barrier().await?;
        }
        let landed = started.elapsed();
        let sealed = self.seal(pending, position, head, last);
        let sealed_by = started.elapsed();
        let spare = sealed.write(store.as_ref())?;
        let written = started.elapsed();
        self.committed(position, spare);
        self.evict_if_large();
        if last {
            tracing::debug!(
                view = %self.name,
                "last commit: earlier writes landed by {landed:.2?}, sealed by {sealed_by:.2?}, \
                 written by {written:.2?}, done by {:.2?}",
                started.elapsed()
            );
        }
        Ok(())
    }

    /// Commits what is pending on the committer's thread; the operators
    /// go on meanwhile. One commit is in flight at a time.
    async fn commit_behind(
        &mut self,
        store: &Arc<dyn StateStore>,
        pending: &mut [Pending],
        position: u64,
        head: u64,
    ) -> Result<(), EngineError> {
        self.settle().await?;
        let bytes = 2 * pending_bytes(pending);
        let sealed = self.seal(pending, position, head, false);
        let done = self.committer(store)?.commit(sealed)?;
        self.inflight = Some(Inflight {
            position,
            bytes,
            done,
        });
        if self.groups_memory() > self.memory.limit() / 4 {
            // Evicted groups are read back from the store: it must have
            // them first.
            self.settle().await?;
            self.evict_if_large();
        }
        Ok(())
    }

    /// The committer thread, started if it is not running.
    fn committer(&mut self, store: &Arc<dyn StateStore>) -> Result<&Committer, EngineError> {
        if self.committer.as_ref().is_none_or(Committer::is_finished) {
            if let Some(old) = self.committer.take() {
                old.stop();
            }
            self.committer = Some(Committer::start(&self.name, store.clone())?);
        }
        Ok(self.committer.as_ref().expect("just started"))
    }

    /// Encodes the changes pending once a shard holds enough of them,
    /// and stages the sealed blocks once there are enough (see
    /// `history.rs`). Between batches only.
    fn encode_ahead(
        &mut self,
        store: &Arc<dyn StateStore>,
        pending: &mut [Pending],
        head: u64,
    ) -> Result<(), EngineError> {
        if pending.iter().all(|p| p.change_count() == 0) {
            return Ok(());
        }
        if self.history.is_new() {
            self.history = History::new(self.stage_bytes);
        }
        let shards: Vec<_> = pending.iter().map(Pending::changes).collect();
        self.history.encode(&shards, self.cutoff(head));
        pending.iter_mut().for_each(Pending::clear_changes);
        if let Some(blocks) = self.history.ready() {
            let view = self.id;
            self.committer(store)?.stage(view, blocks)?;
            self.staged = true;
        }
        Ok(())
    }

    /// Removes blocks staged past the frontier by a catch-up that did not
    /// reach them (it failed, was cancelled, or the process died), before
    /// the view applies anything again.
    async fn discard_staged(&mut self, store: &Arc<dyn StateStore>) -> Result<(), EngineError> {
        if let Some(c) = &self.committer
            && let Err(e) = c.barrier().await
        {
            // Its catch-up has already stopped; the blocks go now.
            tracing::debug!(view = %self.name, "a staging that failed: {e}");
        }
        let mut w = store.write()?;
        if w.discard_staged(self.id)? {
            w.commit()?;
        }
        Ok(())
    }

    /// Whether no commit is in flight any more (one that has landed is
    /// settled), without waiting.
    fn try_settle(&mut self) -> Result<bool, EngineError> {
        let Some(f) = self.inflight.as_mut() else {
            return Ok(true);
        };
        let result = match f.done.try_recv() {
            Ok(result) => result,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return Ok(false),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Err(stopped()),
        };
        let Some(f) = self.inflight.take() else {
            return Ok(true);
        };
        self.committed(f.position, result?);
        Ok(true)
    }

    /// Waits for the commit in flight, if any.
    async fn settle(&mut self) -> Result<(), EngineError> {
        // It stays in `inflight` while awaited: if this future is dropped,
        // the commit is still waited for (at the next catch-up, or when
        // the view is dropped).
        let Some(f) = self.inflight.as_mut() else {
            return Ok(());
        };
        let result = (&mut f.done).await.unwrap_or_else(|_| Err(stopped()));
        let Some(f) = self.inflight.take() else {
            return Ok(());
        };
        self.committed(f.position, result?);
        Ok(())
    }

    /// A commit reached the store.
    fn committed(&mut self, position: u64, spare: Spare) {
        self.frontier = Some(position);
        // Small buffers are kept for the next steps (live steps then
        // allocate nothing); a replay's big ones are given back, so that
        // memory is held only while it holds changes.
        let bytes: usize = spare.parts.iter().map(Part::bytes).sum();
        self.spare = (bytes <= SPARE_MAX).then_some(spare);
        self.each_stage(|s| {
            if let Stage::Aggregate(a) = s {
                a.forget_deleted();
            }
        });
    }

    /// Drops the groups from memory if they take more than a quarter of
    /// the budget (the store has them). Only right after a commit has
    /// landed, with nothing changed since.
    fn evict_if_large(&mut self) {
        if self.groups_memory() > self.memory.limit() / 4 {
            self.each_stage(|s| {
                if let Stage::Aggregate(a) = s {
                    a.evict();
                }
            });
            self.memory.set(self.groups_memory());
        }
    }

    /// A new view: commit its initial state (a global aggregate's row).
    fn start(&mut self, store: &Arc<dyn StateStore>) -> Result<(), EngineError> {
        let mut delta = None;
        let mut rest = 0;
        for s in self.shards.iter_mut().flatten() {
            match s {
                Stage::Window(w) => w.assume_empty_state(),
                Stage::Aggregate(a) => a.assume_empty_state(),
                _ => {}
            }
        }
        for (i, s) in self.pipeline.stages.iter_mut().enumerate() {
            if let Stage::Window(w) = s {
                w.assume_empty_state();
            }
            if let Stage::Aggregate(a) = s {
                // Nothing is stored yet: no group needs a lookup.
                a.assume_empty_state();
                if a.is_global() {
                    delta = Some(a.initial(0)?);
                    rest = i + 1;
                }
            }
        }
        let mut pending = [Pending::default()];
        if let Some(mut d) = delta {
            let mut source = crate::ops::aggregate::NoState;
            for s in &mut self.pipeline.stages[rest..] {
                d = s.apply(d, &mut source)?;
            }
            // A change at log time 0 is the view's starting point.
            sink(&mut pending[0], &d);
        }
        let spare = self.seal(&mut pending, 0, 0, false).write(store.as_ref())?;
        self.committed(0, spare);
        Ok(())
    }

    /// Pushes a decoded batch through the stages into `pending` (one per
    /// shard).
    fn step(
        &mut self,
        store: &Arc<dyn StateStore>,
        decoded: &Decoded,
        pending: &mut [Pending],
    ) -> Result<(), EngineError> {
        pending[0].records += decoded.records as u64;
        pending[0].state.append_puts(&decoded.dead);
        let batch = decoded.batch.clone();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        // Column 2 from the end is `_log_time`, in batch order.
        let log_time = batch.num_columns() - 2;
        let delta = Delta::insertions(batch, log_time);
        let mut source = StoreSource {
            read: store.read()?,
            view: self.id,
        };
        // The stages before the first aggregate see the raw records: a
        // record they cannot evaluate (a failed cast, say) is found by
        // evaluating the batch record by record, and goes to the dead
        // letters; the others go on. The first aggregate evaluates its
        // expressions before it changes any state, so its evaluation is
        // part of the check.
        let split = self
            .pipeline
            .stages
            .iter()
            .position(|s| matches!(s, Stage::Aggregate(_)))
            .unwrap_or(self.pipeline.stages.len());
        let (before, rest) = self.pipeline.stages.split_at_mut(split);
        let windows = save_windows(before);
        // The aggregate's input, and its expressions evaluated.
        let attempt = run(before, delta.clone(), &mut source).and_then(|d| match rest.first() {
            Some(Stage::Aggregate(a)) => a.evaluate(&d.batch).map(|e| (d, Some(e))),
            _ => Ok((d, None)),
        });
        let (mut delta, evaluated) = match attempt {
            Ok(done) => done,
            Err(e) if is_evaluation_error(&e) => {
                // Redone record by record, from the state before the batch.
                restore_windows(before, windows);
                let aggregate = match rest.first() {
                    Some(Stage::Aggregate(a)) => Some(&**a),
                    _ => None,
                };
                let (kept, failed) = isolate(before, aggregate, &delta, &mut source)?;
                let at = &decoded.batch;
                let w = at.num_columns();
                let partitions = at.column(w - 4).as_primitive::<UInt32Type>();
                let offsets = at.column(w - 3).as_primitive::<UInt64Type>();
                for (log_time, reason) in failed {
                    let i = delta.log_times.partition_point(|&t| t < log_time);
                    dead_letter(
                        &mut pending[0].state,
                        &self.topic.name,
                        partitions.value(i),
                        offsets.value(i),
                        log_time,
                        &reason,
                    );
                }
                let evaluated = match aggregate {
                    Some(a) => Some(a.evaluate(&kept.batch)?),
                    None => None,
                };
                (kept, evaluated)
            }
            Err(e) => return Err(e),
        };
        // Without an aggregate, `rest` is empty: the delta is the view's.
        let Some(evaluated) = evaluated else {
            for s in rest.iter_mut() {
                delta = s.apply(delta, &mut source)?;
            }
            sink(&mut pending[0], &delta);
            return Ok(());
        };
        drop(source);
        let mut shards: Vec<&mut [Stage]> = vec![rest];
        shards.extend(self.shards.iter_mut().map(|s| &mut s[split..]));
        crate::shards::apply(store, self.id, &delta, &evaluated, shards, pending)
    }

    /// Estimated bytes of the groups the view's aggregates hold.
    pub fn groups_memory(&self) -> usize {
        self.pipeline
            .stages
            .iter()
            .chain(self.shards.iter().flatten())
            .map(|s| match s {
                Stage::Aggregate(a) => a.memory(),
                _ => 0,
            })
            .sum()
    }

    fn take_state(&mut self, out: &mut Puts) {
        self.each_stage(|s| match s {
            Stage::Aggregate(a) => a.take_dirty(out),
            Stage::Window(w) => w.take_dirty(out),
            _ => {}
        });
    }
}

/// The window stages' state, to redo a batch from.
fn save_windows(stages: &[Stage]) -> Vec<(usize, (Option<WindowState>, bool))> {
    stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Stage::Window(w) => Some((i, w.save())),
            _ => None,
        })
        .collect()
}

fn restore_windows(stages: &mut [Stage], saved: Vec<(usize, (Option<WindowState>, bool))>) {
    for (i, state) in saved {
        if let Stage::Window(w) = &mut stages[i] {
            w.restore(state);
        }
    }
}

/// Where a catch-up's time went.
#[derive(Default)]
struct Timing {
    input: std::time::Duration,
    operators: std::time::Duration,
    /// Part of `operators`: the changes encoded as history after each batch.
    history: std::time::Duration,
    committing: std::time::Duration,
    last_commit: std::time::Duration,
    /// Commits started because memory was short.
    forced: u32,
}
