//! Segments: the files the journal is cut into, and what is known about the
//! chunks inside each.

pub mod index;
pub mod scan;

use crate::fs::FileHandle;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A partition of a topic, by the topic's numeric id (ids are never reused,
/// so chunks of a deleted topic can never be mistaken for a new one's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic_id: u32,
    pub partition: u32,
}

/// Where one chunk is and what it holds: the unit of the sparse indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLoc {
    pub pos: u64,
    pub len: u32,
    pub record_count: u32,
    pub base_offset: u64,
    pub last_offset: u64,
    pub base_log_time: u64,
    pub last_log_time: u64,
}

pub const SEGMENT_SUFFIX: &str = "kseg";
pub const INDEX_SUFFIX: &str = "kidx";

/// `log/01767225600000000000.kseg`: segments are named by the log time
/// their first frame may start at, zero-padded so names sort in log order.
pub fn segment_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(format!("{id:020}.{SEGMENT_SUFFIX}"))
}

pub fn index_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(format!("{id:020}.{INDEX_SUFFIX}"))
}

/// The segment id in a file name like `00000000000000000042.kseg`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(&format!(".{SEGMENT_SUFFIX}"))?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// One segment as the readers see it.
#[derive(Debug)]
pub struct Segment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<dyn FileHandle>,
    /// Bytes of whole, committed frames.
    pub len: u64,
    /// The active segment is the last one; only it grows.
    pub sealed: bool,
    pub last_log_time: u64,
    /// Chunks of each partition, in file (and so log-time) order.
    pub chunks: HashMap<PartitionId, Vec<ChunkLoc>>,
}

impl Segment {
    /// A new, empty active segment.
    pub fn empty(id: u64, path: PathBuf, file: Arc<dyn FileHandle>) -> Segment {
        Segment {
            id,
            path,
            file,
            len: 0,
            sealed: false,
            last_log_time: 0,
            chunks: HashMap::new(),
        }
    }

    pub fn add_chunk(&mut self, pid: PartitionId, loc: ChunkLoc) {
        self.chunks.entry(pid).or_default().push(loc);
        self.last_log_time = self.last_log_time.max(loc.last_log_time);
    }

    /// All chunks, sorted by partition then position (the index file order).
    pub fn sorted_chunks(&self) -> Vec<(PartitionId, ChunkLoc)> {
        let mut all: Vec<(PartitionId, ChunkLoc)> = self
            .chunks
            .iter()
            .flat_map(|(pid, locs)| locs.iter().map(move |l| (*pid, *l)))
            .collect();
        all.sort_by_key(|(pid, l)| (*pid, l.pos));
        all
    }
}
