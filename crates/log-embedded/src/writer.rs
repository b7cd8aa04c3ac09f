//! The writer thread: the only code that appends to the journal.
//!
//! Appenders send prepared transactions over a channel. The writer takes
//! whatever has queued up (a *group*), checks conditions, stamps offsets and
//! log times, writes the group as one frame with one `write`, makes it durable
//! with one `fdatasync`, then publishes it to readers and acknowledges every
//! transaction in it. Concurrent appenders therefore share one sync (group
//! commit), and a crash either keeps a whole frame or cuts it.
//!
//! Architecture invariant: nothing is visible to readers or acknowledged
//! before the sync that makes it durable (in [`Durability::Sync`] mode). A
//! failed sync is never retried: the writer stops, and a restart recovers
//! from what the disk holds.

use crate::catalog::TopicMeta;
use crate::codec::chunk;
use crate::codec::frame::{FRAME_HEADER_LEN, FrameHeader};
use crate::log::Shared;
use crate::options::Durability;
use crate::prepare::{PreparedCondition, PreparedTxn};
use crate::segment::index::SegmentIndex;
use crate::segment::{self, ChunkLoc, PartitionId, Segment};
use bytes::Bytes;
use kappa_log::{
    AppendResult, ConflictCurrent, LogError, LogTime, ReadFrom, ReadLimits, RecordPosition, Token,
    TopicConfig, TopicInfo,
};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub type Reply<T> = oneshot::Sender<Result<T, LogError>>;

pub enum WriterMsg {
    Append(PreparedTxn, Reply<AppendResult>),
    CreateTopic(String, TopicConfig, Reply<TopicInfo>),
    DeleteTopic(String, Reply<()>),
    /// Sync now (relaxed mode) and reply.
    Flush(Reply<()>),
}

/// The active segment, as the writer tracks it.
pub struct Active {
    pub id: u64,
    pub file: Arc<dyn crate::fs::FileHandle>,
    pub path: std::path::PathBuf,
    pub len: u64,
    pub opened: Instant,
}

/// Latest record of a key: (offset, is tombstone).
type KeyIndex = HashMap<Bytes, (u64, bool)>;

/// What a group changes, applied only once its frame is durable.
#[derive(Default)]
struct Group {
    frame: Vec<u8>,
    chunks: Vec<(PartitionId, ChunkLoc)>,
    next_offsets: HashMap<PartitionId, u64>,
    keys: HashMap<PartitionId, Vec<(Bytes, u64, bool)>>,
    first_log_time: u64,
    last_log_time: u64,
    replies: Vec<(Reply<AppendResult>, AppendResult)>,
}

pub struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<WriterMsg>,
    active: Active,
    next_offsets: HashMap<PartitionId, u64>,
    key_indexes: HashMap<PartitionId, KeyIndex>,
    last_log_time: u64,
    failed: Option<String>,
    unsynced_since: Option<Instant>,
    /// Appends in the previous group, and how long its sync took: the
    /// group-commit wait is tuned by both.
    last_group_appends: usize,
    last_sync_took: Duration,
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<WriterMsg>,
        active: Active,
        last_log_time: u64,
    ) -> Writer {
        let next_offsets = shared
            .state
            .read()
            .expect("state lock")
            .partitions
            .iter()
            .map(|(pid, p)| (*pid, p.next_offset))
            .collect();
        Writer {
            shared,
            rx,
            active,
            next_offsets,
            key_indexes: HashMap::new(),
            last_log_time,
            failed: None,
            unsynced_since: None,
            last_group_appends: 0,
            last_sync_took: Duration::ZERO,
        }
    }

    /// Runs until every sender is gone, then syncs what is left.
    pub fn run(mut self) {
        loop {
            let msg = match self.next_message() {
                Some(msg) => msg,
                None => break,
            };
            let mut group = Group::default();
            self.gather(msg, &mut group);
            self.commit(&mut group);
        }
        if self.unsynced_since.is_some() {
            let _ = self.sync();
        }
    }

    /// Stages `first` and whatever else is queued into `group`. When the
    /// previous group held `n > 1` appends, waits (briefly, see
    /// [`LogOptions::group_commit_wait`]) until `n` have arrived: appenders
    /// acknowledged together resubmit within microseconds of each other.
    fn gather(&mut self, first: WriterMsg, group: &mut Group) {
        let target = self.last_group_appends;
        let mut appends = 0;
        let wait = match self.shared.options.durability {
            Durability::Sync if target > 1 => self
                .shared
                .options
                .group_commit_wait
                .min(self.last_sync_took),
            _ => Duration::ZERO,
        };
        let deadline = Instant::now() + wait;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            appends += matches!(msg, WriterMsg::Append(..)) as usize;
            self.handle(msg, group);
            if group.frame.len() >= self.shared.options.group_bytes_max {
                break;
            }
            next = match self.rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) if appends >= target => None,
                Err(TryRecvError::Empty) => self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok(),
            };
        }
        self.last_group_appends = appends;
    }

    /// The next message; in relaxed mode, syncs when the interval is up.
    fn next_message(&mut self) -> Option<WriterMsg> {
        loop {
            let deadline = match (self.shared.options.durability, self.unsynced_since) {
                (Durability::IntervalMs(ms), Some(since)) => since + Duration::from_millis(ms),
                _ => return self.rx.recv().ok(),
            };
            if deadline <= Instant::now() {
                // Under sustained load the channel never times out.
                let _ = self.sync();
                continue;
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(msg) => return Some(msg),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.sync();
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn handle(&mut self, msg: WriterMsg, group: &mut Group) {
        match msg {
            WriterMsg::Append(txn, reply) => self.stage(group, txn, reply),
            WriterMsg::CreateTopic(name, config, reply) => {
                self.commit(group);
                let _ = reply.send(self.create_topic(&name, config));
            }
            WriterMsg::DeleteTopic(name, reply) => {
                self.commit(group);
                let _ = reply.send(self.delete_topic(&name));
            }
            WriterMsg::Flush(reply) => {
                self.commit(group);
                let result = match &self.failed {
                    Some(reason) => Err(LogError::WriterFailed {
                        reason: reason.clone(),
                    }),
                    None if self.unsynced_since.is_some() => self.sync(),
                    None => Ok(()),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn next_offset(&self, group: &Group, pid: PartitionId) -> u64 {
        group
            .next_offsets
            .get(&pid)
            .or_else(|| self.next_offsets.get(&pid))
            .copied()
            .unwrap_or_else(|| {
                self.shared
                    .catalog
                    .read()
                    .expect("catalog lock")
                    .floor(pid)
                    .next_offset
            })
    }

    /// Checks a transaction and adds it to the group's frame.
    fn stage(&mut self, group: &mut Group, mut txn: PreparedTxn, reply: Reply<AppendResult>) {
        if let Some(reason) = &self.failed {
            let _ = reply.send(Err(LogError::WriterFailed {
                reason: reason.clone(),
            }));
            return;
        }
        // The topic may have been deleted since the appender prepared.
        {
            let catalog = self.shared.catalog.read().expect("catalog lock");
            if let Some(c) = txn
                .chunks
                .iter()
                .find(|c| !catalog.by_id.contains_key(&c.pid.topic_id))
            {
                let _ = reply.send(Err(LogError::TopicNotFound {
                    topic: c.topic.to_string(),
                }));
                return;
            }
        }
        // Key indexes are built from the committed log, so commit the group
        // before the first condition that needs a new one (not halfway).
        for (condition, _) in &txn.conditions {
            if let PreparedCondition::KeyLatestOffset { pid, .. } = condition
                && !self.key_indexes.contains_key(pid)
            {
                self.commit(group);
                if let Err(e) = self.build_key_index(*pid) {
                    let _ = reply.send(Err(e));
                    return;
                }
            }
        }
        if let Some(reason) = &self.failed {
            let _ = reply.send(Err(LogError::WriterFailed {
                reason: reason.clone(),
            }));
            return;
        }
        for (index, (condition, description)) in txn.conditions.iter().enumerate() {
            match self.check(group, condition) {
                Ok(None) => {}
                Ok(Some(current)) => {
                    let _ = reply.send(Err(LogError::Conflict {
                        index,
                        condition: description.clone(),
                        current,
                    }));
                    return;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            }
        }
        if group.frame.is_empty() {
            group.frame.resize(FRAME_HEADER_LEN, 0);
        }
        let previous = if group.replies.is_empty() {
            self.last_log_time
        } else {
            group.last_log_time
        };
        let base_log_time = now_micros().max(previous + 1);
        if group.replies.is_empty() {
            group.first_log_time = base_log_time;
        }
        let mut chunk_bases = Vec::with_capacity(txn.chunks.len());
        for c in &mut txn.chunks {
            let base_offset = self.next_offset(group, c.pid);
            let chunk_log_time = base_log_time + c.log_time_delta as u64;
            chunk::stamp(&mut c.bytes, base_offset, chunk_log_time);
            group
                .next_offsets
                .insert(c.pid, base_offset + c.record_count as u64);
            if self.key_indexes.contains_key(&c.pid) {
                let keys = group.keys.entry(c.pid).or_default();
                for (key, delta, tombstone) in &c.keys {
                    keys.push((key.clone(), base_offset + *delta as u64, *tombstone));
                }
            }
            group.chunks.push((
                c.pid,
                ChunkLoc {
                    pos: group.frame.len() as u64,
                    len: c.bytes.len() as u32,
                    record_count: c.record_count,
                    base_offset,
                    last_offset: base_offset + c.record_count as u64 - 1,
                    base_log_time: chunk_log_time,
                    last_log_time: chunk_log_time + c.last_log_time_delta as u64,
                },
            ));
            group.frame.extend_from_slice(&c.bytes);
            chunk_bases.push((c.topic.clone(), c.pid.partition, base_offset));
        }
        group.last_log_time = base_log_time + txn.record_count as u64 - 1;
        let positions = txn
            .slots
            .iter()
            .enumerate()
            .map(|(i, (chunk, delta))| {
                let (topic, partition, base) = &chunk_bases[*chunk as usize];
                RecordPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: base + *delta as u64,
                    log_time: LogTime(base_log_time + i as u64),
                }
            })
            .collect();
        let result = AppendResult {
            positions,
            token: Token::at(LogTime(group.last_log_time)),
        };
        group.replies.push((reply, result));
    }

    /// `None` if the condition holds, else the value found.
    fn check(
        &self,
        group: &Group,
        condition: &PreparedCondition,
    ) -> Result<Option<ConflictCurrent>, LogError> {
        match condition {
            PreparedCondition::PartitionLastOffset { pid, expected } => {
                let next = self.next_offset(group, *pid);
                let last = next.checked_sub(1);
                Ok((last != *expected).then_some(ConflictCurrent::PartitionLastOffset(last)))
            }
            PreparedCondition::KeyLatestOffset { pid, key, expected } => {
                let start = self
                    .shared
                    .state
                    .read()
                    .expect("state lock")
                    .partitions
                    .get(pid)
                    .map_or(0, |p| p.start_offset);
                let in_group = group
                    .keys
                    .get(pid)
                    .and_then(|keys| keys.iter().rev().find(|(k, _, _)| k == key))
                    .map(|(_, o, t)| (*o, *t));
                let index = self.key_indexes.get(pid).expect("built before checking");
                let latest = in_group
                    .or_else(|| index.get(key).copied())
                    .filter(|(offset, _)| *offset >= start);
                Ok(match expected {
                    None => match latest {
                        Some((offset, false)) => {
                            Some(ConflictCurrent::KeyLatestOffset(Some(offset)))
                        }
                        _ => None,
                    },
                    Some(e) => match latest {
                        Some((offset, _)) if offset == *e => None,
                        other => Some(ConflictCurrent::KeyLatestOffset(other.map(|(o, _)| o))),
                    },
                })
            }
        }
    }

    /// Reads the partition once to learn every key's latest offset. From then
    /// on the writer keeps the index current as it appends.
    fn build_key_index(&mut self, pid: PartitionId) -> Result<(), LogError> {
        let topic = self.topic_by_id(pid.topic_id)?;
        let mut index = KeyIndex::new();
        let mut from = ReadFrom::Start;
        loop {
            let records = crate::read::read_partition(
                &self.shared,
                &topic,
                pid.partition,
                from,
                ReadLimits::default(),
                None,
            )?;
            let Some(last) = records.last() else { break };
            from = ReadFrom::Offset(last.offset + 1);
            for r in records {
                if let Some(key) = r.key {
                    index.insert(key, (r.offset, r.value.is_none()));
                }
            }
        }
        self.key_indexes.insert(pid, index);
        Ok(())
    }

    fn topic_by_id(&self, id: u32) -> Result<Arc<TopicMeta>, LogError> {
        self.shared
            .catalog
            .read()
            .expect("catalog lock")
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| LogError::TopicNotFound {
                topic: format!("#{id}"),
            })
    }

    /// Writes, syncs and publishes the group; replies to every transaction.
    fn commit(&mut self, group: &mut Group) {
        let mut group = std::mem::take(group);
        if group.replies.is_empty() {
            return;
        }
        match self.write_frame(&mut group) {
            Ok(frame_pos) => {
                self.publish(&group, frame_pos);
                for (reply, result) in group.replies {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                for (reply, _) in group.replies {
                    let _ = reply.send(Err(copy_error(&e)));
                }
            }
        }
    }

    /// Returns the frame's position in the active segment.
    fn write_frame(&mut self, group: &mut Group) -> Result<u64, LogError> {
        let frame = &mut group.frame;
        let header = FrameHeader {
            frame_len: frame.len() as u32,
            first_log_time: group.first_log_time,
            last_log_time: group.last_log_time,
            chunk_count: group.chunks.len() as u32,
        };
        frame[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        self.roll_if_needed(frame.len() as u64, group.first_log_time)?;
        let pos = self.active.len;
        if let Err(e) = self.active.file.write_all_at(frame, pos) {
            // Cut the partial frame so the next one starts clean. If even
            // that fails the file's tail is unknown: stop.
            if let Err(cut) = self.active.file.set_len(pos) {
                self.failed = Some(format!("could not cut a failed write back: {cut}"));
            }
            return Err(self.write_error(e));
        }
        self.active.len += frame.len() as u64;
        match self.shared.options.durability {
            Durability::Sync => self.sync()?,
            Durability::IntervalMs(_) => {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        Ok(pos)
    }

    fn write_error(&self, e: io::Error) -> LogError {
        if e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull {
            LogError::StorageFull {
                path: self.active.path.clone(),
                detail: e.to_string(),
            }
        } else {
            LogError::io("write", &self.active.path, e)
        }
    }

    /// `fdatasync` the active segment. A failure is fatal for the writer.
    fn sync(&mut self) -> Result<(), LogError> {
        let started = Instant::now();
        match self.active.file.sync_data() {
            Ok(()) => {
                self.unsynced_since = None;
                self.last_sync_took = started.elapsed();
                self.shared.metrics.record_sync(self.last_sync_took);
                Ok(())
            }
            Err(e) => {
                let reason = format!("fdatasync of {} failed: {e}", self.active.path.display());
                tracing::error!("{reason}; the writer stops and will not retry");
                self.failed = Some(reason.clone());
                Err(LogError::Indeterminate { reason })
            }
        }
    }

    /// Seals the active segment and starts a new one when it is full or old.
    fn roll_if_needed(&mut self, frame_len: u64, next_log_time: u64) -> Result<(), LogError> {
        let options = &self.shared.options;
        if self.active.len == 0
            || (self.active.len + frame_len <= options.segment_bytes_max
                && self.active.opened.elapsed() < options.segment_age_max)
        {
            return Ok(());
        }
        // Only the last segment may have a torn tail: make the old one whole
        // on disk (also after a write that failed and was cut back).
        self.sync()?;
        let log_dir = self.shared.log_dir();
        let path = segment::segment_path(&log_dir, next_log_time);
        let fs = &self.shared.fs;
        let file = fs.open(&path, true).map_err(|e| self.write_error(e))?;
        if let Err(e) = fs.sync_dir(&log_dir) {
            let reason = format!("fsync of directory {} failed: {e}", log_dir.display());
            self.failed = Some(reason.clone());
            return Err(LogError::WriterFailed { reason });
        }
        let sealed_id = self.active.id;
        let index = {
            let mut state = self.shared.state.write().expect("state lock");
            let sealed = state
                .segments
                .get_mut(&sealed_id)
                .expect("active segment is known");
            sealed.sealed = true;
            let index = SegmentIndex {
                segment_len: sealed.len,
                last_log_time: sealed.last_log_time,
                entries: sealed.sorted_chunks(),
            };
            state.segments.insert(
                next_log_time,
                Segment::empty(next_log_time, path.clone(), file.clone()),
            );
            index
        };
        // The index is derived data: written without fsync, rebuilt at open
        // if a crash lost or tore it.
        if let Err(e) = crate::recovery::write_index(fs.as_ref(), &log_dir, sealed_id, &index) {
            tracing::warn!(error = %e, segment = sealed_id, "could not write a segment index; it will be rebuilt at open");
        }
        self.active = Active {
            id: next_log_time,
            file,
            path,
            len: 0,
            opened: Instant::now(),
        };
        Ok(())
    }

    /// Makes a durable group visible to readers and followers.
    fn publish(&mut self, group: &Group, frame_pos: u64) {
        {
            let mut state = self.shared.state.write().expect("state lock");
            for (pid, loc) in &group.chunks {
                let mut loc = *loc;
                loc.pos += frame_pos;
                state.publish_chunk(self.active.id, *pid, loc);
            }
            let segment = state
                .segments
                .get_mut(&self.active.id)
                .expect("active segment");
            segment.len = self.active.len;
            state.head = group.last_log_time;
        }
        self.last_log_time = group.last_log_time;
        for (pid, next) in &group.next_offsets {
            self.next_offsets.insert(*pid, *next);
        }
        for (pid, keys) in &group.keys {
            if let Some(index) = self.key_indexes.get_mut(pid) {
                for (key, offset, tombstone) in keys {
                    index.insert(key.clone(), (*offset, *tombstone));
                }
            }
        }
        self.shared
            .metrics
            .record_group(group.replies.len(), group.frame.len());
        self.shared.head_tx.send_replace(group.last_log_time);
    }

    fn create_topic(&mut self, name: &str, config: TopicConfig) -> Result<TopicInfo, LogError> {
        kappa_log::validate_topic_name(name)
            .map_err(|reason| LogError::InvalidTopicName { reason })?;
        if config.partitions == 0 || config.partitions > TopicConfig::MAX_PARTITIONS {
            return Err(LogError::InvalidArgument(format!(
                "a topic needs 1 to {} partitions, got {}",
                TopicConfig::MAX_PARTITIONS,
                config.partitions
            )));
        }
        let mut catalog = self.shared.catalog.write().expect("catalog lock");
        if catalog.by_name.contains_key(name) {
            return Err(LogError::TopicExists {
                topic: name.to_string(),
            });
        }
        let id = catalog.next_topic_id;
        let meta = TopicMeta {
            id,
            name: name.into(),
            config,
            created: LogTime(now_micros()),
            next_keyless: AtomicU32::new(0),
        };
        let info = meta.info();
        catalog.next_topic_id += 1;
        catalog.insert(meta);
        if let Err(e) = catalog.persist(self.shared.fs.as_ref(), &self.shared.dir) {
            catalog.remove(name);
            catalog.next_topic_id -= 1;
            return Err(e);
        }
        Ok(info)
    }

    fn delete_topic(&mut self, name: &str) -> Result<(), LogError> {
        let mut catalog = self.shared.catalog.write().expect("catalog lock");
        let meta = catalog.get(name)?.clone();
        let floors = catalog.floors.clone();
        catalog.remove(name);
        if let Err(e) = catalog.persist(self.shared.fs.as_ref(), &self.shared.dir) {
            catalog.insert(TopicMeta {
                id: meta.id,
                name: meta.name.clone(),
                config: meta.config,
                created: meta.created,
                next_keyless: AtomicU32::new(0),
            });
            catalog.floors = floors;
            return Err(e);
        }
        drop(catalog);
        self.next_offsets.retain(|pid, _| pid.topic_id != meta.id);
        self.key_indexes.retain(|pid, _| pid.topic_id != meta.id);
        let mut state = self.shared.state.write().expect("state lock");
        state.partitions.retain(|pid, _| pid.topic_id != meta.id);
        Ok(())
    }
}

/// The same error again, for each transaction of a failed group.
fn copy_error(e: &LogError) -> LogError {
    match e {
        LogError::StorageFull { path, detail } => LogError::StorageFull {
            path: path.clone(),
            detail: detail.clone(),
        },
        LogError::Io { op, path, source } => LogError::Io {
            op,
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        LogError::WriterFailed { reason } => LogError::WriterFailed {
            reason: reason.clone(),
        },
        LogError::Indeterminate { reason } => LogError::Indeterminate {
            reason: reason.clone(),
        },
        other => LogError::Indeterminate {
            reason: other.to_string(),
        },
    }
}
