//! Errors of the log contract.
//!
//! An append error is either *determinate* (it surely appended nothing) or
//! *indeterminate* (it may have appended: the storage failed after the data
//! was handed to it). Callers that retry must only retry determinate errors
//! blindly; after an indeterminate one they read back first.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The value a failed condition found instead of the one expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictCurrent {
    /// The partition's last offset (`None`: the partition is empty).
    PartitionLastOffset(Option<u64>),
    /// The key's latest offset (`None`: the key does not exist).
    KeyLatestOffset(Option<u64>),
}

impl fmt::Display for ConflictCurrent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictCurrent::PartitionLastOffset(None) => write!(f, "the partition is empty"),
            ConflictCurrent::PartitionLastOffset(Some(o)) => {
                write!(f, "the partition's last offset is {o}")
            }
            ConflictCurrent::KeyLatestOffset(None) => write!(f, "the key does not exist"),
            ConflictCurrent::KeyLatestOffset(Some(o)) => {
                write!(f, "the key's latest record is at offset {o}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("topic {topic:?} does not exist; list topics with `kappa topic list`")]
    TopicNotFound { topic: String },

    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },

    #[error("invalid topic name: {reason}")]
    InvalidTopicName { reason: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error(
        "partition {partition} does not exist in topic {topic:?}, which has {partitions} partition(s) (0..{partitions})"
    )]
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },

    #[error(
        "offset {offset} is out of range for {topic}/{partition}: readable offsets are {start_offset}..{end_offset}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start_offset: u64,
        end_offset: u64,
    },

    #[error("conflict: condition {index} ({condition}) failed: {current}; nothing was appended")]
    Conflict {
        /// Index of the failed condition in the batch's conditions.
        index: usize,
        condition: String,
        current: ConflictCurrent,
    },

    #[error("the batch is too large: {0}")]
    BatchTooLarge(String),

    #[error(
        "the log writer has stopped after a storage failure ({reason}); appends are refused until the log is reopened (restart the process); reads continue"
    )]
    WriterFailed { reason: String },

    #[error("the append may or may not have been written: {reason}; read back before retrying")]
    Indeterminate { reason: String },

    #[error(
        "no space left on the device holding {path}: {detail}; nothing was appended; free space and retry"
    )]
    StorageFull { path: PathBuf, detail: String },

    #[error("corruption in {file} at byte offset {offset}: {detail}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        detail: String,
    },

    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "data directory {dir} is in use by another process{holder}; stop it or use another --data-dir"
    )]
    Locked { dir: PathBuf, holder: String },

    #[error("invalid token {token:?}: {reason}")]
    InvalidToken { token: String, reason: String },

    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },

    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// False only when the operation may have taken effect despite the error.
    pub fn is_determinate(&self) -> bool {
        !matches!(self, LogError::Indeterminate { .. })
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
