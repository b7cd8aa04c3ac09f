//! Opening a data directory: load the catalog, load or rebuild each sealed
//! segment's index, scan the active segment and cut a torn tail.

use crate::catalog::Catalog;
use crate::fs::{self, FileSystem};
use crate::segment::index::SegmentIndex;
use crate::segment::scan::{self, ScanEnd};
use crate::segment::{self, ChunkLoc, PartitionId, Segment};
use crate::state::LogState;
use crate::writer::{Active, now_micros};
use kappa_log::LogError;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

pub const LOG_DIR: &str = "log";

/// What open found, for the log to start from.
pub struct Recovered {
    pub state: LogState,
    pub active: Active,
    pub last_log_time: u64,
}

/// Writes a segment's index (derived data: no fsync; see `segment::index`).
pub fn write_index(
    fs: &dyn FileSystem,
    log_dir: &Path,
    id: u64,
    index: &SegmentIndex,
) -> std::io::Result<()> {
    let path = segment::index_path(log_dir, id);
    let tmp = path.with_extension("kidx.tmp");
    let file = fs.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(&index.encode(), 0)?;
    drop(file);
    fs.rename(&tmp, &path)
}

/// Lists segment ids in log order, removing temporary files left by a crash.
pub fn list_segments(fs: &dyn FileSystem, log_dir: &Path) -> Result<Vec<u64>, LogError> {
    let names = fs
        .list(log_dir)
        .map_err(|e| LogError::io("list", log_dir, e))?;
    let mut ids = Vec::new();
    for name in names {
        if name.ends_with(".tmp") {
            let path = log_dir.join(&name);
            fs.remove_file(&path)
                .map_err(|e| LogError::io("remove", &path, e))?;
        } else if let Some(id) = segment::parse_segment_name(&name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A segment is scanned this much at a time.
const SCAN_WINDOW: usize = 4 << 20;

/// Reads and scans a segment; a bad frame is corruption unless
/// `tail_may_be_torn`.
pub fn scan_segment(
    fs: &dyn FileSystem,
    path: &Path,
    after_log_time: u64,
    tail_may_be_torn: bool,
) -> Result<scan::Scan, LogError> {
    let read_error = |e| LogError::io("read", path, e);
    let file = fs.open(path, false).map_err(read_error)?;
    let len = file.len().map_err(read_error)?;
    let read = |buf: &mut [u8], at: u64| file.read_exact_at(buf, at);
    scan::scan_windows(len, SCAN_WINDOW, read, after_log_time, tail_may_be_torn)
        .map_err(read_error)?
        .map_err(|c| LogError::Corruption {
            file: path.to_path_buf(),
            offset: c.offset,
            detail: c.detail,
        })
}

/// The index of a sealed segment: loaded if whole and current, else rebuilt
/// from the segment (and rewritten).
fn sealed_index(
    fs: &dyn FileSystem,
    log_dir: &Path,
    id: u64,
    segment_len: u64,
    after_log_time: u64,
) -> Result<SegmentIndex, LogError> {
    let path = segment::index_path(log_dir, id);
    if fs.exists(&path) {
        match fs::read_file(fs, &path).map(|b| SegmentIndex::decode(&b)) {
            Ok(Ok(index)) if index.segment_len == segment_len => return Ok(index),
            Ok(Ok(_)) => {
                tracing::warn!(path = %path.display(), "segment index is stale; rebuilding it")
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "segment index is damaged; rebuilding it")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "segment index unreadable; rebuilding it")
            }
        }
    } else {
        tracing::info!(path = %path.display(), "segment index missing; rebuilding it");
    }
    let seg_path = segment::segment_path(log_dir, id);
    let scan = scan_segment(fs, &seg_path, after_log_time, false)?;
    let mut entries = scan.chunks;
    entries.sort_by_key(|(pid, l)| (*pid, l.pos));
    let index = SegmentIndex {
        segment_len,
        last_log_time: scan.last_log_time,
        entries,
    };
    if let Err(e) = write_index(fs, log_dir, id, &index) {
        tracing::warn!(error = %e, "could not write the rebuilt index; it will be rebuilt again next time");
    }
    Ok(index)
}

fn group_chunks(entries: Vec<(PartitionId, ChunkLoc)>) -> HashMap<PartitionId, Vec<ChunkLoc>> {
    let mut chunks: HashMap<PartitionId, Vec<ChunkLoc>> = HashMap::new();
    for (pid, loc) in entries {
        chunks.entry(pid).or_default().push(loc);
    }
    for locs in chunks.values_mut() {
        locs.sort_by_key(|l| l.pos);
    }
    chunks
}

pub fn recover(fs: &dyn FileSystem, dir: &Path, catalog: &Catalog) -> Result<Recovered, LogError> {
    let log_dir = dir.join(LOG_DIR);
    if !fs.exists(&log_dir) {
        fs.create_dir_all(&log_dir)
            .map_err(|e| LogError::io("create", &log_dir, e))?;
        fs.sync_dir(dir)
            .map_err(|e| LogError::io("fsync", dir, e))?;
    }
    let ids = list_segments(fs, &log_dir)?;
    let mut state = LogState::default();
    let mut last_log_time = 0u64;
    for (i, id) in ids.iter().enumerate() {
        let path = segment::segment_path(&log_dir, *id);
        let file = fs
            .open(&path, false)
            .map_err(|e| LogError::io("open", &path, e))?;
        let len = file.len().map_err(|e| LogError::io("stat", &path, e))?;
        let is_last = i + 1 == ids.len();
        let (segment_last, chunks, len) = if is_last {
            let scan = scan_segment(fs, &path, last_log_time, true)?;
            if let ScanEnd::Torn { at, reason } = &scan.end {
                tracing::warn!(
                    file = %path.display(),
                    at,
                    dropped_bytes = len - at,
                    "cutting a torn tail left by a crash: {reason}"
                );
                file.set_len(*at)
                    .map_err(|e| LogError::io("truncate", &path, e))?;
                file.sync_data()
                    .map_err(|e| LogError::io("fsync", &path, e))?;
            }
            (scan.last_log_time, scan.chunks, scan.valid_len)
        } else {
            let index = sealed_index(fs, &log_dir, *id, len, last_log_time)?;
            (index.last_log_time, index.entries, len)
        };
        // A segment's id is at most its first log time; an empty active
        // segment still fixes a floor (the wall clock may have gone back).
        last_log_time = last_log_time.max(segment_last).max(id.saturating_sub(1));
        state.segments.insert(
            *id,
            Segment {
                id: *id,
                path,
                file,
                len,
                sealed: !is_last,
                last_log_time: segment_last,
                chunks: group_chunks(chunks),
            },
        );
    }
    last_log_time = last_log_time.max(catalog.log_time_floor);
    let active = match state.segments.values().next_back() {
        Some(last) => Active {
            id: last.id,
            file: last.file.clone(),
            path: last.path.clone(),
            len: last.len,
            opened: Instant::now(),
        },
        None => {
            let id = now_micros().max(last_log_time + 1);
            let path = segment::segment_path(&log_dir, id);
            let file = fs
                .open(&path, true)
                .map_err(|e| LogError::io("create", &path, e))?;
            fs.sync_dir(&log_dir)
                .map_err(|e| LogError::io("fsync", &log_dir, e))?;
            state
                .segments
                .insert(id, Segment::empty(id, path.clone(), file.clone()));
            Active {
                id,
                file,
                path,
                len: 0,
                opened: Instant::now(),
            }
        }
    };
    state.rebuild_partitions(|pid| {
        let floor = catalog.floor(pid);
        (floor.start_offset, floor.next_offset)
    });
    state.head = last_log_time;
    Ok(Recovered {
        state,
        active,
        last_log_time,
    })
}
