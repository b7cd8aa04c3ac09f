//! Records as columns: what a reader hands a consumer that decodes many
//! records at once (a view's replay).
//!
//! A [`Record`] owns its topic name, key and value as reference-counted
//! handles, ~150 bytes in all: building one costs three atomic increments,
//! dropping it three decrements, and a reader that reorders a batch moves
//! each one. The log reader was a fifth of a view replay's CPU, much of it
//! that. [`RecordColumns`] holds the bytes of a batch in the buffers they
//! were read into (one per chunk), and each record as a 64-byte `Copy`
//! entry naming its place in them. Read that way, a 1M-record replay took
//! 0.66–0.69 s of CPU instead of 0.74–0.85 s.

use crate::{Header, LogTime, Record};
use bytes::Bytes;
use std::sync::Arc;

/// Where a key or value is in its record's buffer (`len == ABSENT`: the
/// record has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slice {
    start: u32,
    len: u32,
}

const ABSENT: u32 = u32::MAX;

impl Slice {
    const NONE: Slice = Slice {
        start: 0,
        len: ABSENT,
    };

    fn get(self, buffer: &[u8]) -> Option<&[u8]> {
        (self.len != ABSENT).then(|| &buffer[self.start as usize..][..self.len as usize])
    }
}

/// Bytes a record is counted as by a reader's limits, whatever holds it:
/// 48, plus its key, value and headers.
pub fn record_size(key: usize, value: usize, headers: &[Header]) -> usize {
    48 + key
        + value
        + headers
            .iter()
            .map(|h| h.name.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
}

/// One record of a [`RecordColumns`]: its position, and where its bytes
/// are.
#[derive(Clone, Copy, Debug)]
pub struct RecordEntry {
    pub log_time: LogTime,
    pub offset: u64,
    pub event_time: Option<i64>,
    pub partition: u32,
    /// Its topic, in [`RecordColumns::topics`].
    topic: u32,
    /// Its buffer, in [`RecordColumns::buffers`].
    buffer: u32,
    key: Slice,
    value: Slice,
    /// Its headers, in [`RecordColumns::headers`] (`ABSENT`: none, as
    /// most records have).
    headers: u32,
}

/// Records in log-time order, as entries over shared buffers.
#[derive(Clone, Debug, Default)]
pub struct RecordColumns {
    entries: Vec<RecordEntry>,
    buffers: Vec<Bytes>,
    topics: Vec<Arc<str>>,
    headers: Vec<Vec<Header>>,
}

impl RecordColumns {
    /// Empty, with room for `records` entries.
    pub fn with_capacity(records: usize) -> RecordColumns {
        RecordColumns {
            entries: Vec::with_capacity(records),
            ..RecordColumns::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[RecordEntry] {
        &self.entries
    }

    pub fn entry(&self, i: usize) -> &RecordEntry {
        &self.entries[i]
    }

    pub fn key(&self, e: &RecordEntry) -> Option<&[u8]> {
        e.key.get(&self.buffers[e.buffer as usize])
    }

    pub fn value(&self, e: &RecordEntry) -> Option<&[u8]> {
        e.value.get(&self.buffers[e.buffer as usize])
    }

    pub fn topic(&self, e: &RecordEntry) -> &Arc<str> {
        &self.topics[e.topic as usize]
    }

    pub fn headers(&self, e: &RecordEntry) -> &[Header] {
        match e.headers {
            ABSENT => &[],
            h => &self.headers[h as usize],
        }
    }

    /// Adds `buffer`, which the records pushed with its number hold their
    /// bytes in; returns that number.
    pub fn add_buffer(&mut self, buffer: Bytes) -> u32 {
        self.buffers.push(buffer);
        (self.buffers.len() - 1) as u32
    }

    /// The number of `topic` among the topics, added if new.
    pub fn topic_number(&mut self, topic: &Arc<str>) -> u32 {
        match self
            .topics
            .iter()
            .position(|t| Arc::ptr_eq(t, topic) || t == topic)
        {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.clone());
                (self.topics.len() - 1) as u32
            }
        }
    }

    /// Appends a record whose key and value are the ranges given (as
    /// `(start, len)`) of buffer `buffer`.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        topic: u32,
        partition: u32,
        offset: u64,
        log_time: LogTime,
        event_time: Option<i64>,
        buffer: u32,
        key: Option<(usize, usize)>,
        value: Option<(usize, usize)>,
        headers: Vec<Header>,
    ) {
        let slice = |r: Option<(usize, usize)>| {
            r.map_or(Slice::NONE, |(start, len)| {
                debug_assert!(start + len <= self.buffers[buffer as usize].len());
                Slice {
                    start: start as u32,
                    len: len as u32,
                }
            })
        };
        let (key, value) = (slice(key), slice(value));
        let headers = if headers.is_empty() {
            ABSENT
        } else {
            self.headers.push(headers);
            (self.headers.len() - 1) as u32
        };
        self.entries.push(RecordEntry {
            log_time,
            offset,
            event_time,
            partition,
            topic,
            buffer,
            key,
            value,
            headers,
        });
    }

    /// Appends `record` (its bytes become a buffer of their own: for
    /// readers that have records, not buffers).
    pub fn push_record(&mut self, record: &Record) {
        let topic = self.topic_number(&record.topic);
        let key_len = record.key.as_ref().map(|k| k.len());
        let mut bytes =
            Vec::with_capacity(key_len.unwrap_or(0) + record.value.as_ref().map_or(0, |v| v.len()));
        bytes.extend_from_slice(record.key.as_deref().unwrap_or_default());
        bytes.extend_from_slice(record.value.as_deref().unwrap_or_default());
        let value_len = record.value.as_ref().map(|v| v.len());
        let buffer = self.add_buffer(Bytes::from(bytes));
        self.push(
            topic,
            record.partition,
            record.offset,
            record.log_time,
            record.event_time,
            buffer,
            key_len.map(|n| (0, n)),
            value_len.map(|n| (key_len.unwrap_or(0), n)),
            record.headers.clone(),
        );
    }

    /// Puts the entries in log-time order (stable: records at one log
    /// time keep their order).
    ///
    /// Entries usually come as runs that interleave only within a
    /// transaction (one run per chunk, its chunks side by side), so each
    /// stretch that no record before or after it reaches into is sorted on
    /// its own: a sort of the whole merged every run with every other, and
    /// moved each entry once per merge.
    pub fn sort_by_log_time(&mut self) {
        if self.entries.is_sorted_by_key(|e| e.log_time) {
            return;
        }
        // The least log time from each entry on.
        let mut least = vec![LogTime(u64::MAX); self.entries.len() + 1];
        for (i, e) in self.entries.iter().enumerate().rev() {
            least[i] = e.log_time.min(least[i + 1]);
        }
        let (mut start, mut most) = (0, LogTime(0));
        for i in 0..self.entries.len() {
            most = most.max(self.entries[i].log_time);
            // A cut after `i`: nothing from `i + 1` on is below `most`.
            if i + 1 == self.entries.len() || most < least[i + 1] {
                let stretch = &mut self.entries[start..=i];
                if !stretch.is_sorted_by_key(|e| e.log_time) {
                    stretch.sort_by_key(|e| e.log_time);
                }
                start = i + 1;
            }
        }
        debug_assert_eq!(start, self.entries.len());
        debug_assert!(self.entries.is_sorted_by_key(|e| e.log_time));
    }

    /// The number of leading entries at or before `t` (entries sorted).
    pub fn count_upto(&self, t: LogTime) -> usize {
        self.entries.partition_point(|e| e.log_time <= t)
    }

    /// Moves the first `n` entries out, with what they need of the
    /// buffers (shared, not copied). What stays keeps only the buffers it
    /// still uses, once there are many it does not.
    pub fn split_off_front(&mut self, n: usize) -> RecordColumns {
        if n >= self.entries.len() {
            return std::mem::take(self);
        }
        let rest = self.entries.split_off(n);
        let mut front = RecordColumns {
            entries: std::mem::replace(&mut self.entries, rest),
            buffers: self.buffers.clone(),
            topics: self.topics.clone(),
            headers: Vec::new(),
        };
        // The front takes its own records' headers (most have none), not
        // a copy of every pending record's.
        for e in &mut front.entries {
            if e.headers != ABSENT {
                front
                    .headers
                    .push(std::mem::take(&mut self.headers[e.headers as usize]));
                e.headers = (front.headers.len() - 1) as u32;
            }
        }
        if self.buffers.len() > 16 || self.headers.len() > 16 {
            self.compact();
        }
        front
    }

    /// Appends `other`'s records after these.
    pub fn append(&mut self, mut other: RecordColumns) {
        if self.entries.is_empty() {
            *self = other;
            return;
        }
        let buffers = self.buffers.len() as u32;
        let headers = self.headers.len() as u32;
        let topics: Vec<u32> = other.topics.iter().map(|t| self.topic_number(t)).collect();
        self.buffers.append(&mut other.buffers);
        self.headers.append(&mut other.headers);
        self.entries.extend(other.entries.into_iter().map(|mut e| {
            e.buffer += buffers;
            e.topic = topics[e.topic as usize];
            if e.headers != ABSENT {
                e.headers += headers;
            }
            e
        }));
    }

    /// Drops the buffers and headers no entry uses.
    fn compact(&mut self) {
        let mut used = vec![u32::MAX; self.buffers.len()];
        let mut buffers = Vec::new();
        let mut headers = Vec::new();
        for e in &mut self.entries {
            let b = e.buffer as usize;
            if used[b] == u32::MAX {
                used[b] = buffers.len() as u32;
                buffers.push(self.buffers[b].clone());
            }
            e.buffer = used[b];
            if e.headers != ABSENT {
                headers.push(std::mem::take(&mut self.headers[e.headers as usize]));
                e.headers = (headers.len() - 1) as u32;
            }
        }
        self.buffers = buffers;
        self.headers = headers;
    }

    /// The records as [`Record`]s (their bytes shared with the buffers).
    pub fn to_records(&self) -> Vec<Record> {
        self.entries
            .iter()
            .map(|e| {
                let buffer = &self.buffers[e.buffer as usize];
                let slice = |s: Slice| {
                    (s.len != ABSENT)
                        .then(|| buffer.slice(s.start as usize..(s.start + s.len) as usize))
                };
                Record {
                    topic: self.topics[e.topic as usize].clone(),
                    partition: e.partition,
                    offset: e.offset,
                    log_time: e.log_time,
                    key: slice(e.key),
                    value: slice(e.value),
                    headers: self.headers(e).to_vec(),
                    event_time: e.event_time,
                }
            })
            .collect()
    }

    /// Bytes these records take, counted as [`Record`]s would be by a
    /// reader's limits (48 per record, plus key, value and headers).
    pub fn record_size(&self, e: &RecordEntry) -> usize {
        record_size(
            self.key(e).map_or(0, <[u8]>::len),
            self.value(e).map_or(0, <[u8]>::len),
            self.headers(e),
        )
    }

    /// Heap bytes held: the entries, and the buffers whole.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<RecordEntry>()
            + self.buffers.iter().map(Bytes::len).sum::<usize>()
    }
}

impl From<&[Record]> for RecordColumns {
    fn from(records: &[Record]) -> RecordColumns {
        let mut c = RecordColumns::default();
        for r in records {
            c.push_record(r);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &Arc<str>, t: u64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            topic: topic.clone(),
            partition: (t % 3) as u32,
            offset: t * 10,
            log_time: LogTime(t),
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: if t.is_multiple_of(4) {
                vec![Header {
                    name: format!("h{t}"),
                    value: Some(Bytes::from(t.to_string())),
                }]
            } else {
                Vec::new()
            },
            event_time: t.is_multiple_of(2).then_some(t as i64 * 7),
        }
    }

    fn records(ts: impl IntoIterator<Item = u64>) -> Vec<Record> {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        ts.into_iter()
            .map(|t| {
                let topic = if t.is_multiple_of(5) { &b } else { &a };
                let key = (t % 3 != 0).then(|| format!("k{t}"));
                let value = (t % 7 != 0).then(|| format!("{{\"v\":{t}}}"));
                record(topic, t, key.as_deref(), value.as_deref())
            })
            .collect()
    }

    #[test]
    fn records_go_through_columns_unchanged() {
        let rs = records(0..50);
        let c = RecordColumns::from(&rs[..]);
        assert_eq!(c.len(), 50);
        assert_eq!(c.to_records(), rs);
        for (e, r) in c.entries().iter().zip(&rs) {
            assert_eq!(c.value(e), r.value.as_deref());
            assert_eq!(c.key(e), r.key.as_deref());
            assert_eq!(&**c.topic(e), &*r.topic);
            let size = 48
                + r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + r.headers
                    .iter()
                    .map(|h| h.name.len() + h.value.as_ref().map_or(0, |v| v.len()))
                    .sum::<usize>();
            assert_eq!(c.record_size(e), size);
        }
    }

    /// Sorting stretch by stretch gives what one stable sort gives:
    /// transactions of interleaved runs, runs that reach across
    /// transactions, and equal log times (kept in their order).
    #[test]
    fn sorting_by_stretches_is_one_stable_sort() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        println!("seed {seed}");
        let mut x = seed;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for case in 0..2_000 {
            let mut times = Vec::new();
            let mut base = 0;
            for _ in 0..next(8) {
                // A transaction: `runs` runs dealing out its log times.
                let (len, runs) = (1 + next(30), 1 + next(4));
                let mut dealt = vec![Vec::new(); runs as usize];
                for t in base..base + len {
                    dealt[next(runs) as usize].push(t);
                }
                times.extend(dealt.into_iter().flatten());
                base += len + next(3);
            }
            // Now and then a log time from anywhere, or a repeat.
            for _ in 0..next(3) {
                let at = next(times.len() as u64 + 1) as usize;
                let t = match times.get(next(times.len() as u64 + 1) as usize) {
                    Some(&t) if next(2) == 0 => t,
                    _ => next(base + 1),
                };
                times.insert(at, t);
            }
            let mut c = RecordColumns::default();
            let topic: Arc<str> = Arc::from("a");
            for (i, &t) in times.iter().enumerate() {
                let mut r = record(&topic, t, None, None);
                r.offset = i as u64;
                c.push_record(&r);
            }
            let mut want: Vec<(u64, u64)> = c
                .entries()
                .iter()
                .map(|e| (e.log_time.0, e.offset))
                .collect();
            want.sort_by_key(|&(t, _)| t);
            c.sort_by_log_time();
            let got: Vec<(u64, u64)> = c
                .entries()
                .iter()
                .map(|e| (e.log_time.0, e.offset))
                .collect();
            assert_eq!(got, want, "case {case}, seed {seed}: {times:?}");
        }
    }

    #[test]
    fn split_sort_and_append_keep_every_record() {
        // Two runs that interleave, as two partitions' chunks do.
        let mut c = RecordColumns::from(&records((0..40).step_by(2))[..]);
        c.append(RecordColumns::from(&records((1..40).step_by(2))[..]));
        c.sort_by_log_time();
        assert_eq!(c.to_records(), records(0..40));
        assert_eq!(c.count_upto(LogTime(9)), 10);
        // Taken from the front a few at a time, past the point where what
        // stays is compacted.
        let mut got = Vec::new();
        while !c.is_empty() {
            let front = c.split_off_front(3);
            got.extend(front.to_records());
        }
        assert_eq!(got, records(0..40));
    }
}
