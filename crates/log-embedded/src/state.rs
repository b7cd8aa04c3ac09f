//! What readers see: segments, their chunks, and each partition's extent.
//! Only the writer (appends) and the cleaner (rewrites) change it, under the
//! write lock, after the bytes it describes are durable.

use crate::fs::FileHandle;
use crate::segment::{ChunkLoc, PartitionId, Segment};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct PartitionState {
    /// The offset the next record gets.
    pub next_offset: u64,
    /// First readable offset (retention raises it).
    pub start_offset: u64,
    /// Chunk bytes attributed to this partition.
    pub bytes: u64,
    pub last_log_time: Option<u64>,
    /// Segments holding chunks of this partition, ascending.
    pub segment_ids: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct LogState {
    pub segments: BTreeMap<u64, Segment>,
    pub partitions: HashMap<PartitionId, PartitionState>,
    /// Log time of the last committed record.
    pub head: u64,
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy)]
pub enum Seek {
    Offset(u64),
    LogTime(u64),
}

/// One chunk to read, with the file it is in.
#[derive(Debug, Clone)]
pub struct ChunkRead {
    pub pid: PartitionId,
    pub segment: u64,
    pub file: Arc<dyn FileHandle>,
    pub path: PathBuf,
    pub loc: ChunkLoc,
}

impl LogState {
    /// Records a committed chunk (the writer, after the sync).
    pub fn publish_chunk(&mut self, segment_id: u64, pid: PartitionId, loc: ChunkLoc) {
        let segment = self
            .segments
            .get_mut(&segment_id)
            .expect("chunks are published into a known segment");
        segment.add_chunk(pid, loc);
        let p = self.partitions.entry(pid).or_default();
        p.next_offset = p.next_offset.max(loc.last_offset + 1);
        p.bytes += loc.len as u64;
        p.last_log_time = Some(loc.last_log_time);
        if p.segment_ids.last() != Some(&segment_id) {
            p.segment_ids.push(segment_id);
        }
    }

    /// Rebuilds every partition's summary from the segments (after open or
    /// after the cleaner rewrote segments). Floors come from the catalog.
    pub fn rebuild_partitions(&mut self, floor: impl Fn(PartitionId) -> (u64, u64)) {
        let mut partitions: HashMap<PartitionId, PartitionState> = HashMap::new();
        for (id, segment) in &self.segments {
            for (pid, locs) in &segment.chunks {
                let p = partitions.entry(*pid).or_default();
                for loc in locs {
                    p.next_offset = p.next_offset.max(loc.last_offset + 1);
                    p.bytes += loc.len as u64;
                    p.last_log_time = Some(loc.last_log_time);
                }
                if !locs.is_empty() {
                    p.segment_ids.push(*id);
                }
            }
        }
        for (pid, p) in partitions.iter_mut() {
            let (start, next_floor) = floor(*pid);
            p.start_offset = start;
            p.next_offset = p.next_offset.max(next_floor);
        }
        self.partitions = partitions;
    }

    /// The committed chunks to read for `pid` from `seek`, in log order,
    /// until about `max_bytes` or `max_records` are covered. The flag says
    /// whether committed chunks were left out.
    pub fn locate(
        &self,
        pid: PartitionId,
        seek: Seek,
        max_records: usize,
        max_bytes: usize,
    ) -> (Vec<ChunkRead>, bool) {
        let Some(p) = self.partitions.get(&pid) else {
            return (Vec::new(), false);
        };
        let past = |loc: &ChunkLoc| match seek {
            Seek::Offset(o) => loc.last_offset < o,
            Seek::LogTime(t) => loc.last_log_time < t,
        };
        let mut out = Vec::new();
        let (mut records, mut bytes) = (0usize, 0usize);
        // The first segment whose last chunk is not entirely before `seek`.
        let first = p
            .segment_ids
            .partition_point(|id| self.segments[id].chunks[&pid].last().is_none_or(&past));
        for id in &p.segment_ids[first..] {
            let segment = &self.segments[id];
            let locs = &segment.chunks[&pid];
            let start = locs.partition_point(|l| past(l));
            for loc in &locs[start..] {
                if loc.pos + loc.len as u64 > segment.len {
                    break; // not committed yet
                }
                if !out.is_empty() && (records >= max_records || bytes >= max_bytes) {
                    return (out, true);
                }
                out.push(ChunkRead {
                    pid,
                    segment: *id,
                    file: segment.file.clone(),
                    path: segment.path.clone(),
                    loc: *loc,
                });
                records += loc.record_count as usize;
                bytes += loc.len as usize;
            }
        }
        (out, false)
    }
}
