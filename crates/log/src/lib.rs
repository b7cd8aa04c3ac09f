//! The log contract.
//!
//! Kappa's log is the system of record. This crate says what a log *is* to the
//! rest of Kappa — records, topics, positions, tokens and the [`Log`] trait — and
//! nothing about how one is stored. The embedded log (`kappa-log-embedded`) and
//! the Kafka-backed log implement the same trait and pass the same conformance
//! tests.
//!
//! Key design decision: every position is expressed twice, as a per-partition
//! offset (what Kafka users and tools expect) and as a **log time**: a
//! microsecond timestamp assigned at commit that is unique and strictly
//! increasing across the whole log instance. Log time is the one clock that
//! tokens, AS OF and subscriptions speak in.

mod backend;
mod columns;
mod error;
mod partitioner;
mod record;
mod token;
mod topic;
pub mod units;

pub use backend::{Log, LogStats, MergedReader, ReadFrom, ReadLimits};
pub use columns::{RecordColumns, RecordEntry, record_size};
pub use error::{ConflictCurrent, LogError};
pub use partitioner::{murmur2, partition_for_key};
pub use record::{
    AppendBatch, AppendRecord, AppendResult, Condition, Header, Record, RecordPosition,
};
pub use token::Token;
pub use topic::{
    Cleanup, LogTime, PartitionInfo, Retention, TopicConfig, TopicDescription, TopicInfo,
    validate_topic_name,
};
