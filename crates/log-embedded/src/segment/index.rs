//! The segment index file (`.kidx`): one entry per chunk, grouped by
//! partition. It is derived data: written when a segment is sealed, never
//! fsynced, and rebuilt from the segment whenever it is missing, fails its
//! checksum, or was written for a different segment length.
//!
//! ```text
//! header   u32 magic "KIX1", u32 version 1, u64 segment_len, u64 entry_count,
//!          u64 last_log_time
//! entries  entry_count x 56 bytes: u32 topic_id, u32 partition, u64 pos,
//!          u32 len, u32 record_count, u64 base_offset, u64 last_offset,
//!          u64 base_log_time, u64 last_log_time
//! trailer  u32 CRC-32C of everything before it
//! ```

use super::{ChunkLoc, PartitionId};
use crate::codec::{DecodeError, le_u32, le_u64};

const MAGIC: u32 = u32::from_le_bytes(*b"KIX1");
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 56;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub segment_len: u64,
    pub last_log_time: u64,
    pub entries: Vec<(PartitionId, ChunkLoc)>,
}

impl SegmentIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN + 4);
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&self.segment_len.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        b.extend_from_slice(&self.last_log_time.to_le_bytes());
        for (pid, l) in &self.entries {
            b.extend_from_slice(&pid.topic_id.to_le_bytes());
            b.extend_from_slice(&pid.partition.to_le_bytes());
            b.extend_from_slice(&l.pos.to_le_bytes());
            b.extend_from_slice(&l.len.to_le_bytes());
            b.extend_from_slice(&l.record_count.to_le_bytes());
            b.extend_from_slice(&l.base_offset.to_le_bytes());
            b.extend_from_slice(&l.last_offset.to_le_bytes());
            b.extend_from_slice(&l.base_log_time.to_le_bytes());
            b.extend_from_slice(&l.last_log_time.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentIndex, DecodeError> {
        if b.len() < HEADER_LEN + 4 {
            return Err(DecodeError("index file too short".into()));
        }
        let (body, trailer) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != le_u32(trailer, 0) {
            return Err(DecodeError("index checksum mismatch".into()));
        }
        if le_u32(body, 0) != MAGIC || le_u32(body, 4) != 1 {
            return Err(DecodeError("not a version 1 index file".into()));
        }
        let count = le_u64(body, 16) as usize;
        if body.len() != HEADER_LEN + count.saturating_mul(ENTRY_LEN) {
            return Err(DecodeError(
                "index length does not match its entry count".into(),
            ));
        }
        let entries = (0..count)
            .map(|i| {
                let e = &body[HEADER_LEN + i * ENTRY_LEN..];
                (
                    PartitionId {
                        topic_id: le_u32(e, 0),
                        partition: le_u32(e, 4),
                    },
                    ChunkLoc {
                        pos: le_u64(e, 8),
                        len: le_u32(e, 16),
                        record_count: le_u32(e, 20),
                        base_offset: le_u64(e, 24),
                        last_offset: le_u64(e, 32),
                        base_log_time: le_u64(e, 40),
                        last_log_time: le_u64(e, 48),
                    },
                )
            })
            .collect();
        Ok(SegmentIndex {
            segment_len: le_u64(body, 8),
            last_log_time: le_u64(body, 24),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let index = SegmentIndex {
            segment_len: 4096,
            last_log_time: 99,
            entries: vec![(
                PartitionId {
                    topic_id: 1,
                    partition: 2,
                },
                ChunkLoc {
                    pos: 32,
                    len: 100,
                    record_count: 3,
                    base_offset: 10,
                    last_offset: 12,
                    base_log_time: 97,
                    last_log_time: 99,
                },
            )],
        };
        let bytes = index.encode();
        assert_eq!(SegmentIndex::decode(&bytes).unwrap(), index);
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        assert!(SegmentIndex::decode(&bad).is_err());
        assert!(SegmentIndex::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
