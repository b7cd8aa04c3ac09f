//! The merged reader: every partition of several topics in log-time order.
//!
//! Each call fixes the committed head `H` first and only returns records at
//! or before it. Every record with a log time up to `H` was published with
//! (or before) `H`, so a partition that has nothing up to `H` cannot later
//! produce a record that should have come earlier.

use crate::catalog::TopicMeta;
use crate::log::Shared;
use crate::read::{read_partition, record_size};
use async_trait::async_trait;
use kappa_log::{LogError, LogTime, MergedReader, ReadFrom, ReadLimits, Record};
use std::collections::VecDeque;
use std::sync::Arc;

struct Cursor {
    topic: Arc<TopicMeta>,
    partition: u32,
    buffered: VecDeque<Record>,
    /// Next log time to read from.
    next_log_time: u64,
    /// Nothing more up to the current call's head.
    drained: bool,
}

pub struct EmbeddedMergedReader {
    shared: Arc<Shared>,
    cursors: Vec<Cursor>,
    position: u64,
}

/// Records fetched per partition per refill.
const REFILL_RECORDS: usize = 4096;

impl EmbeddedMergedReader {
    pub fn new(shared: Arc<Shared>, topics: Vec<Arc<TopicMeta>>, after: LogTime) -> Self {
        let cursors = topics
            .iter()
            .flat_map(|t| {
                (0..t.config.partitions).map(move |p| Cursor {
                    topic: t.clone(),
                    partition: p,
                    buffered: VecDeque::new(),
                    next_log_time: after.0 + 1,
                    drained: false,
                })
            })
            .collect();
        EmbeddedMergedReader {
            shared,
            cursors,
            position: after.0,
        }
    }

    fn refill(&mut self, i: usize, head: u64) -> Result<(), LogError> {
        let c = &mut self.cursors[i];
        if !self
            .shared
            .catalog
            .read()
            .expect("catalog lock")
            .by_id
            .contains_key(&c.topic.id)
        {
            return Err(LogError::TopicNotFound {
                topic: c.topic.name.to_string(),
            });
        }
        let limits = ReadLimits {
            max_records: REFILL_RECORDS,
            max_bytes: 4 << 20,
        };
        let records = read_partition(
            &self.shared,
            &c.topic,
            c.partition,
            ReadFrom::LogTime(LogTime(c.next_log_time)),
            limits,
            Some(head),
        )?;
        if records.is_empty() {
            c.drained = true;
        }
        if let Some(last) = records.last() {
            c.next_log_time = last.log_time.0 + 1;
        }
        c.buffered.extend(records);
        Ok(())
    }

    /// The synchronous body of [`MergedReader::next_batch`].
    pub fn next_batch_blocking(&mut self, limits: ReadLimits) -> Result<Vec<Record>, LogError> {
        let head = self.shared.state.read().expect("state lock").head;
        if head <= self.position {
            return Ok(Vec::new());
        }
        for c in &mut self.cursors {
            c.drained = false;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        loop {
            for i in 0..self.cursors.len() {
                if self.cursors[i].buffered.is_empty() && !self.cursors[i].drained {
                    self.refill(i, head)?;
                }
            }
            let next = self
                .cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buffered.front().map(|r| (r.log_time, i)))
                .min();
            let Some((_, i)) = next else {
                // Every partition is drained up to the head.
                self.position = head;
                return Ok(out);
            };
            let record = self.cursors[i].buffered.pop_front().expect("front exists");
            self.position = record.log_time.0;
            bytes += record_size(&record);
            out.push(record);
            if out.len() >= limits.max_records || bytes >= limits.max_bytes {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl MergedReader for EmbeddedMergedReader {
    async fn next_batch(&mut self, limits: ReadLimits) -> Result<Vec<Record>, LogError> {
        self.next_batch_blocking(limits)
    }

    fn position(&self) -> LogTime {
        LogTime(self.position)
    }
}
