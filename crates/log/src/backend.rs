//! The trait every log backend implements.

use crate::{
    AppendBatch, AppendResult, LogError, LogTime, Record, RecordColumns, Token, TopicConfig,
    TopicDescription, TopicInfo,
};
use async_trait::async_trait;
use std::time::Duration;

/// Where a partition read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The record at this offset (or, on a compacted topic, the next one after
    /// it). An offset below the partition's start is
    /// [`LogError::OffsetOutOfRange`]; the end offset reads nothing.
    Offset(u64),
    /// The first record whose log time is at or after this one.
    LogTime(LogTime),
    /// The first retained record.
    Start,
}

/// Bounds on one read call. A read returns at least one record if any is
/// available, even if that record alone exceeds `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_records: 10_000,
            max_bytes: 4 << 20,
        }
    }
}

/// A reader over several partitions (and topics) that returns records in
/// log-time order. Its position is one log time: everything at or before it
/// has been returned.
#[async_trait]
pub trait MergedReader: Send {
    /// The next records in log-time order, at most `limits`; empty when the
    /// reader has caught up with the committed head.
    async fn next_batch(&mut self, limits: ReadLimits) -> Result<Vec<Record>, LogError>;

    /// [`MergedReader::next_batch`] as columns: the same records, without
    /// a [`Record`] made for each (for consumers that decode a batch at
    /// once). By default made from `next_batch`.
    async fn next_columns(&mut self, limits: ReadLimits) -> Result<RecordColumns, LogError> {
        let records = self.next_batch(limits).await?;
        Ok(RecordColumns::from(&records[..]))
    }

    /// Log time of the last record returned (or the start position).
    fn position(&self) -> LogTime;
}

/// A durable, partitioned, totally ordered log.
///
/// Every method is safe to call concurrently. Append errors say whether they
/// are determinate (see [`LogError::is_determinate`]).
#[async_trait]
pub trait Log: Send + Sync {
    async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, LogError>;

    /// Deletes the topic and, in the background, its records.
    async fn delete_topic(&self, name: &str) -> Result<(), LogError>;

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, LogError>;

    async fn describe_topic(&self, name: &str) -> Result<TopicDescription, LogError>;

    /// Appends every record of the batch or none of them. Returns once the
    /// batch is durable (unless the log runs in relaxed-durability mode).
    async fn append(&self, batch: AppendBatch) -> Result<AppendResult, LogError>;

    /// Reads one partition in offset order.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: ReadFrom,
        limits: ReadLimits,
    ) -> Result<Vec<Record>, LogError>;

    /// A reader over every partition of `topics`, in log-time order, starting
    /// after `after` (`LogTime::ZERO` reads from the start).
    async fn merged_reader(
        &self,
        topics: &[&str],
        after: LogTime,
    ) -> Result<Box<dyn MergedReader>, LogError>;

    /// A token covering every record committed so far.
    async fn head(&self) -> Result<Token, LogError>;

    /// Waits until a record with a log time after `after` is committed, or
    /// `timeout` passes. Returns the head token either way.
    async fn wait_for_commit(&self, after: LogTime, timeout: Duration) -> Result<Token, LogError>;

    /// Counters about the log's own work, for metrics. A backend that
    /// does not keep them returns zeros.
    fn stats(&self) -> LogStats {
        LogStats::default()
    }

    /// Stores a consumer group's next offsets (per topic and partition).
    async fn commit_consumer_positions(
        &self,
        group: &str,
        positions: &[(String, u32, u64)],
    ) -> Result<(), LogError>;

    /// A consumer group's stored next offsets.
    async fn consumer_positions(&self, group: &str) -> Result<Vec<(String, u32, u64)>, LogError>;

    /// Drops every record of `topic` with a log time before `before`
    /// (Kafka's DeleteRecords): each partition's start offset rises to its
    /// first record at or after it. Returns each partition's start offset
    /// afterwards. Offsets and log times of kept records do not change.
    async fn truncate_before(
        &self,
        topic: &str,
        before: LogTime,
    ) -> Result<Vec<(u32, u64)>, LogError>;
}

/// What a log has done since it was opened (see [`Log::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// fsyncs (fdatasync) of the log's files, and the time they took.
    pub syncs: u64,
    pub sync_micros_total: u64,
    pub sync_micros_max: u64,
    /// Group commits, and the appends (transactions) they carried.
    pub groups: u64,
    pub transactions: u64,
    pub bytes_appended: u64,
}
