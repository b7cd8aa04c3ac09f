//! Reading one partition: find chunks through the index, read them
//! (coalescing neighbours into one read), verify checksums, decode.

use crate::buffers::ReadBuffers;
use crate::catalog::TopicMeta;
use crate::codec::chunk;
use crate::log::Shared;
use crate::segment::PartitionId;
use crate::state::{ChunkRead, Seek};
use bytes::Bytes;
use kappa_log::{LogError, LogTime, ReadFrom, ReadLimits, Record, RecordColumns};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Neighbouring chunks closer than this are fetched with one read.
const COALESCE_GAP_BYTES: u64 = 64 << 10;

/// Approximate in-memory size of a record, for read limits.
pub fn record_size(r: &Record) -> usize {
    kappa_log::record_size(
        r.key.as_ref().map_or(0, |k| k.len()),
        r.value.as_ref().map_or(0, |v| v.len()),
        &r.headers,
    )
}

/// Reads `topic`/`partition` from `from`, at most `limits` (but at least one
/// record if any is there), never past log time `upto` when given.
pub fn read_partition(
    shared: &Shared,
    topic: &Arc<TopicMeta>,
    partition: u32,
    from: ReadFrom,
    limits: ReadLimits,
    upto: Option<u64>,
) -> Result<Vec<Record>, LogError> {
    if partition >= topic.config.partitions {
        return Err(LogError::PartitionOutOfRange {
            topic: topic.name.to_string(),
            partition,
            partitions: topic.config.partitions,
        });
    }
    let pid = PartitionId {
        topic_id: topic.id,
        partition,
    };
    let (plans, min_offset, min_log_time) = {
        let state = shared.state.read().expect("state lock");
        let (start, next) = state
            .partitions
            .get(&pid)
            .map(|p| (p.start_offset, p.next_offset))
            .unwrap_or_else(|| {
                let floor = shared.catalog.read().expect("catalog lock").floor(pid);
                (floor.start_offset, floor.next_offset)
            });
        let (seek, min_offset, min_log_time) = match from {
            ReadFrom::Offset(o) if o < start || o > next => {
                return Err(LogError::OffsetOutOfRange {
                    topic: topic.name.to_string(),
                    partition,
                    offset: o,
                    start_offset: start,
                    end_offset: next,
                });
            }
            ReadFrom::Offset(o) => (Seek::Offset(o), o, 0),
            ReadFrom::Start => (Seek::Offset(start), start, 0),
            ReadFrom::LogTime(LogTime(t)) => (Seek::LogTime(t), start, t),
        };
        let (plans, _) = state.locate(pid, seek, limits.max_records, limits.max_bytes);
        (plans, min_offset, min_log_time)
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let upto = upto.unwrap_or(u64::MAX);
    for span in coalesce(&plans) {
        let buf = read_span(span)?;
        for plan in span {
            let flow = decode_chunk(plan, span_slice(&buf, span, plan), topic, |record| {
                if record.offset < min_offset || record.log_time.0 < min_log_time {
                    return ControlFlow::Continue(());
                }
                if record.log_time.0 > upto {
                    return ControlFlow::Break(());
                }
                bytes += record_size(&record);
                out.push(record);
                if out.len() >= limits.max_records || bytes >= limits.max_bytes {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if flow.is_break() {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Verifies the chunk `plan` points at: its checksum, and that it is the
/// chunk the index says.
fn verified(plan: &ChunkRead, bytes: &Bytes) -> Result<chunk::ChunkHeader, LogError> {
    let header = chunk::verify(bytes).map_err(|e| corrupt(plan, e.0))?;
    if header.topic_id != plan.pid.topic_id
        || header.partition != plan.pid.partition
        || header.base_offset != plan.loc.base_offset
    {
        return Err(corrupt(
            plan,
            format!(
                "chunk belongs to topic id {} partition {} offset {}, but the index says topic id {} partition {} offset {}",
                header.topic_id,
                header.partition,
                header.base_offset,
                plan.pid.topic_id,
                plan.pid.partition,
                plan.loc.base_offset
            ),
        ));
    }
    Ok(header)
}

fn corrupt(plan: &ChunkRead, detail: String) -> LogError {
    LogError::Corruption {
        file: plan.path.clone(),
        offset: plan.loc.pos,
        detail,
    }
}

/// Verifies the chunk `plan` points at and hands its records to `f`, which
/// may stop early.
pub fn decode_chunk(
    plan: &ChunkRead,
    bytes: Bytes,
    topic: &Arc<TopicMeta>,
    mut f: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, LogError> {
    let header = verified(plan, &bytes)?;
    let mut flow = ControlFlow::Continue(());
    chunk::decode_verified(&bytes, &header, |r| {
        if flow.is_break() {
            return;
        }
        let r = r.in_buffer(&bytes);
        flow = f(Record {
            topic: topic.name.clone(),
            partition: header.partition,
            offset: header.base_offset + r.offset_delta as u64,
            log_time: LogTime(header.base_log_time + r.log_time_delta),
            key: r.key,
            value: r.value,
            headers: r.headers,
            event_time: r.event_time,
        });
    })
    .map_err(|e| corrupt(plan, e.0))?;
    Ok(flow)
}

/// Verifies the chunk `plan` points at and appends to `out` (as records of
/// its topic number `topic`) those of its records that `keep` takes (by
/// offset and log time); returns their [`RecordColumns::record_size`]s'
/// sum. The chunk's bytes become one of `out`'s buffers, shared.
pub fn decode_chunk_into(
    plan: &ChunkRead,
    bytes: Bytes,
    topic: u32,
    out: &mut RecordColumns,
    keep: impl Fn(u64, u64) -> bool,
) -> Result<usize, LogError> {
    let header = verified(plan, &bytes)?;
    let mut buffer = None;
    let mut size = 0;
    chunk::decode_verified(&bytes, &header, |r| {
        let offset = header.base_offset + r.offset_delta as u64;
        let log_time = header.base_log_time + r.log_time_delta;
        if !keep(offset, log_time) {
            return;
        }
        let b = *buffer.get_or_insert_with(|| out.add_buffer(bytes.clone()));
        let this = kappa_log::record_size(
            r.key.map_or(0, |(_, len)| len),
            r.value.map_or(0, |(_, len)| len),
            &r.headers,
        );
        out.push(
            topic,
            header.partition,
            offset,
            LogTime(log_time),
            r.event_time,
            b,
            r.key,
            r.value,
            r.headers,
        );
        debug_assert_eq!(out.entries().last().map(|e| out.record_size(e)), Some(this));
        size += this;
    })
    .map_err(|e| corrupt(plan, e.0))?;
    Ok(size)
}

/// Groups chunk reads that are in the same file and close together.
pub fn coalesce(plans: &[ChunkRead]) -> Vec<&[ChunkRead]> {
    let mut spans = Vec::new();
    let mut start = 0;
    for i in 1..=plans.len() {
        let split = i == plans.len() || {
            let (prev, next) = (&plans[i - 1], &plans[i]);
            !Arc::ptr_eq(&prev.file, &next.file)
                || next.loc.pos < prev.loc.pos
                || next.loc.pos - (prev.loc.pos + prev.loc.len as u64) > COALESCE_GAP_BYTES
        };
        if split {
            if start < i {
                spans.push(&plans[start..i]);
            }
            start = i;
        }
    }
    spans
}

/// The bytes of `plan` within the buffer `read_span` returned for `span`.
pub fn span_slice(buf: &Bytes, span: &[ChunkRead], plan: &ChunkRead) -> Bytes {
    let at = (plan.loc.pos - span[0].loc.pos) as usize;
    buf.slice(at..at + plan.loc.len as usize)
}

pub fn read_span(span: &[ChunkRead]) -> Result<Bytes, LogError> {
    let mut buf = vec![0u8; span_len(span)];
    read_span_into(span, &mut buf)?;
    Ok(Bytes::from(buf))
}

/// [`read_span`] into a buffer of `buffers`, given back when the last
/// record read from it is dropped.
pub fn read_span_kept(span: &[ChunkRead], buffers: &Arc<ReadBuffers>) -> Result<Bytes, LogError> {
    buffers.fill(span_len(span), |buf| read_span_into(span, buf))
}

fn span_len(span: &[ChunkRead]) -> usize {
    let first = &span[0];
    let last = &span[span.len() - 1];
    (last.loc.pos + last.loc.len as u64 - first.loc.pos) as usize
}

fn read_span_into(span: &[ChunkRead], buf: &mut [u8]) -> Result<(), LogError> {
    let first = &span[0];
    first
        .file
        .read_exact_at(buf, first.loc.pos)
        .map_err(|e| LogError::io("read", &first.path, e))
}
