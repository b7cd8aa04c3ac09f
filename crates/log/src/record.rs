//! Records as appended and as read back.

use crate::{LogTime, Token};
use bytes::Bytes;
use std::sync::Arc;

/// A record header: a name and an optional value, as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

/// One record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    pub topic: String,
    /// An explicit partition; otherwise the key's hash picks it, or keyless
    /// records are spread round-robin.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    /// `None` is a tombstone (on compacted topics it deletes the key).
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Event time given by the producer, microseconds since the epoch.
    pub event_time: Option<i64>,
}

impl AppendRecord {
    /// A record with a value and nothing else set.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        AppendRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            event_time: None,
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_event_time(mut self, micros: i64) -> Self {
        self.event_time = Some(micros);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value,
        });
        self
    }
}

/// A precondition of an append. If any fails, nothing is appended and the
/// append returns [`crate::LogError::Conflict`] naming the current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The partition's last offset must be `expected` (`None`: the partition
    /// must be empty).
    PartitionLastOffset {
        topic: String,
        partition: u32,
        expected: Option<u64>,
    },
    /// The latest retained record with this key must be at `expected`. A key
    /// whose latest record is a tombstone still has that tombstone's offset.
    KeyLatestOffset {
        topic: String,
        key: Bytes,
        expected: u64,
    },
    /// The key must not exist: no retained record has it, or its latest record
    /// is a tombstone.
    KeyAbsent { topic: String, key: Bytes },
}

/// One call's worth of records: atomic across partitions and topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendBatch {
    pub records: Vec<AppendRecord>,
    pub conditions: Vec<Condition>,
}

impl AppendBatch {
    pub fn new(records: Vec<AppendRecord>) -> Self {
        AppendBatch {
            records,
            conditions: Vec::new(),
        }
    }

    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }
}

/// Where an appended record landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordPosition {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub log_time: LogTime,
}

/// What a successful append returns: one position per record, in the order
/// given, and a token naming the log position just after the append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub positions: Vec<RecordPosition>,
    pub token: Token,
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub log_time: LogTime,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub event_time: Option<i64>,
}
