//! A frame: what one group commit writes with one `write` and one
//! `fdatasync`. It holds whole transactions, so a frame is the unit that a
//! crash either keeps or cuts.
//!
//! ```text
//! 0   u32  magic              "KPF1" (0x3146504b little-endian)
//! 4   u32  frame_len          total bytes, header included
//! 8   u64  first_log_time
//! 16  u64  last_log_time
//! 24  u32  chunk_count
//! 28  u32  header_crc         CRC-32C of bytes 0..28
//! 32       chunk_count chunks, back to back (each with its own CRC)
//! ```

use super::{DecodeError, le_u32, le_u64};

pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"KPF1");
pub const FRAME_HEADER_LEN: usize = 32;
/// Frames larger than this are refused (a corrupt length must not make us
/// allocate gigabytes).
pub const FRAME_LEN_MAX: u32 = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub frame_len: u32,
    pub first_log_time: u64,
    pub last_log_time: u64,
    pub chunk_count: u32,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.frame_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_log_time.to_le_bytes());
        b[16..24].copy_from_slice(&self.last_log_time.to_le_bytes());
        b[24..28].copy_from_slice(&self.chunk_count.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header: magic, checksum, sane lengths.
    pub fn parse(b: &[u8]) -> Result<FrameHeader, DecodeError> {
        if b.len() < FRAME_HEADER_LEN {
            return Err(DecodeError(format!(
                "frame header cut short at {} bytes",
                b.len()
            )));
        }
        if le_u32(b, 0) != FRAME_MAGIC {
            return Err(DecodeError("no frame magic".into()));
        }
        let stored = le_u32(b, 28);
        let actual = crc32c::crc32c(&b[0..28]);
        if stored != actual {
            return Err(DecodeError(format!(
                "frame header checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
            )));
        }
        let header = FrameHeader {
            frame_len: le_u32(b, 4),
            first_log_time: le_u64(b, 8),
            last_log_time: le_u64(b, 16),
            chunk_count: le_u32(b, 24),
        };
        if (header.frame_len as usize) < FRAME_HEADER_LEN || header.frame_len > FRAME_LEN_MAX {
            return Err(DecodeError(format!(
                "frame length {} out of range",
                header.frame_len
            )));
        }
        if header.last_log_time < header.first_log_time {
            return Err(DecodeError("frame log times run backwards".into()));
        }
        Ok(header)
    }
}
