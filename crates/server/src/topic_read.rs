//! Reading a topic from a starting point in log-time order, every
//! partition merged, optionally only up to the head at the start: what
//! the SSE follow endpoint and `kappa consume` both do. And a record as
//! JSON, the one shape every interface shows records in.

use kappa_log::{Log, LogError, LogTime, MergedReader, ReadFrom, ReadLimits, Record};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Where reading starts.
#[derive(Clone, Copy, Debug)]
pub enum ReadStart {
    /// The first retained record.
    Beginning,
    /// Every partition at this offset.
    Offset(u64),
    /// Records with a log time after this.
    After(LogTime),
    /// Records appended from now on.
    Now,
}

pub struct TopicRead {
    log: Arc<dyn Log>,
    reader: Box<dyn MergedReader>,
    /// Records below these offsets (per partition) are skipped: a merged
    /// reader starts at a log time, an offset start maps to the earliest.
    min_offsets: HashMap<u32, u64>,
    until: Option<LogTime>,
}

impl TopicRead {
    /// Opens the reader; with `until_head` it ends at the head as it is now.
    pub async fn open(
        log: Arc<dyn Log>,
        topic: &str,
        start: ReadStart,
        until_head: bool,
    ) -> Result<TopicRead, LogError> {
        let description = log.describe_topic(topic).await?;
        let head = log.head().await?.log_time();
        let mut min_offsets = HashMap::new();
        let after = match start {
            ReadStart::Beginning => LogTime::ZERO,
            ReadStart::After(t) => t,
            ReadStart::Now => head,
            ReadStart::Offset(offset) => {
                let mut earliest: Option<u64> = None;
                for p in &description.partitions {
                    if offset < p.start_offset {
                        return Err(LogError::OffsetOutOfRange {
                            topic: topic.to_string(),
                            partition: p.partition,
                            offset,
                            start_offset: p.start_offset,
                            end_offset: p.end_offset,
                        });
                    }
                    min_offsets.insert(p.partition, offset);
                    if offset >= p.end_offset {
                        continue;
                    }
                    let one = ReadLimits {
                        max_records: 1,
                        max_bytes: 1,
                    };
                    let first = log
                        .read(topic, p.partition, ReadFrom::Offset(offset), one)
                        .await?;
                    if let Some(r) = first.first() {
                        earliest = Some(earliest.map_or(r.log_time.0, |e| e.min(r.log_time.0)));
                    }
                }
                earliest.map_or(head, |e| LogTime(e - 1))
            }
        };
        let reader = log.merged_reader(&[topic], after).await?;
        Ok(TopicRead {
            log,
            reader,
            min_offsets,
            until: until_head.then_some(head),
        })
    }

    /// The next records; empty when caught up for now. `None` once the
    /// reader has passed the end it was opened with.
    pub async fn next(&mut self, limits: ReadLimits) -> Result<Option<Vec<Record>>, LogError> {
        if self.until.is_some_and(|u| self.reader.position() >= u) {
            return Ok(None);
        }
        let mut batch = self.reader.next_batch(limits).await?;
        if let Some(until) = self.until {
            batch.retain(|r| r.log_time <= until);
            if batch.is_empty() && self.reader.position() >= until {
                return Ok(None);
            }
        }
        if !self.min_offsets.is_empty() {
            let min = &self.min_offsets;
            batch.retain(|r| min.get(&r.partition).is_none_or(|m| r.offset >= *m));
        }
        Ok(Some(batch))
    }

    /// The log time of the last record read (or the start).
    pub fn position(&self) -> LogTime {
        self.reader.position()
    }

    /// Waits (up to `timeout`) for a commit past what was read.
    /// (`&mut`: the reader is not `Sync`, and the wait must be `Send`.)
    pub async fn wait(&mut self, timeout: std::time::Duration) -> Result<(), LogError> {
        let after = self.reader.position();
        self.log.wait_for_commit(after, timeout).await.map(|_| ())
    }
}

/// A record as JSON. A value that is JSON is embedded as JSON; anything
/// else is a string (lossy UTF-8).
pub fn record_json(r: &Record) -> Value {
    let lossy = |b: &[u8]| Value::String(String::from_utf8_lossy(b).into_owned());
    let value = r.value.as_ref().map_or(Value::Null, |v| {
        serde_json::from_slice::<Value>(v).unwrap_or_else(|_| lossy(v))
    });
    let mut obj = Map::new();
    obj.insert("topic".into(), r.topic.to_string().into());
    obj.insert("partition".into(), r.partition.into());
    obj.insert("offset".into(), r.offset.into());
    obj.insert("log_time".into(), r.log_time.to_rfc3339().into());
    obj.insert(
        "key".into(),
        r.key.as_ref().map_or(Value::Null, |k| lossy(k)),
    );
    obj.insert("value".into(), value);
    if let Some(t) = r.event_time {
        obj.insert(
            "event_time".into(),
            LogTime(t.max(0) as u64).to_rfc3339().into(),
        );
    }
    if !r.headers.is_empty() {
        let headers: Map<String, Value> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.value.as_ref().map_or(Value::Null, |v| lossy(v)),
                )
            })
            .collect();
        obj.insert("headers".into(), headers.into());
    }
    Value::Object(obj)
}
