//! The merged reader: every partition of several topics in log-time order.
//!
//! The journal already holds chunks in commit order, so the reader plans the
//! chunks of its partitions in file order, fetches neighbours with one read,
//! and only has to reorder records within a transaction (a transaction's
//! chunks, one per partition, interleave their log times).
//!
//! Each planning step fixes the committed head `H` and a *complete* bound:
//! for every partition, the smallest log time it may still hold that has not
//! been decoded yet. Every decoded record up to the smallest of those bounds
//! (and `H`) can be returned: no partition can later produce one that should
//! have come earlier. Decoded records beyond it wait in `pending`.

use crate::buffers::ReadBuffers;
use crate::catalog::TopicMeta;
use crate::log::Shared;
use crate::read::{coalesce, decode_chunk_into, read_span_kept, span_slice};
use crate::segment::PartitionId;
use crate::state::{ChunkRead, Seek};
use async_trait::async_trait;
use kappa_log::{LogError, LogTime, MergedReader, ReadLimits, Record, RecordColumns};
use std::sync::Arc;

struct Cursor {
    topic: Arc<TopicMeta>,
    pid: PartitionId,
    /// Next log time to plan from: everything below it has been decoded.
    next_log_time: u64,
}

pub struct EmbeddedMergedReader {
    shared: Arc<Shared>,
    cursors: Vec<Cursor>,
    /// Decoded records not returned yet, sorted by log time.
    pending: RecordColumns,
    /// Approximate bytes of `pending` (see [`RecordColumns::record_size`]).
    pending_bytes: usize,
    /// Every record up to this log time is in `pending` or was returned.
    complete_upto: u64,
    position: u64,
    /// Read buffers reused from batch to batch.
    buffers: Arc<ReadBuffers>,
}

/// One planned chunk and the cursor it belongs to.
struct Planned {
    read: ChunkRead,
    cursor: usize,
    /// Records below this log time were returned before.
    min_log_time: u64,
    /// Records below the partition's start offset were truncated (a
    /// start raised mid-chunk; the cleaner has not rewritten it yet).
    min_offset: u64,
}

impl EmbeddedMergedReader {
    pub fn new(shared: Arc<Shared>, topics: Vec<Arc<TopicMeta>>, after: LogTime) -> Self {
        let cursors = topics
            .iter()
            .flat_map(|t| {
                (0..t.config.partitions).map(move |partition| Cursor {
                    topic: t.clone(),
                    pid: PartitionId {
                        topic_id: t.id,
                        partition,
                    },
                    next_log_time: after.0 + 1,
                })
            })
            .collect();
        EmbeddedMergedReader {
            shared,
            cursors,
            pending: RecordColumns::default(),
            pending_bytes: 0,
            complete_upto: after.0,
            position: after.0,
            buffers: ReadBuffers::new(),
        }
    }

    /// The synchronous body of [`MergedReader::next_batch`].
    pub fn next_batch_blocking(&mut self, limits: ReadLimits) -> Result<Vec<Record>, LogError> {
        Ok(self.next_columns_blocking(limits)?.to_records())
    }

    /// The synchronous body of [`MergedReader::next_columns`].
    pub fn next_columns_blocking(&mut self, limits: ReadLimits) -> Result<RecordColumns, LogError> {
        self.check_topics()?;
        let mut head = self.shared.state.read().expect("state lock").head;
        loop {
            let ready = self.ready();
            if self.complete_upto >= head {
                break;
            }
            if ready > 0 && (ready >= limits.max_records || self.pending_bytes >= limits.max_bytes)
            {
                break;
            }
            head = self.plan_and_read(limits)?;
        }
        let ready = self.ready();
        let (mut n, mut bytes) = (0, 0);
        while n < ready && n < limits.max_records.max(1) && (n == 0 || bytes < limits.max_bytes) {
            bytes += self.pending.record_size(self.pending.entry(n));
            n += 1;
        }
        // Usually every pending record goes: handed over whole.
        let out = self.pending.split_off_front(n);
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        self.position = if n == ready {
            self.complete_upto
        } else {
            out.entries().last().map_or(self.position, |e| e.log_time.0)
        };
        Ok(out)
    }

    /// How many pending records are complete (may be returned).
    fn ready(&self) -> usize {
        self.pending.count_upto(LogTime(self.complete_upto))
    }

    fn check_topics(&self) -> Result<(), LogError> {
        let catalog = self.shared.catalog.read().expect("catalog lock");
        match self
            .cursors
            .iter()
            .find(|c| !catalog.by_id.contains_key(&c.topic.id))
        {
            Some(c) => Err(LogError::TopicNotFound {
                topic: c.topic.name.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Plans about `limits` worth of chunks in file order, decodes them into
    /// `pending` and raises the complete bound. Returns the head it saw.
    /// Takes at least one chunk unless everything up to the head is decoded.
    fn plan_and_read(&mut self, limits: ReadLimits) -> Result<u64, LogError> {
        let (head, planned, next, cut) = {
            let state = self.shared.state.read().expect("state lock");
            let mut all = Vec::new();
            let mut truncated = vec![false; self.cursors.len()];
            for (i, c) in self.cursors.iter().enumerate() {
                let (chunks, more) = state.locate(
                    c.pid,
                    Seek::LogTime(c.next_log_time),
                    limits.max_records,
                    limits.max_bytes,
                );
                truncated[i] = more;
                let min_offset = state.partitions.get(&c.pid).map_or(0, |p| p.start_offset);
                all.extend(chunks.into_iter().map(|read| Planned {
                    read,
                    cursor: i,
                    min_log_time: c.next_log_time,
                    min_offset,
                }));
            }
            all.sort_by_key(|p| (p.read.segment, p.read.loc.pos));
            let (mut records, mut bytes, mut take) = (0usize, 0usize, 0usize);
            while take < all.len()
                && (take == 0 || (records < limits.max_records && bytes < limits.max_bytes))
            {
                records += all[take].read.loc.record_count as usize;
                bytes += all[take].read.loc.len as usize;
                take += 1;
            }
            // The complete bound: per cursor, the first log time not decoded.
            let mut bound = vec![u64::MAX; self.cursors.len()];
            for p in all[take..].iter().rev() {
                bound[p.cursor] = p.read.loc.base_log_time - 1;
            }
            let mut cut = state.head;
            let mut next = Vec::with_capacity(self.cursors.len());
            for (i, c) in self.cursors.iter().enumerate() {
                let n = all[..take]
                    .iter()
                    .rev()
                    .find(|p| p.cursor == i)
                    .map_or(c.next_log_time, |last| last.read.loc.last_log_time + 1);
                if truncated[i] && bound[i] == u64::MAX {
                    bound[i] = n - 1;
                }
                cut = cut.min(bound[i]);
                next.push(n);
            }
            all.truncate(take);
            (state.head, all, next, cut)
        };
        let reads: Vec<ChunkRead> = planned.iter().map(|p| p.read.clone()).collect();
        let records = planned
            .iter()
            .map(|p| p.read.loc.record_count as usize)
            .sum();
        let mut fresh = RecordColumns::with_capacity(records);
        let mut fresh_bytes = 0;
        let mut at = 0;
        for span in coalesce(&reads) {
            let buf = read_span_kept(span, &self.buffers)?;
            for read in span {
                let p = &planned[at];
                at += 1;
                let topic = fresh.topic_number(&self.cursors[p.cursor].topic.name);
                fresh_bytes += decode_chunk_into(
                    read,
                    span_slice(&buf, span, read),
                    topic,
                    &mut fresh,
                    |offset, log_time| log_time >= p.min_log_time && offset >= p.min_offset,
                )?;
            }
        }
        // Only now, with everything decoded: a failed read leaves the reader
        // where it was. The records come as sorted runs, one per chunk
        // (a transaction's chunks interleave); a stable sort merges them.
        self.pending.append(fresh);
        self.pending_bytes += fresh_bytes;
        self.pending.sort_by_log_time();
        for (c, n) in self.cursors.iter_mut().zip(next) {
            c.next_log_time = n;
        }
        self.complete_upto = self.complete_upto.max(cut);
        Ok(head)
    }
}

#[async_trait]
impl MergedReader for EmbeddedMergedReader {
    async fn next_batch(&mut self, limits: ReadLimits) -> Result<Vec<Record>, LogError> {
        self.next_batch_blocking(limits)
    }

    async fn next_columns(&mut self, limits: ReadLimits) -> Result<RecordColumns, LogError> {
        self.next_columns_blocking(limits)
    }

    fn position(&self) -> LogTime {
        LogTime(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_sorted_runs_come_out_in_log_time_order() {
        let record = |t: u64| Record {
            topic: Arc::from("t"),
            partition: (t % 3) as u32,
            offset: t,
            log_time: LogTime(t),
            key: None,
            value: Some(bytes::Bytes::from(t.to_string())),
            headers: Vec::new(),
            event_time: None,
        };
        // Runs as chunks of three partitions give them, one after another.
        let times: Vec<u64> = [(0..40).step_by(3), (1..40).step_by(3), (2..40).step_by(3)]
            .into_iter()
            .flatten()
            .collect();
        let by_log_time = |records: &[Record]| {
            let mut c = RecordColumns::from(records);
            c.sort_by_log_time();
            c.to_records()
        };
        let got = by_log_time(&times.iter().map(|&t| record(t)).collect::<Vec<_>>());
        let want: Vec<Record> = (0..40).map(record).collect();
        assert_eq!(got, want);
        assert_eq!(by_log_time(&want), want, "sorted stays");
    }
}
