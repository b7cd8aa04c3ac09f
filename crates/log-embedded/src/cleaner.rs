//! Retention and compaction, in the background, never blocking appends.
//!
//! A pass has two steps:
//! 1. **Logical**: raise each partition's start offset as retention allows
//!    (by age or size), and persist it in the catalog before anything is
//!    removed, so a reader can never see a record retention already dropped.
//! 2. **Physical**: every sealed segment that holds dead records (below a
//!    start offset, superseded on a compacted topic, expired tombstones, or of
//!    a deleted topic) is deleted when nothing in it is live, or rewritten
//!    keeping only live records: write `<id>.kseg.tmp`, fsync, rename over the
//!    segment, fsync the directory, then write its new index. Offsets and log
//!    times of kept records never change. The active segment is never touched.
//!
//! Readers that located chunks in a segment before it was replaced keep
//! reading the old file through their open handle.

use crate::catalog::TopicMeta;
use crate::codec::chunk::{self, ChunkBuilder};
use crate::codec::frame::{FRAME_HEADER_LEN, FrameHeader};
use crate::fs;
use crate::log::Shared;
use crate::recovery::{scan_segment, write_index};
use crate::segment::index::SegmentIndex;
use crate::segment::{self, ChunkLoc, PartitionId, Segment};
use crate::writer::now_micros;
use bytes::Bytes;
use kappa_log::{Cleanup, LogError, ReadFrom, ReadLimits, Retention};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanerReport {
    pub start_offsets_raised: usize,
    pub segments_deleted: usize,
    pub segments_rewritten: usize,
    pub bytes_reclaimed: u64,
}

pub struct CleanerHandle {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl CleanerHandle {
    pub fn start(shared: Arc<Shared>, every: Duration) -> CleanerHandle {
        let (stop, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kappa-log-cleaner".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = run_once(&shared) {
                                tracing::error!(error = %e, "log cleaner pass failed; will retry");
                            }
                        }
                        _ => return,
                    }
                }
            })
            .expect("spawn cleaner thread");
        CleanerHandle { stop, thread }
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// On a compacted partition, the live offsets: the latest record per key,
/// and tombstones not yet expired.
enum Liveness {
    Offsets(HashSet<u64>),
}

pub fn run_once(shared: &Arc<Shared>) -> Result<CleanerReport, LogError> {
    let _pass = shared.cleaner_lock.lock().expect("cleaner lock");
    let mut report = CleanerReport {
        start_offsets_raised: apply_retention(shared)?,
        ..CleanerReport::default()
    };
    // Snapshot the sealed segments first: every chunk in them belongs to a
    // topic in the catalog read next, and every record in them is covered
    // by the liveness computed after (which may see newer records too).
    let (sealed, starts): (Vec<(u64, u64)>, HashMap<PartitionId, u64>) = {
        let state = shared.state.read().expect("state lock");
        let sealed = state
            .segments
            .values()
            .filter(|s| s.sealed)
            .map(|s| (s.id, s.len))
            .collect();
        let starts = state
            .partitions
            .iter()
            .map(|(pid, p)| (*pid, p.start_offset))
            .collect();
        (sealed, starts)
    };
    let topics: HashMap<u32, Arc<TopicMeta>> =
        shared.catalog.read().expect("catalog lock").by_id.clone();
    let liveness = compaction_liveness(shared, &topics)?;
    let is_live = |pid: &PartitionId, offset: u64| -> bool {
        if !topics.contains_key(&pid.topic_id) {
            return false;
        }
        if offset < starts.get(pid).copied().unwrap_or(0) {
            return false;
        }
        match liveness.get(pid) {
            Some(Liveness::Offsets(live)) => live.contains(&offset),
            None => true,
        }
    };
    let mut floors_persisted = false;
    for (id, _len) in sealed {
        let (dead, total) = dead_bytes(shared, id, &is_live, &liveness);
        if dead == 0 {
            continue;
        }
        if !floors_persisted {
            // Removing records may remove the ones that tell a partition's
            // next offset or the log's last log time: record both first.
            let all: Vec<(PartitionId, u64, u64)> = {
                let state = shared.state.read().expect("state lock");
                state
                    .partitions
                    .iter()
                    .map(|(pid, p)| (*pid, p.start_offset, p.next_offset))
                    .collect()
            };
            persist_floors(shared, &all)?;
            floors_persisted = true;
        }
        if dead == total {
            delete_segment(shared, id)?;
            report.segments_deleted += 1;
            report.bytes_reclaimed += total;
        } else {
            let reclaimed = rewrite_segment(shared, id, &is_live)?;
            report.segments_rewritten += 1;
            report.bytes_reclaimed += reclaimed;
        }
    }
    Ok(report)
}

/// Raises start offsets; returns how many partitions changed.
fn apply_retention(shared: &Shared) -> Result<usize, LogError> {
    let now = now_micros();
    let mut raised: Vec<(PartitionId, u64, u64)> = Vec::new();
    {
        let catalog = shared.catalog.read().expect("catalog lock");
        let state = shared.state.read().expect("state lock");
        for (pid, p) in &state.partitions {
            let Some(topic) = catalog.by_id.get(&pid.topic_id) else {
                continue;
            };
            let chunks = p
                .segment_ids
                .iter()
                .flat_map(|id| state.segments[id].chunks[pid].iter());
            let new_start = match topic.config.retention {
                Retention::Forever => continue,
                Retention::AgeMs(ms) => {
                    let cutoff = now.saturating_sub(ms * 1000);
                    chunks
                        .filter(|c| c.last_log_time >= cutoff)
                        .map(|c| c.base_offset)
                        .next()
                        .unwrap_or(p.next_offset)
                }
                Retention::BytesPerPartition(max) => {
                    let all: Vec<&ChunkLoc> = chunks.collect();
                    let mut kept = 0u64;
                    let mut start = p.next_offset;
                    for c in all.iter().rev() {
                        if kept + c.len as u64 > max {
                            break;
                        }
                        kept += c.len as u64;
                        start = c.base_offset;
                    }
                    start
                }
            };
            if new_start > p.start_offset {
                raised.push((*pid, new_start, p.next_offset));
            }
        }
    }
    if raised.is_empty() {
        return Ok(0);
    }
    persist_floors(shared, &raised)?;
    let mut state = shared.state.write().expect("state lock");
    for (pid, start, _) in &raised {
        if let Some(p) = state.partitions.get_mut(pid) {
            p.start_offset = p.start_offset.max(*start);
        }
    }
    Ok(raised.len())
}

/// Records start offsets and next-offset floors (and the log-time floor) in
/// the catalog, durably, before any record goes.
pub(crate) fn persist_floors(
    shared: &Shared,
    changes: &[(PartitionId, u64, u64)],
) -> Result<(), LogError> {
    let head = shared.state.read().expect("state lock").head;
    let mut catalog = shared.catalog.write().expect("catalog lock");
    for (pid, start, next) in changes {
        if !catalog.by_id.contains_key(&pid.topic_id) {
            continue;
        }
        let floor = catalog.floors.entry(*pid).or_default();
        floor.start_offset = floor.start_offset.max(*start);
        floor.next_offset = floor.next_offset.max(*next);
    }
    catalog.log_time_floor = catalog.log_time_floor.max(head);
    catalog.persist(shared.fs.as_ref(), &shared.dir)
}

/// For compacted partitions: which offsets are live (the latest record per
/// key, unless it is a tombstone older than the topic's tombstone retention
/// and sitting in a sealed segment).
fn compaction_liveness(
    shared: &Arc<Shared>,
    topics: &HashMap<u32, Arc<TopicMeta>>,
) -> Result<HashMap<PartitionId, Liveness>, LogError> {
    let now = now_micros();
    let mut out = HashMap::new();
    for topic in topics.values() {
        let Cleanup::Compact {
            tombstone_retention_ms,
        } = topic.config.cleanup
        else {
            continue;
        };
        let tombstone_cutoff = now.saturating_sub(tombstone_retention_ms * 1000);
        let active_start = {
            let state = shared.state.read().expect("state lock");
            state
                .segments
                .values()
                .next_back()
                .map_or(u64::MAX, |s| s.id)
        };
        for partition in 0..topic.config.partitions {
            let mut latest: HashMap<Bytes, (u64, bool, u64)> = HashMap::new();
            let mut from = ReadFrom::Start;
            loop {
                let records = match crate::read::read_partition(
                    shared,
                    topic,
                    partition,
                    from,
                    ReadLimits::default(),
                    None,
                ) {
                    Ok(r) => r,
                    Err(LogError::OffsetOutOfRange { .. }) => break,
                    Err(e) => return Err(e),
                };
                let Some(last) = records.last() else { break };
                from = ReadFrom::Offset(last.offset + 1);
                for r in records {
                    let key = r.key.expect("compacted topics only hold keyed records");
                    latest.insert(key, (r.offset, r.value.is_none(), r.log_time.0));
                }
            }
            let live = latest
                .into_values()
                .filter(|(_, tombstone, log_time)| {
                    !*tombstone || *log_time >= tombstone_cutoff || *log_time >= active_start
                })
                .map(|(offset, _, _)| offset)
                .collect();
            out.insert(
                PartitionId {
                    topic_id: topic.id,
                    partition,
                },
                Liveness::Offsets(live),
            );
        }
    }
    Ok(out)
}

/// (dead bytes, total bytes) of a sealed segment, at chunk granularity for
/// plain topics and record granularity (approximated by chunk share) for
/// compacted ones.
fn dead_bytes(
    shared: &Shared,
    id: u64,
    is_live: &impl Fn(&PartitionId, u64) -> bool,
    liveness: &HashMap<PartitionId, Liveness>,
) -> (u64, u64) {
    let state = shared.state.read().expect("state lock");
    let Some(segment) = state.segments.get(&id) else {
        return (0, 0);
    };
    let mut dead = 0u64;
    for (pid, locs) in &segment.chunks {
        for loc in locs {
            let compacted = matches!(liveness.get(pid), Some(Liveness::Offsets(_)));
            let live_records = if compacted {
                (loc.base_offset..=loc.last_offset)
                    .filter(|o| is_live(pid, *o))
                    .count()
            } else if is_live(pid, loc.last_offset) {
                // Plain topics: the chunk lives if its last record does; the
                // records below the start offset in it are filtered on read.
                1
            } else {
                0
            };
            if live_records == 0 {
                dead += loc.len as u64;
            } else if compacted && (live_records as u32) < loc.record_count {
                dead += loc.len as u64 * (loc.record_count as u64 - live_records as u64)
                    / loc.record_count as u64;
            }
        }
    }
    let total = segment.len;
    // A segment whose chunks are all dead is wholly dead (frame headers too).
    let all_dead = segment.chunks.iter().all(|(pid, locs)| {
        locs.iter()
            .all(|l| (l.base_offset..=l.last_offset).all(|o| !is_live(pid, o)))
    });
    if all_dead {
        (total, total)
    } else {
        (dead, total)
    }
}

fn delete_segment(shared: &Shared, id: u64) -> Result<(), LogError> {
    let log_dir = shared.log_dir();
    {
        let mut state = shared.state.write().expect("state lock");
        state.segments.remove(&id);
        let catalog = shared.catalog.read().expect("catalog lock");
        rebuild(&mut state, &catalog);
    }
    let fs = shared.fs.as_ref();
    let seg = segment::segment_path(&log_dir, id);
    let idx = segment::index_path(&log_dir, id);
    fs.remove_file(&seg)
        .map_err(|e| LogError::io("remove", &seg, e))?;
    if fs.exists(&idx) {
        fs.remove_file(&idx)
            .map_err(|e| LogError::io("remove", &idx, e))?;
    }
    fs.sync_dir(&log_dir)
        .map_err(|e| LogError::io("fsync", &log_dir, e))
}

fn rebuild(state: &mut crate::state::LogState, catalog: &crate::catalog::Catalog) {
    let starts: HashMap<PartitionId, u64> = state
        .partitions
        .iter()
        .map(|(pid, p)| (*pid, p.start_offset))
        .collect();
    let nexts: HashMap<PartitionId, u64> = state
        .partitions
        .iter()
        .map(|(pid, p)| (*pid, p.next_offset))
        .collect();
    state.rebuild_partitions(|pid| {
        let floor = catalog.floor(pid);
        (
            floor
                .start_offset
                .max(starts.get(&pid).copied().unwrap_or(0)),
            floor.next_offset.max(nexts.get(&pid).copied().unwrap_or(0)),
        )
    });
}

/// Rewrites a sealed segment keeping only live records; returns bytes saved.
fn rewrite_segment(
    shared: &Shared,
    id: u64,
    is_live: &impl Fn(&PartitionId, u64) -> bool,
) -> Result<u64, LogError> {
    let fs = shared.fs.as_ref();
    let log_dir = shared.log_dir();
    let path = segment::segment_path(&log_dir, id);
    let bytes = fs::read_file(fs, &path).map_err(|e| LogError::io("read", &path, e))?;
    let old_len = bytes.len() as u64;
    let scan = scan_segment(fs, &path, 0, false)?;
    // Group the scanned chunks back into frames by walking frame headers.
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut entries: Vec<(PartitionId, ChunkLoc)> = Vec::new();
    let mut chunks = scan.chunks.iter().peekable();
    let mut pos = 0usize;
    let mut last_log_time = 0;
    while pos < bytes.len() {
        let header = FrameHeader::parse(&bytes[pos..]).map_err(|e| LogError::Corruption {
            file: path.clone(),
            offset: pos as u64,
            detail: e.0,
        })?;
        let frame_end = pos + header.frame_len as usize;
        let mut frame = vec![0u8; FRAME_HEADER_LEN];
        let mut frame_entries = Vec::new();
        while let Some((pid, loc)) = chunks.peek() {
            if loc.pos as usize >= frame_end {
                break;
            }
            let (pid, loc) = (*pid, *loc);
            chunks.next();
            let raw = Bytes::copy_from_slice(
                &bytes[loc.pos as usize..(loc.pos + loc.len as u64) as usize],
            );
            let (ch, records) = chunk::decode_records(&raw).map_err(|e| LogError::Corruption {
                file: path.clone(),
                offset: loc.pos,
                detail: e.0,
            })?;
            let mut builder = ChunkBuilder::default();
            for r in &records {
                if is_live(&pid, ch.base_offset + r.offset_delta as u64) {
                    builder.push_stored(r);
                }
            }
            if builder.is_empty() {
                continue;
            }
            let record_count = builder.record_count();
            let kept = builder.finish(
                pid.topic_id,
                pid.partition,
                ch.base_offset,
                ch.base_log_time,
            );
            let kept_header = chunk::verify(&kept).expect("a chunk we just built verifies");
            frame_entries.push((
                pid,
                ChunkLoc {
                    pos: (out.len() + frame.len()) as u64,
                    len: kept.len() as u32,
                    record_count,
                    base_offset: ch.base_offset,
                    last_offset: kept_header.last_offset(),
                    base_log_time: ch.base_log_time,
                    last_log_time: kept_header.last_log_time(),
                },
            ));
            frame.extend_from_slice(&kept);
        }
        if !frame_entries.is_empty() {
            let h = FrameHeader {
                frame_len: frame.len() as u32,
                first_log_time: header.first_log_time,
                last_log_time: header.last_log_time,
                chunk_count: frame_entries.len() as u32,
            };
            frame[..FRAME_HEADER_LEN].copy_from_slice(&h.encode());
            out.extend_from_slice(&frame);
            entries.extend(frame_entries);
            last_log_time = header.last_log_time;
        }
        pos = frame_end;
    }
    let tmp = path.with_extension("kseg.tmp");
    if fs.exists(&tmp) {
        fs.remove_file(&tmp)
            .map_err(|e| LogError::io("remove", &tmp, e))?;
    }
    let file = fs
        .open(&tmp, true)
        .map_err(|e| LogError::io("create", &tmp, e))?;
    file.write_all_at(&out, 0)
        .map_err(|e| LogError::io("write", &tmp, e))?;
    file.sync_data()
        .map_err(|e| LogError::io("fsync", &tmp, e))?;
    // Drop the old index first: a crash after the rename must not pair the
    // new segment with the old index.
    let idx = segment::index_path(&log_dir, id);
    if fs.exists(&idx) {
        fs.remove_file(&idx)
            .map_err(|e| LogError::io("remove", &idx, e))?;
    }
    fs.rename(&tmp, &path)
        .map_err(|e| LogError::io("rename", &tmp, e))?;
    fs.sync_dir(&log_dir)
        .map_err(|e| LogError::io("fsync", &log_dir, e))?;
    entries.sort_by_key(|(pid, l)| (*pid, l.pos));
    let index = SegmentIndex {
        segment_len: out.len() as u64,
        last_log_time,
        entries: entries.clone(),
    };
    if let Err(e) = write_index(fs, &log_dir, id, &index) {
        tracing::warn!(error = %e, "could not write a rewritten segment's index; it will be rebuilt");
    }
    let mut by_partition: HashMap<PartitionId, Vec<ChunkLoc>> = HashMap::new();
    for (pid, loc) in entries {
        by_partition.entry(pid).or_default().push(loc);
    }
    let mut state = shared.state.write().expect("state lock");
    state.segments.insert(
        id,
        Segment {
            id,
            path: path.clone(),
            file,
            len: out.len() as u64,
            sealed: true,
            last_log_time,
            chunks: by_partition,
        },
    );
    let catalog = shared.catalog.read().expect("catalog lock");
    rebuild(&mut state, &catalog);
    Ok(old_len - out.len() as u64)
}
