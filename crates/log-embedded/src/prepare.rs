//! Turning an [`AppendBatch`] into encoded chunks, on the appender's thread,
//! so the single writer thread only stamps positions and writes.

use crate::catalog::Catalog;
use crate::codec::chunk::ChunkBuilder;
use crate::segment::PartitionId;
use bytes::Bytes;
use kappa_log::{AppendBatch, Condition, LogError, partition_for_key};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The records of one partition within one transaction.
#[derive(Debug)]
pub struct PreparedChunk {
    pub pid: PartitionId,
    pub topic: Arc<str>,
    /// Finished chunk bytes with placeholder base offset and log time.
    pub bytes: Vec<u8>,
    pub record_count: u32,
    /// Log time of the chunk's first record minus the transaction's first.
    pub log_time_delta: u32,
    /// Log time of the chunk's last record minus the chunk's first.
    pub last_log_time_delta: u32,
    /// Keys in this chunk: (key, offset delta, is tombstone).
    pub keys: Vec<(Bytes, u32, bool)>,
}

/// A condition resolved to a partition.
#[derive(Debug, Clone)]
pub enum PreparedCondition {
    PartitionLastOffset {
        pid: PartitionId,
        expected: Option<u64>,
    },
    /// `expected: None` means the key must not exist.
    KeyLatestOffset {
        pid: PartitionId,
        key: Bytes,
        expected: Option<u64>,
    },
}

/// One append call, ready for the writer.
#[derive(Debug)]
pub struct PreparedTxn {
    pub chunks: Vec<PreparedChunk>,
    pub record_count: u32,
    /// For each record given, in order: (chunk index, offset delta).
    pub slots: Vec<(u32, u32)>,
    pub conditions: Vec<(PreparedCondition, String)>,
}

/// Limits on one append call.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub records_max: usize,
    pub bytes_max: usize,
}

/// A chunk being built: partition, topic name, records, index of its first
/// record in the batch, keys.
type Building = (
    PartitionId,
    Arc<str>,
    ChunkBuilder,
    u32,
    Vec<(Bytes, u32, bool)>,
);

pub fn prepare(
    catalog: &Catalog,
    batch: &AppendBatch,
    limits: BatchLimits,
) -> Result<PreparedTxn, LogError> {
    if batch.records.is_empty() {
        return Err(LogError::InvalidArgument(
            "an append needs at least one record".into(),
        ));
    }
    if batch.records.len() > limits.records_max {
        return Err(LogError::BatchTooLarge(format!(
            "{} records in one append; the limit is {}",
            batch.records.len(),
            limits.records_max
        )));
    }
    let mut builders: Vec<Building> = Vec::new();
    let mut chunk_of: HashMap<PartitionId, usize> = HashMap::new();
    let mut slots = Vec::with_capacity(batch.records.len());
    let mut bytes = 0usize;
    for (index, r) in batch.records.iter().enumerate() {
        let topic = catalog.get(&r.topic)?;
        let partitions = topic.config.partitions;
        let partition = match (r.partition, &r.key) {
            (Some(p), _) if p >= partitions => {
                return Err(LogError::PartitionOutOfRange {
                    topic: r.topic.clone(),
                    partition: p,
                    partitions,
                });
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => topic.next_keyless.fetch_add(1, Ordering::Relaxed) % partitions,
        };
        if topic.config.cleanup != kappa_log::Cleanup::Delete && r.key.is_none() {
            return Err(LogError::InvalidArgument(format!(
                "record {index}: topic {:?} is compacted, so every record needs a key",
                r.topic
            )));
        }
        let pid = PartitionId {
            topic_id: topic.id,
            partition,
        };
        let slot = *chunk_of.entry(pid).or_insert_with(|| {
            builders.push((
                pid,
                topic.name.clone(),
                ChunkBuilder::default(),
                index as u32,
                Vec::new(),
            ));
            builders.len() - 1
        });
        let (_, _, builder, first_index, keys) = &mut builders[slot];
        let offset_delta = builder.record_count();
        let len_before = builder.len();
        builder.push(
            index as u32 - *first_index,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
            r.event_time,
        );
        if let Some(key) = &r.key {
            keys.push((key.clone(), offset_delta, r.value.is_none()));
        }
        bytes += builder.len() - len_before;
        slots.push((slot as u32, offset_delta));
        if bytes > limits.bytes_max {
            return Err(LogError::BatchTooLarge(format!(
                "the append exceeds {} bytes at record {index}",
                limits.bytes_max
            )));
        }
    }
    let chunks = builders
        .into_iter()
        .map(|(pid, topic, builder, first_index, keys)| {
            let record_count = builder.record_count();
            let last_log_time_delta = builder.last_log_time_delta();
            PreparedChunk {
                pid,
                topic,
                bytes: builder.finish(pid.topic_id, pid.partition, 0, 0),
                record_count,
                log_time_delta: first_index,
                last_log_time_delta,
                keys,
            }
        })
        .collect();
    let conditions = batch
        .conditions
        .iter()
        .map(|c| resolve_condition(catalog, c).map(|p| (p, describe(c))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedTxn {
        chunks,
        record_count: batch.records.len() as u32,
        slots,
        conditions,
    })
}

fn resolve_condition(catalog: &Catalog, c: &Condition) -> Result<PreparedCondition, LogError> {
    Ok(match c {
        Condition::PartitionLastOffset {
            topic,
            partition,
            expected,
        } => {
            let meta = catalog.get(topic)?;
            if *partition >= meta.config.partitions {
                return Err(LogError::PartitionOutOfRange {
                    topic: topic.clone(),
                    partition: *partition,
                    partitions: meta.config.partitions,
                });
            }
            PreparedCondition::PartitionLastOffset {
                pid: PartitionId {
                    topic_id: meta.id,
                    partition: *partition,
                },
                expected: *expected,
            }
        }
        Condition::KeyLatestOffset {
            topic,
            key,
            expected,
        } => key_condition(catalog, topic, key, Some(*expected))?,
        Condition::KeyAbsent { topic, key } => key_condition(catalog, topic, key, None)?,
    })
}

fn key_condition(
    catalog: &Catalog,
    topic: &str,
    key: &Bytes,
    expected: Option<u64>,
) -> Result<PreparedCondition, LogError> {
    let meta = catalog.get(topic)?;
    Ok(PreparedCondition::KeyLatestOffset {
        pid: PartitionId {
            topic_id: meta.id,
            partition: partition_for_key(key, meta.config.partitions),
        },
        key: key.clone(),
        expected,
    })
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::PartitionLastOffset {
            topic,
            partition,
            expected: Some(o),
        } => format!("{topic}/{partition} last offset = {o}"),
        Condition::PartitionLastOffset {
            topic,
            partition,
            expected: None,
        } => format!("{topic}/{partition} is empty"),
        Condition::KeyLatestOffset {
            topic,
            key,
            expected,
        } => format!(
            "key {:?} in {topic} latest offset = {expected}",
            String::from_utf8_lossy(key)
        ),
        Condition::KeyAbsent { topic, key } => {
            format!(
                "key {:?} in {topic} does not exist",
                String::from_utf8_lossy(key)
            )
        }
    }
}
