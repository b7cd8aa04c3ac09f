//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use kappa_engine::{Engine, Output};
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use kappa_store::{
    Change, RedbStore, StateStore, StoreError, StoreOptions, StoreRead, StoreWrite, ViewCommit,
    ViewId, ViewMeta,
};
use std::path::Path;
use std::sync::Arc;

pub fn open(dir: &Path) -> Engine {
    open_with(dir, kappa_engine::EngineOptions::default().memory_budget)
}

/// An engine whose views may hold `budget` bytes in memory.
pub fn open_with(dir: &Path, budget: usize) -> Engine {
    open_tuned(
        dir,
        kappa_engine::EngineOptions {
            memory_budget: budget,
            ..Default::default()
        },
        None,
    )
}

/// The log (no cleaner) and the store of an engine in `dir`.
fn open_parts(dir: &Path) -> (EmbeddedLog, RedbStore) {
    let log = EmbeddedLog::open(
        dir.join("log"),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let store = RedbStore::open(&dir.join("state.redb"), &StoreOptions::default()).unwrap();
    (log, store)
}

/// An engine with `options`, over a store whose commits take at least
/// `slow_commits` (a slow disk: commits in flight overlap more work).
pub fn open_tuned(
    dir: &Path,
    options: kappa_engine::EngineOptions,
    slow_commits: Option<std::time::Duration>,
) -> Engine {
    let (log, store) = open_parts(dir);
    let store: Arc<dyn StateStore> = match slow_commits {
        Some(delay) => Arc::new(SlowStore {
            inner: store,
            delay,
            failing_stages: Arc::default(),
        }),
        None => Arc::new(store),
    };
    Engine::open_with(Arc::new(log), store, options).unwrap()
}

/// An engine whose store refuses the next `failing_stages` stagings of
/// history (`StoreWrite::stage_changes`) with an error.
pub fn open_failing_stages(
    dir: &Path,
    options: kappa_engine::EngineOptions,
    failing_stages: Arc<std::sync::atomic::AtomicU32>,
) -> Engine {
    let (log, store) = open_parts(dir);
    let store = Arc::new(SlowStore {
        inner: store,
        delay: std::time::Duration::ZERO,
        failing_stages,
    });
    Engine::open_with(Arc::new(log), store, options).unwrap()
}

/// The real store, with commits that wait before they happen, and
/// stagings that fail while `failing_stages` is above zero.
struct SlowStore {
    inner: RedbStore,
    delay: std::time::Duration,
    failing_stages: Arc<std::sync::atomic::AtomicU32>,
}

impl StateStore for SlowStore {
    fn read(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        self.inner.read()
    }

    fn write(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        Ok(Box::new(SlowWrite {
            inner: self.inner.write()?,
            delay: self.delay,
            failing_stages: self.failing_stages.clone(),
        }))
    }
}

struct SlowWrite<'a> {
    inner: Box<dyn StoreWrite + 'a>,
    delay: std::time::Duration,
    failing_stages: Arc<std::sync::atomic::AtomicU32>,
}

impl StoreRead for SlowWrite<'_> {
    fn catalog(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.catalog()
    }
    fn meta(&self, view: ViewId) -> Result<Option<ViewMeta>, StoreError> {
        self.inner.meta(view)
    }
    fn row(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.row(view, key)
    }
    fn rows(
        &self,
        view: ViewId,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.rows(view, visit)
    }
    fn state(&self, view: ViewId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.state(view, key)
    }
    fn state_prefix(
        &self,
        view: ViewId,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.state_prefix(view, prefix, visit)
    }
    fn changes(
        &self,
        view: ViewId,
        after: u64,
        visit: &mut dyn FnMut(&Change) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.changes(view, after, visit)
    }
    fn change_for_key(
        &self,
        view: ViewId,
        key: &[u8],
        after: u64,
    ) -> Result<Option<Change>, StoreError> {
        self.inner.change_for_key(view, key, after)
    }
}

impl StoreWrite for SlowWrite<'_> {
    fn put_catalog(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_catalog(name, value)
    }
    fn delete_catalog(&mut self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_catalog(name)
    }
    fn apply(&mut self, commit: &mut ViewCommit) -> Result<(), StoreError> {
        self.inner.apply(commit)
    }
    fn put_rows_and_state(
        &mut self,
        view: ViewId,
        rows: &mut (dyn Iterator<Item = (&[u8], Option<&[u8]>)> + Send),
        state: &mut kappa_store::Puts,
    ) -> Result<(), StoreError> {
        self.inner.put_rows_and_state(view, rows, state)
    }
    fn stage_changes(
        &mut self,
        view: ViewId,
        blocks: &[kappa_store::Block],
    ) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let fail = self
            .failing_stages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::CommitFailed("a staging failed (test)".into()));
        }
        self.inner.stage_changes(view, blocks)
    }
    fn discard_staged(&mut self, view: ViewId) -> Result<bool, StoreError> {
        self.inner.discard_staged(view)
    }
    fn trim_history(&mut self, view: ViewId, before: u64) -> Result<(), StoreError> {
        self.inner.trim_history(view, before)
    }
    fn drop_view(&mut self, view: ViewId) -> Result<(), StoreError> {
        self.inner.drop_view(view)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        std::thread::sleep(self.delay);
        self.inner.commit()
    }
    fn commit_soon(self: Box<Self>, within: std::time::Duration) -> Result<(), StoreError> {
        std::thread::sleep(self.delay);
        self.inner.commit_soon(within)
    }
}

/// Rows as sorted text, floats to 9 significant digits (sums in another
/// order differ in the last bits).
pub fn table(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "NULL".to_string()
                    } else if matches!(c.data_type(), DataType::Float64 | DataType::Float32) {
                        let v: f64 = array_value_to_string(c, i).unwrap().parse().unwrap();
                        format!("{v:.8e}")
                    } else {
                        array_value_to_string(c, i).unwrap()
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    rows.sort();
    rows
}

pub async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    match engine.execute(sql).await.unwrap() {
        Output::Rows(b) => table(&b),
        other => panic!("{sql}: {other:?}"),
    }
}

/// One change read from a feed: log time, key, row before, row after.
pub type FeedChange = (
    u64,
    Vec<u8>,
    Option<Vec<datafusion::common::ScalarValue>>,
    Option<Vec<datafusion::common::ScalarValue>>,
);

/// Every change of `view` after log time `from`, in feed order, read
/// until a progress mark reaches the view's frontier.
pub async fn feed_changes(engine: &Arc<Engine>, view: &str, from: u64) -> Vec<FeedChange> {
    use kappa_engine::feed::{FeedEvent, FeedStart};
    let frontier = engine.frontier(view).await.unwrap().0;
    let mut feed = engine
        .subscribe(view, FeedStart::After(kappa_log::LogTime(from)))
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
            .await
            .unwrap_or_else(|_| panic!("view {view}: the feed stalled"))
            .unwrap();
        match event {
            FeedEvent::Change {
                log_time,
                key,
                before,
                after,
            } => out.push((log_time.0, key, before, after)),
            FeedEvent::Progress { frontier: f } if f.0 >= frontier => return out,
            FeedEvent::Progress { .. } => {}
            other => panic!("view {view}: unexpected {other:?}"),
        }
    }
}

/// The changes hold each change once and miss none: every change's
/// `before` is the row its key's previous change left (a key's first
/// change may find the row it started with).
pub fn assert_chain(changes: &[FeedChange], what: &str) {
    let mut rows = std::collections::HashMap::new();
    for (t, key, before, after) in changes {
        if let Some(current) = rows.insert(key, after) {
            assert_eq!(
                before, current,
                "{what}: the change at {t} does not follow its key's last one"
            );
        }
    }
}
