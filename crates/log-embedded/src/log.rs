//! [`EmbeddedLog`]: the embedded implementation of [`kappa_log::Log`].

use crate::catalog::{Catalog, TopicMeta};
use crate::fs::{self, FileSystem, OsFs};
use crate::merged::EmbeddedMergedReader;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::options::LogOptions;
use crate::prepare::{BatchLimits, prepare};
use crate::read::read_partition;
use crate::recovery::{self, LOG_DIR};
use crate::state::LogState;
use crate::writer::{Writer, WriterMsg};
use async_trait::async_trait;
use kappa_log::{
    AppendBatch, AppendResult, Log, LogError, LogTime, MergedReader, PartitionInfo, ReadFrom,
    ReadLimits, Record, Token, TopicConfig, TopicDescription, TopicInfo, validate_topic_name,
};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// State shared by the log handle, the writer thread, readers and the cleaner.
#[derive(Debug)]
pub struct Shared {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub options: LogOptions,
    pub catalog: RwLock<Catalog>,
    pub state: RwLock<LogState>,
    /// Log time of the last committed record; followers wait on it.
    pub head_tx: watch::Sender<u64>,
    pub metrics: Metrics,
    /// Serializes the cleaner's passes.
    pub cleaner_lock: Mutex<()>,
    /// Serializes read-modify-write of consumer position files.
    pub consumer_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join(LOG_DIR)
    }

    pub fn topic(&self, name: &str) -> Result<Arc<TopicMeta>, LogError> {
        self.catalog
            .read()
            .expect("catalog lock")
            .get(name)
            .cloned()
    }
}

/// The embedded log: one data directory, one writer thread, any number of
/// concurrent readers. Dropping it stops the writer after it has synced.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<WriterMsg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    cleaner: Mutex<Option<crate::cleaner::CleanerHandle>>,
    _lock: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) a data directory on the real file system.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<EmbeddedLog, LogError> {
        EmbeddedLog::open_with(Arc::new(OsFs), dir.as_ref(), options)
    }

    /// Opens a data directory through any [`FileSystem`] (tests use `SimFs`).
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<EmbeddedLog, LogError> {
        let frame_max = crate::codec::frame::FRAME_LEN_MAX as usize;
        if options.group_bytes_max + options.batch_bytes_max > frame_max {
            return Err(LogError::InvalidArgument(format!(
                "group_bytes_max + batch_bytes_max must stay within the frame limit of {frame_max} bytes"
            )));
        }
        if !fs.exists(dir) {
            fs.create_dir_all(dir)
                .map_err(|e| LogError::io("create", dir, e))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fs.sync_dir(parent)
                .map_err(|e| LogError::io("fsync", parent, e))?;
        }
        let lock = fs.lock_dir(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                let holder = e.to_string();
                LogError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    },
                }
            } else {
                LogError::io("lock", dir, e)
            }
        })?;
        let catalog = Catalog::load(fs.as_ref(), dir)?;
        let recovered = recovery::recover(fs.as_ref(), dir, &catalog)?;
        let (head_tx, _) = watch::channel(recovered.state.head);
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            options: options.clone(),
            catalog: RwLock::new(catalog),
            state: RwLock::new(recovered.state),
            head_tx,
            metrics: Metrics::default(),
            cleaner_lock: Mutex::new(()),
            consumer_lock: tokio::sync::Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            shared.clone(),
            rx,
            recovered.active,
            recovered.last_log_time,
        );
        let handle = std::thread::Builder::new()
            .name("kappa-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::io("spawn writer thread", dir, e))?;
        let cleaner = options
            .cleaner_interval
            .map(|every| crate::cleaner::CleanerHandle::start(shared.clone(), every));
        Ok(EmbeddedLog {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            cleaner: Mutex::new(cleaner),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    fn send(&self, msg: WriterMsg) -> Result<(), LogError> {
        let tx = self.tx.lock().expect("sender lock");
        tx.as_ref()
            .ok_or(LogError::Closed)?
            .send(msg)
            .map_err(|_| LogError::Closed)
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            records_max: self.shared.options.batch_records_max,
            bytes_max: self.shared.options.batch_bytes_max,
        }
    }

    fn submit(
        &self,
        batch: &AppendBatch,
    ) -> Result<oneshot::Receiver<Result<AppendResult, LogError>>, LogError> {
        let txn = {
            let catalog = self.shared.catalog.read().expect("catalog lock");
            prepare(&catalog, batch, self.batch_limits())?
        };
        let (reply, rx) = oneshot::channel();
        self.send(WriterMsg::Append(txn, reply))?;
        Ok(rx)
    }

    /// [`Log::append`] for callers without an async runtime.
    pub fn append_blocking(&self, batch: &AppendBatch) -> Result<AppendResult, LogError> {
        self.submit(batch)?
            .blocking_recv()
            .map_err(|_| LogError::Closed)?
    }

    /// Makes every acknowledged append durable now (relaxed mode).
    pub fn flush_blocking(&self) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriterMsg::Flush(reply))?;
        rx.blocking_recv().map_err(|_| LogError::Closed)?
    }

    /// Reads one partition, synchronously.
    pub fn read_blocking(
        &self,
        topic: &str,
        partition: u32,
        from: ReadFrom,
        limits: ReadLimits,
    ) -> Result<Vec<Record>, LogError> {
        let meta = self.shared.topic(topic)?;
        read_partition(&self.shared, &meta, partition, from, limits, None)
    }

    /// A merged reader with a synchronous `next_batch_blocking`.
    pub fn merged_reader_blocking(
        &self,
        topics: &[&str],
        after: LogTime,
    ) -> Result<EmbeddedMergedReader, LogError> {
        let metas = topics
            .iter()
            .map(|t| self.shared.topic(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmbeddedMergedReader::new(self.shared.clone(), metas, after))
    }

    pub fn head_log_time(&self) -> LogTime {
        LogTime(*self.shared.head_tx.borrow())
    }

    /// [`Log::truncate_before`], on this thread.
    pub fn truncate_before_blocking(
        &self,
        topic: &str,
        before: LogTime,
    ) -> Result<Vec<(u32, u64)>, LogError> {
        let meta = self.shared.topic(topic)?;
        crate::truncate::truncate_before(&self.shared, &meta, before)
    }

    /// Runs one retention and compaction pass now.
    pub fn run_cleaner(&self) -> Result<crate::cleaner::CleanerReport, LogError> {
        crate::cleaner::run_once(&self.shared)
    }

    pub fn describe_blocking(&self, name: &str) -> Result<TopicDescription, LogError> {
        let meta = self.shared.topic(name)?;
        let state = self.shared.state.read().expect("state lock");
        let catalog = self.shared.catalog.read().expect("catalog lock");
        let partitions = (0..meta.config.partitions)
            .map(|partition| {
                let pid = crate::segment::PartitionId {
                    topic_id: meta.id,
                    partition,
                };
                match state.partitions.get(&pid) {
                    Some(p) => PartitionInfo {
                        partition,
                        start_offset: p.start_offset,
                        end_offset: p.next_offset,
                        bytes: p.bytes,
                        last_log_time: p.last_log_time.map(LogTime),
                    },
                    None => {
                        let floor = catalog.floor(pid);
                        PartitionInfo {
                            partition,
                            start_offset: floor.start_offset,
                            end_offset: floor.next_offset,
                            bytes: 0,
                            last_log_time: None,
                        }
                    }
                }
            })
            .collect();
        Ok(TopicDescription {
            info: meta.info(),
            partitions,
        })
    }

    fn admin<T>(
        &self,
        make: impl FnOnce(crate::writer::Reply<T>) -> WriterMsg,
    ) -> Result<oneshot::Receiver<Result<T, LogError>>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply))?;
        Ok(rx)
    }

    pub fn create_topic_blocking(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicInfo, LogError> {
        self.admin(|r| WriterMsg::CreateTopic(name.to_string(), config, r))?
            .blocking_recv()
            .map_err(|_| LogError::Closed)?
    }

    /// Stops the cleaner and the writer (after it syncs). Idempotent.
    pub fn close(&self) {
        if let Some(cleaner) = self.cleaner.lock().expect("cleaner lock").take() {
            cleaner.stop();
        }
        drop(self.tx.lock().expect("sender lock").take());
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
    }

    fn consumer_path(&self, group: &str) -> Result<PathBuf, LogError> {
        validate_topic_name(group).map_err(|reason| {
            LogError::InvalidArgument(format!("invalid consumer group name: {reason}"))
        })?;
        Ok(self
            .shared
            .dir
            .join("consumers")
            .join(format!("{group}.json")))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Serialize, Deserialize)]
struct ConsumerPosition {
    topic: String,
    partition: u32,
    next_offset: u64,
}

#[async_trait]
impl Log for EmbeddedLog {
    fn stats(&self) -> kappa_log::LogStats {
        let m = self.metrics();
        kappa_log::LogStats {
            syncs: m.syncs,
            sync_micros_total: m.sync_micros_total,
            sync_micros_max: m.sync_micros_max,
            groups: m.groups,
            transactions: m.transactions,
            bytes_appended: m.bytes_appended,
        }
    }

    async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, LogError> {
        self.admin(|r| WriterMsg::CreateTopic(name.to_string(), config, r))?
            .await
            .map_err(|_| LogError::Closed)?
    }

    async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.admin(|r| WriterMsg::DeleteTopic(name.to_string(), r))?
            .await
            .map_err(|_| LogError::Closed)?
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, LogError> {
        let catalog = self.shared.catalog.read().expect("catalog lock");
        let mut topics: Vec<TopicInfo> = catalog.by_name.values().map(|t| t.info()).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError> {
        self.describe_blocking(name)
    }

    async fn append(&self, batch: AppendBatch) -> Result<AppendResult, LogError> {
        self.submit(&batch)?.await.map_err(|_| LogError::Closed)?
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: ReadFrom,
        limits: ReadLimits,
    ) -> Result<Vec<Record>, LogError> {
        self.read_blocking(topic, partition, from, limits)
    }

    async fn truncate_before(
        &self,
        topic: &str,
        before: LogTime,
    ) -> Result<Vec<(u32, u64)>, LogError> {
        self.truncate_before_blocking(topic, before)
    }

    async fn merged_reader(
        &self,
        topics: &[&str],
        after: LogTime,
    ) -> Result<Box<dyn MergedReader>, LogError> {
        Ok(Box::new(self.merged_reader_blocking(topics, after)?))
    }

    async fn head(&self) -> Result<Token, LogError> {
        Ok(Token::at(self.head_log_time()))
    }

    async fn wait_for_commit(&self, after: LogTime, timeout: Duration) -> Result<Token, LogError> {
        let mut rx = self.shared.head_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let head = *rx.borrow_and_update();
            if head > after.0 {
                return Ok(Token::at(LogTime(head)));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => return Ok(Token::at(LogTime(head))),
            }
        }
    }

    async fn commit_consumer_positions(
        &self,
        group: &str,
        positions: &[(String, u32, u64)],
    ) -> Result<(), LogError> {
        let path = self.consumer_path(group)?;
        let dir = path.parent().expect("consumers dir");
        let _serialized = self.shared.consumer_lock.lock().await;
        let fs = self.shared.fs.as_ref();
        if !fs.exists(dir) {
            fs.create_dir_all(dir)
                .map_err(|e| LogError::io("create", dir, e))?;
            fs.sync_dir(&self.shared.dir)
                .map_err(|e| LogError::io("fsync", &self.shared.dir, e))?;
        }
        let mut all: Vec<ConsumerPosition> = self
            .consumer_positions(group)
            .await?
            .into_iter()
            .map(|(topic, partition, next_offset)| ConsumerPosition {
                topic,
                partition,
                next_offset,
            })
            .collect();
        for (topic, partition, next_offset) in positions {
            all.retain(|p| !(p.topic == *topic && p.partition == *partition));
            all.push(ConsumerPosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
            });
        }
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let bytes = serde_json::to_vec_pretty(&all).expect("positions serialize");
        fs::write_file_atomic(fs, &path, &bytes).map_err(|e| LogError::io("write", &path, e))
    }

    async fn consumer_positions(&self, group: &str) -> Result<Vec<(String, u32, u64)>, LogError> {
        let path = self.consumer_path(group)?;
        let fs = self.shared.fs.as_ref();
        if !fs.exists(&path) {
            return Ok(Vec::new());
        }
        let bytes = fs::read_file(fs, &path).map_err(|e| LogError::io("read", &path, e))?;
        let all: Vec<ConsumerPosition> =
            serde_json::from_slice(&bytes).map_err(|e| LogError::Corruption {
                file: path.clone(),
                offset: 0,
                detail: e.to_string(),
            })?;
        Ok(all
            .into_iter()
            .map(|p| (p.topic, p.partition, p.next_offset))
            .collect())
    }
}
