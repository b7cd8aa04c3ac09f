//! Snapshot files: a view's rows and operator state at one frontier,
//! checksummed and versioned, to start a version from (a rebuild that
//! replays only what follows, a restore on another instance) and to let
//! the log's history before it go (`kappa topic truncate`).
//!
//! The layout (all integers little-endian; `docs/format.md` has it too):
//!
//! ```text
//! "KSNP" u32 format            magic and this file format (1)
//! u32 len, header JSON, u32 crc32c(JSON)
//! blocks: u32 len (> 0), u32 seq, u32 crc32c(seq ‖ payload), payload
//!         payload: entries, each u8 kind (1 row, 2 state),
//!                  u32 key len, key, u32 value len, value
//! u32 0                        end of blocks
//! u64 rows, u64 state entries, u32 crc32c(the 16 bytes before)
//! ```
//!
//! A reader checks every checksum, the block sequence and the counts, so
//! a torn, cut or edited file is refused as a whole before it is used.

use crate::EngineError;
use kappa_store::{StoreRead, ViewId};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"KSNP";
const FORMAT: u32 = 1;
/// How a view's rows and operator state are encoded. A snapshot made by
/// an engine with another state format cannot seed this one.
pub const STATE_FORMAT: u32 = 1;
const BLOCK_BYTES: usize = 1 << 20;
const KIND_ROW: u8 = 1;
const KIND_STATE: u8 = 2;
/// A block larger than this is damage, not data.
const MAX_BLOCK: u32 = 1 << 30;

/// What a snapshot holds, at its head.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotHeader {
    pub view: String,
    pub version: u32,
    /// The view's defining SELECT: only the same definition can use it.
    pub sql: String,
    /// The view's history retention (`WITH (history = ...)`).
    #[serde(default)]
    pub history_micros: Option<u64>,
    /// The topic the view reads.
    pub topic: String,
    /// Its schema, so that an instance that does not know the topic yet
    /// (a new state store over the same log) can be seeded.
    #[serde(default)]
    pub topic_def: Option<crate::schema::TopicDef>,
    /// Every record up to this log time is in the state.
    pub frontier: u64,
    pub state_format: u32,
    /// When it was written, in microseconds since the epoch.
    pub created_at: u64,
    /// The Kappa release that wrote it.
    pub kappa_version: String,
}

/// A snapshot written, as the catalog and status list it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub version: u32,
    pub frontier: u64,
    pub rows: u64,
    pub state_entries: u64,
    pub bytes: u64,
    pub created_at: u64,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Snapshot {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes `view`'s rows and state as `store` holds them (one consistent
/// read) to `path`: a temporary file, synced, renamed, and the directory
/// synced. `header.frontier` must be the frontier that read saw.
pub fn write(
    read: &dyn StoreRead,
    view: ViewId,
    header: &SnapshotHeader,
    path: &Path,
) -> Result<SnapshotInfo, EngineError> {
    let io = |e: std::io::Error| fail(path, e);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("ksnap.tmp");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&FORMAT.to_le_bytes()).map_err(io)?;
    let json = serde_json::to_vec(header).expect("snapshot headers serialize");
    out.write_all(&(json.len() as u32).to_le_bytes())
        .map_err(io)?;
    out.write_all(&json).map_err(io)?;
    out.write_all(&crc32c::crc32c(&json).to_le_bytes())
        .map_err(io)?;
    let mut blocks = Blocks {
        out,
        payload: Vec::with_capacity(BLOCK_BYTES + 4096),
        seq: 0,
        error: None,
    };
    let (mut rows, mut state) = (0u64, 0u64);
    read.rows(view, &mut |k, v| {
        rows += 1;
        blocks.entry(KIND_ROW, k, v)
    })?;
    read.state_prefix(view, &[], &mut |k, v| {
        state += 1;
        blocks.entry(KIND_STATE, k, v)
    })?;
    blocks.flush();
    if let Some(e) = blocks.error {
        return Err(io(e));
    }
    let mut out = blocks.out;
    out.write_all(&0u32.to_le_bytes()).map_err(io)?;
    let mut trailer = [0u8; 16];
    trailer[..8].copy_from_slice(&rows.to_le_bytes());
    trailer[8..].copy_from_slice(&state.to_le_bytes());
    out.write_all(&trailer).map_err(io)?;
    out.write_all(&crc32c::crc32c(&trailer).to_le_bytes())
        .map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    // A snapshot lets the log's history go: it must be on disk first.
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = dir {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        version: header.version,
        frontier: header.frontier,
        rows,
        state_entries: state,
        bytes,
        created_at: header.created_at,
    })
}

/// Entries into checksummed blocks; the first write error stops it.
struct Blocks {
    out: BufWriter<std::fs::File>,
    payload: Vec<u8>,
    seq: u32,
    error: Option<std::io::Error>,
}

impl Blocks {
    fn entry(&mut self, kind: u8, key: &[u8], value: &[u8]) -> bool {
        self.payload.push(kind);
        self.payload
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(key);
        self.payload
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(value);
        if self.payload.len() >= BLOCK_BYTES {
            self.flush();
        }
        self.error.is_none()
    }

    fn flush(&mut self) {
        if self.payload.is_empty() || self.error.is_some() {
            return;
        }
        let seq = self.seq.to_le_bytes();
        let mut crc = crc32c::crc32c(&seq);
        crc = crc32c::crc32c_append(crc, &self.payload);
        let result = (|| {
            self.out
                .write_all(&(self.payload.len() as u32).to_le_bytes())?;
            self.out.write_all(&seq)?;
            self.out.write_all(&crc.to_le_bytes())?;
            self.out.write_all(&self.payload)
        })();
        if let Err(e) = result {
            self.error = Some(e);
        }
        self.seq += 1;
        self.payload.clear();
    }
}

/// One entry of a snapshot.
pub enum Entry<'a> {
    Row(&'a [u8], &'a [u8]),
    State(&'a [u8], &'a [u8]),
}

/// Reads a snapshot, checking it as it goes.
pub struct SnapshotReader {
    path: PathBuf,
    input: BufReader<std::fs::File>,
    pub header: SnapshotHeader,
    block: Vec<u8>,
    seq: u32,
    rows: u64,
    state: u64,
    done: bool,
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<SnapshotReader, EngineError> {
        let file = std::fs::File::open(path).map_err(|e| fail(path, e))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 8];
        read_exact(
            &mut input,
            &mut head,
            path,
            "the file is too short to be a snapshot",
        )?;
        if &head[..4] != MAGIC {
            return Err(fail(
                path,
                "not a Kappa snapshot (its first bytes are not \"KSNP\")",
            ));
        }
        let format = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(fail(
                path,
                format!(
                    "snapshot file format {format}; this Kappa reads format {FORMAT} (write a new snapshot with this release)"
                ),
            ));
        }
        let len = read_u32(&mut input, path)?;
        if len > MAX_BLOCK {
            return Err(fail(
                path,
                "the header is damaged (its length is implausible)",
            ));
        }
        let mut json = vec![0u8; len as usize];
        read_exact(
            &mut input,
            &mut json,
            path,
            "the file ends inside its header",
        )?;
        if read_u32(&mut input, path)? != crc32c::crc32c(&json) {
            return Err(fail(path, "the header is damaged (checksum mismatch)"));
        }
        let header: SnapshotHeader = serde_json::from_slice(&json)
            .map_err(|e| fail(path, format!("the header does not parse: {e}")))?;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            input,
            header,
            block: Vec::new(),
            seq: 0,
            rows: 0,
            state: 0,
            done: false,
        })
    }

    /// Hands the next block's entries to `visit`; false at the end, once
    /// the trailer's counts and checksum are checked.
    pub fn next_block(&mut self, visit: &mut dyn FnMut(Entry<'_>)) -> Result<bool, EngineError> {
        if self.done {
            return Ok(false);
        }
        let path = self.path.clone();
        let len = read_u32(&mut self.input, &path)?;
        if len == 0 {
            let mut trailer = [0u8; 16];
            read_exact(
                &mut self.input,
                &mut trailer,
                &path,
                "the file is cut short",
            )?;
            if read_u32(&mut self.input, &path)? != crc32c::crc32c(&trailer) {
                return Err(fail(&path, "the trailer is damaged (checksum mismatch)"));
            }
            let rows = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
            let state = u64::from_le_bytes(trailer[8..].try_into().expect("8 bytes"));
            if (rows, state) != (self.rows, self.state) {
                return Err(fail(
                    &path,
                    format!(
                        "it says {rows} rows and {state} state entries but holds {} and {}",
                        self.rows, self.state
                    ),
                ));
            }
            let mut rest = [0u8; 1];
            if self.input.read(&mut rest).map_err(|e| fail(&path, e))? != 0 {
                return Err(fail(&path, "bytes follow the end of the snapshot"));
            }
            self.done = true;
            return Ok(false);
        }
        if len > MAX_BLOCK {
            return Err(fail(
                &path,
                format!("block {} is damaged (its length is implausible)", self.seq),
            ));
        }
        let seq = read_u32(&mut self.input, &path)?;
        let crc = read_u32(&mut self.input, &path)?;
        self.block.resize(len as usize, 0);
        read_exact(
            &mut self.input,
            &mut self.block,
            &path,
            "the file is cut short",
        )?;
        let mut actual = crc32c::crc32c(&seq.to_le_bytes());
        actual = crc32c::crc32c_append(actual, &self.block);
        if seq != self.seq || actual != crc {
            return Err(fail(
                &path,
                format!("block {} is damaged (checksum mismatch)", self.seq),
            ));
        }
        self.seq += 1;
        let b = &self.block;
        let mut at = 0usize;
        let damaged = || {
            fail(
                &path,
                format!("block {} is damaged (an entry runs past it)", seq),
            )
        };
        let take = |at: &mut usize, n: usize| -> Result<&[u8], EngineError> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= b.len())
                .ok_or_else(damaged)?;
            let s = &b[*at..end];
            *at = end;
            Ok(s)
        };
        while at < b.len() {
            let kind = take(&mut at, 1)?[0];
            let klen = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
            let key = take(&mut at, klen as usize)?;
            let vlen = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
            let value = take(&mut at, vlen as usize)?;
            match kind {
                KIND_ROW => {
                    self.rows += 1;
                    visit(Entry::Row(key, value));
                }
                KIND_STATE => {
                    self.state += 1;
                    visit(Entry::State(key, value));
                }
                other => {
                    return Err(fail(
                        &path,
                        format!("block {seq} holds an entry of unknown kind {other}"),
                    ));
                }
            }
        }
        Ok(true)
    }

    /// Reads the whole file, checking everything; returns its counts.
    pub fn check(mut self) -> Result<(SnapshotHeader, u64, u64), EngineError> {
        while self.next_block(&mut |_| {})? {}
        Ok((self.header, self.rows, self.state))
    }
}

fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    short: &str,
) -> Result<(), EngineError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => fail(path, short),
        _ => fail(path, e),
    })
}

fn read_u32(input: &mut impl Read, path: &Path) -> Result<u32, EngineError> {
    let mut b = [0u8; 4];
    read_exact(input, &mut b, path, "the file is cut short")?;
    Ok(u32::from_le_bytes(b))
}
