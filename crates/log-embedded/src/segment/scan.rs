//! Reading a segment front to back, checking every frame and chunk.
//!
//! Used to rebuild a missing or damaged index, to recover the active segment
//! at open (where a torn tail is expected after a crash), and by
//! `kappa log check`.

use super::{ChunkLoc, PartitionId};
use crate::codec::chunk::{self, CHUNK_HEADER_LEN, ChunkHeader};
use crate::codec::frame::{FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader};

/// How the bytes after the last whole frame look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// The segment ends exactly after a whole frame.
    Clean,
    /// Bytes from `at` on do not form a whole frame and no whole frame
    /// follows them: what a crash during a write leaves.
    Torn { at: u64, reason: String },
}

#[derive(Debug, Clone)]
pub struct Scan {
    pub chunks: Vec<(PartitionId, ChunkLoc)>,
    /// Bytes of whole frames from the start of the segment.
    pub valid_len: u64,
    pub frames: u64,
    pub last_log_time: u64,
    pub end: ScanEnd,
}

/// A frame that is not whole, or that breaks the log's order, where more
/// data follows. Never skipped: the caller reports file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCorruption {
    pub offset: u64,
    pub detail: String,
}

/// Checks the frame at `pos`: header, length, every chunk's checksum, and
/// that log times advance past `after_log_time`.
pub fn check_frame(
    bytes: &[u8],
    pos: usize,
    after_log_time: u64,
) -> Result<(FrameHeader, Vec<(PartitionId, ChunkLoc)>), String> {
    let header = FrameHeader::parse(&bytes[pos..]).map_err(|e| e.0)?;
    let end = pos + header.frame_len as usize;
    if end > bytes.len() {
        return Err(format!(
            "frame of {} bytes runs past the end of the file ({} bytes left)",
            header.frame_len,
            bytes.len() - pos
        ));
    }
    if header.first_log_time <= after_log_time {
        return Err(format!(
            "frame log time {} does not advance past {after_log_time}",
            header.first_log_time
        ));
    }
    let mut chunks = Vec::with_capacity(header.chunk_count as usize);
    let mut at = pos + FRAME_HEADER_LEN;
    for i in 0..header.chunk_count {
        let ch = ChunkHeader::parse(&bytes[at..end]).map_err(|e| format!("chunk {i}: {e}"))?;
        let chunk_end = at + ch.chunk_len as usize;
        if chunk_end > end {
            return Err(format!("chunk {i} runs past the end of its frame"));
        }
        chunk::verify(&bytes[at..chunk_end]).map_err(|e| format!("chunk {i} at byte {at}: {e}"))?;
        if ch.base_log_time < header.first_log_time || ch.last_log_time() > header.last_log_time {
            return Err(format!("chunk {i} log times fall outside its frame's"));
        }
        if ch.record_count == 0 || ch.chunk_len as usize == CHUNK_HEADER_LEN {
            return Err(format!("chunk {i} is empty"));
        }
        chunks.push((
            PartitionId {
                topic_id: ch.topic_id,
                partition: ch.partition,
            },
            ChunkLoc {
                pos: at as u64,
                len: ch.chunk_len,
                record_count: ch.record_count,
                base_offset: ch.base_offset,
                last_offset: ch.last_offset(),
                base_log_time: ch.base_log_time,
                last_log_time: ch.last_log_time(),
            },
        ));
        at = chunk_end;
    }
    if at != end {
        return Err(format!("frame has {} bytes after its last chunk", end - at));
    }
    Ok((header, chunks))
}

/// Scans a whole segment. With `tail_may_be_torn` (the active segment at
/// open) a bad frame that no whole frame follows ends the scan as
/// [`ScanEnd::Torn`]; otherwise any bad frame is corruption.
pub fn scan(
    bytes: &[u8],
    after_log_time: u64,
    tail_may_be_torn: bool,
) -> Result<Scan, ScanCorruption> {
    scan_from(bytes, 0, after_log_time, tail_may_be_torn, Vec::new(), 0)
}

/// [`scan`] from the frame at `pos`, with what the frames before it gave.
fn scan_from(
    bytes: &[u8],
    mut pos: usize,
    after_log_time: u64,
    tail_may_be_torn: bool,
    mut chunks: Vec<(PartitionId, ChunkLoc)>,
    mut frames: u64,
) -> Result<Scan, ScanCorruption> {
    let mut last_log_time = after_log_time;
    while pos < bytes.len() {
        match check_frame(bytes, pos, last_log_time) {
            Ok((header, frame_chunks)) => {
                chunks.extend(frame_chunks);
                last_log_time = header.last_log_time;
                pos += header.frame_len as usize;
                frames += 1;
            }
            Err(reason) => {
                if tail_may_be_torn && !whole_frame_after(bytes, pos + 1, last_log_time) {
                    return Ok(Scan {
                        chunks,
                        valid_len: pos as u64,
                        frames,
                        last_log_time,
                        end: ScanEnd::Torn {
                            at: pos as u64,
                            reason,
                        },
                    });
                }
                return Err(ScanCorruption {
                    offset: pos as u64,
                    detail: reason,
                });
            }
        }
    }
    Ok(Scan {
        chunks,
        valid_len: pos as u64,
        frames,
        last_log_time,
        end: ScanEnd::Clean,
    })
}

/// [`scan`] over a segment of `len` bytes read a window at a time:
/// `read(buf, at)` fills `buf` with the segment's bytes from `at`.
///
/// It holds one window (or one frame, when a frame is bigger) instead of
/// the whole segment. Reading the whole segment allocated up to the
/// segment size (128 MiB by default) at every open, and most of the
/// open's time went to the kernel zeroing those fresh pages.
///
/// It gives what [`scan`] gives over the whole segment. At the first bad
/// frame (rare: a torn tail or damage), it reads the whole segment and
/// goes on as [`scan`] does from that frame, so a torn tail and damage
/// are told apart, and worded, the same way.
pub fn scan_windows<E>(
    len: u64,
    window: usize,
    mut read: impl FnMut(&mut [u8], u64) -> Result<(), E>,
    after_log_time: u64,
    tail_may_be_torn: bool,
) -> Result<Result<Scan, ScanCorruption>, E> {
    let window = window.max(FRAME_HEADER_LEN);
    let mut buf: Vec<u8> = Vec::new();
    // The segment's offset of `buf[0]`.
    let mut base = 0u64;
    let mut pos = 0u64;
    let mut last_log_time = after_log_time;
    let mut chunks = Vec::new();
    let mut frames = 0;
    while pos < len {
        // A frame header, or what is left of the segment.
        let header_end = (pos + FRAME_HEADER_LEN as u64).min(len);
        if header_end > base + buf.len() as u64 {
            fill(&mut read, &mut buf, &mut base, pos, window, len)?;
        }
        // The whole frame its header says, or up to the segment's end
        // (where `check_frame` then finds it cut short, as in `scan`).
        if let Ok(h) = FrameHeader::parse(&buf[(pos - base) as usize..]) {
            let frame_end = (pos + u64::from(h.frame_len)).min(len);
            if frame_end > base + buf.len() as u64 {
                let want = window.max(h.frame_len as usize);
                fill(&mut read, &mut buf, &mut base, pos, want, len)?;
            }
        }
        match check_frame(&buf, (pos - base) as usize, last_log_time) {
            Ok((header, frame_chunks)) => {
                chunks.extend(frame_chunks.into_iter().map(|(pid, mut loc)| {
                    loc.pos += base;
                    (pid, loc)
                }));
                last_log_time = header.last_log_time;
                pos += u64::from(header.frame_len);
                frames += 1;
            }
            Err(_) => {
                let mut all = vec![0u8; len as usize];
                read(&mut all, 0)?;
                return Ok(scan_from(
                    &all,
                    pos as usize,
                    last_log_time,
                    tail_may_be_torn,
                    chunks,
                    frames,
                ));
            }
        }
    }
    Ok(Ok(Scan {
        chunks,
        valid_len: pos,
        frames,
        last_log_time,
        end: ScanEnd::Clean,
    }))
}

/// Makes `buf` the segment's bytes from `from`, `want` of them (fewer at
/// the segment's end).
fn fill<E>(
    read: &mut impl FnMut(&mut [u8], u64) -> Result<(), E>,
    buf: &mut Vec<u8>,
    base: &mut u64,
    from: u64,
    want: usize,
    len: u64,
) -> Result<(), E> {
    let n = (want as u64).min(len - from) as usize;
    buf.resize(n, 0);
    *base = from;
    read(buf, from)
}

/// Is there a whole, valid frame anywhere from `from` on? If so, the bad
/// bytes before it are damage inside the log, not a torn tail.
fn whole_frame_after(bytes: &[u8], from: usize, after_log_time: u64) -> bool {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = from;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        match bytes[at..].windows(4).position(|w| w == magic) {
            None => return false,
            Some(i) => {
                at += i;
                if check_frame(bytes, at, after_log_time).is_ok() {
                    return true;
                }
                at += 1;
            }
        }
    }
    false
}
