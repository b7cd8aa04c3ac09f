//! A chunk: the records of one partition within one transaction, with their
//! own checksum, so a partition's records can be read and verified without
//! reading the rest of the frame.
//!
//! ```text
//! 0   u32  chunk_len            total bytes, header included
//! 4   u32  crc                  CRC-32C of bytes 8..chunk_len
//! 8   u32  topic_id
//! 12  u32  partition
//! 16  u64  base_offset
//! 24  u64  base_log_time
//! 32  u32  record_count
//! 36  u32  last_offset_delta
//! 40  u32  last_log_time_delta
//! 44  u16  attributes           0 (reserved for compression)
//! 46  u16  reserved             0
//! 48       records
//! ```

use super::record::{self, LocatedRecord, StoredRecord};
use super::{DecodeError, le_u16, le_u32, le_u64};
use bytes::Bytes;

pub const CHUNK_HEADER_LEN: usize = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub chunk_len: u32,
    pub topic_id: u32,
    pub partition: u32,
    pub base_offset: u64,
    pub base_log_time: u64,
    pub record_count: u32,
    pub last_offset_delta: u32,
    pub last_log_time_delta: u32,
}

impl ChunkHeader {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + self.last_offset_delta as u64
    }
    pub fn last_log_time(&self) -> u64 {
        self.base_log_time + self.last_log_time_delta as u64
    }

    /// Parses a header without checking the checksum.
    pub fn parse(b: &[u8]) -> Result<ChunkHeader, DecodeError> {
        if b.len() < CHUNK_HEADER_LEN {
            return Err(DecodeError(format!(
                "chunk header cut short at {} bytes",
                b.len()
            )));
        }
        let header = ChunkHeader {
            chunk_len: le_u32(b, 0),
            topic_id: le_u32(b, 8),
            partition: le_u32(b, 12),
            base_offset: le_u64(b, 16),
            base_log_time: le_u64(b, 24),
            record_count: le_u32(b, 32),
            last_offset_delta: le_u32(b, 36),
            last_log_time_delta: le_u32(b, 40),
        };
        if (header.chunk_len as usize) < CHUNK_HEADER_LEN {
            return Err(DecodeError(format!(
                "chunk length {} is too small",
                header.chunk_len
            )));
        }
        if le_u16(b, 44) != 0 || le_u16(b, 46) != 0 {
            return Err(DecodeError("unknown chunk attributes".into()));
        }
        Ok(header)
    }
}

/// Records of one partition being built by an appender, before the writer
/// gives them their base offset and base log time.
#[derive(Debug)]
pub struct ChunkBuilder {
    buf: Vec<u8>,
    record_count: u32,
    last_offset_delta: u32,
    last_log_time_delta: u32,
}

impl Default for ChunkBuilder {
    fn default() -> Self {
        ChunkBuilder {
            buf: vec![0; CHUNK_HEADER_LEN],
            record_count: 0,
            last_offset_delta: 0,
            last_log_time_delta: 0,
        }
    }
}

impl ChunkBuilder {
    /// Adds a record; offset deltas are dense (0, 1, 2, ...).
    pub fn push(
        &mut self,
        log_time_delta: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[kappa_log::Header],
        event_time: Option<i64>,
    ) {
        let offset_delta = self.record_count;
        record::encode(
            &mut self.buf,
            offset_delta,
            log_time_delta as u64,
            key,
            value,
            headers,
            event_time,
        );
        self.record_count += 1;
        self.last_offset_delta = offset_delta;
        self.last_log_time_delta = log_time_delta;
    }

    /// Adds an already decoded record keeping its deltas (used by the cleaner,
    /// which drops records and so leaves gaps in offsets).
    pub fn push_stored(&mut self, r: &StoredRecord) {
        record::encode(
            &mut self.buf,
            r.offset_delta,
            r.log_time_delta,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
            r.event_time,
        );
        self.record_count += 1;
        self.last_offset_delta = r.offset_delta;
        self.last_log_time_delta = r.log_time_delta as u32;
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    pub fn last_log_time_delta(&self) -> u32 {
        self.last_log_time_delta
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Fills in the header and checksum; returns the finished chunk bytes.
    pub fn finish(
        mut self,
        topic_id: u32,
        partition: u32,
        base_offset: u64,
        base_log_time: u64,
    ) -> Vec<u8> {
        let len = self.buf.len() as u32;
        let b = &mut self.buf;
        b[0..4].copy_from_slice(&len.to_le_bytes());
        b[8..12].copy_from_slice(&topic_id.to_le_bytes());
        b[12..16].copy_from_slice(&partition.to_le_bytes());
        b[16..24].copy_from_slice(&base_offset.to_le_bytes());
        b[24..32].copy_from_slice(&base_log_time.to_le_bytes());
        b[32..36].copy_from_slice(&self.record_count.to_le_bytes());
        b[36..40].copy_from_slice(&self.last_offset_delta.to_le_bytes());
        b[40..44].copy_from_slice(&self.last_log_time_delta.to_le_bytes());
        b[44..48].copy_from_slice(&[0; 4]);
        let crc = crc32c::crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Stamps base offset and base log time into a chunk built by
/// [`ChunkBuilder::finish`] with placeholders, and recomputes its checksum.
/// The writer does this under its lock; the appender did the encoding.
pub fn stamp(chunk: &mut [u8], base_offset: u64, base_log_time: u64) {
    chunk[16..24].copy_from_slice(&base_offset.to_le_bytes());
    chunk[24..32].copy_from_slice(&base_log_time.to_le_bytes());
    let crc = crc32c::crc32c(&chunk[8..]);
    chunk[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a whole chunk (header and checksum) and returns its header.
pub fn verify(chunk: &[u8]) -> Result<ChunkHeader, DecodeError> {
    let header = ChunkHeader::parse(chunk)?;
    if header.chunk_len as usize != chunk.len() {
        return Err(DecodeError(format!(
            "chunk length {} does not match the {} bytes given",
            header.chunk_len,
            chunk.len()
        )));
    }
    let stored = le_u32(chunk, 4);
    let actual = crc32c::crc32c(&chunk[8..]);
    if stored != actual {
        return Err(DecodeError(format!(
            "chunk checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )));
    }
    Ok(header)
}

/// Decodes every record of a verified chunk.
pub fn decode_records(chunk: &Bytes) -> Result<(ChunkHeader, Vec<StoredRecord>), DecodeError> {
    let mut records = Vec::new();
    let header = decode_each(chunk, |r| records.push(r))?;
    Ok((header, records))
}

/// Verifies a chunk and hands each record to `f` in order, without
/// collecting them first (the read path's hot loop). `f` may have seen some
/// records when an error is returned.
pub fn decode_each(
    chunk: &Bytes,
    mut f: impl FnMut(StoredRecord),
) -> Result<ChunkHeader, DecodeError> {
    let header = verify(chunk)?;
    decode_verified(chunk, &header, |r| f(r.in_buffer(chunk)))?;
    Ok(header)
}

/// [`decode_each`] for a chunk that [`verify`] already returned `header` for.
pub fn decode_verified(
    chunk: &Bytes,
    header: &ChunkHeader,
    mut f: impl FnMut(LocatedRecord),
) -> Result<(), DecodeError> {
    let mut at = CHUNK_HEADER_LEN;
    let mut count = 0u32;
    let mut previous: Option<(u32, u64)> = None;
    while at < chunk.len() {
        let r = record::locate(chunk, &mut at)?;
        if let Some((po, pl)) = previous
            && (r.offset_delta <= po || r.log_time_delta <= pl)
        {
            return Err(DecodeError("records out of order within a chunk".into()));
        }
        previous = Some((r.offset_delta, r.log_time_delta));
        count += 1;
        f(r);
    }
    if count != header.record_count {
        return Err(DecodeError(format!(
            "chunk says {} records but holds {count}",
            header.record_count,
        )));
    }
    match previous {
        Some((offset_delta, log_time_delta))
            if offset_delta == header.last_offset_delta
                && log_time_delta == header.last_log_time_delta as u64 => {}
        _ => {
            return Err(DecodeError(
                "chunk header does not match its last record".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_verify_and_detect_flips() {
        let mut b = ChunkBuilder::default();
        b.push(0, Some(b"a"), Some(b"1"), &[], None);
        b.push(2, None, Some(b"2"), &[], Some(7));
        let mut chunk = b.finish(3, 1, 0, 0);
        stamp(&mut chunk, 100, 5_000);
        let bytes = Bytes::from(chunk.clone());
        let (h, records) = decode_records(&bytes).unwrap();
        assert_eq!(
            (h.topic_id, h.partition, h.base_offset, h.base_log_time),
            (3, 1, 100, 5_000)
        );
        assert_eq!(h.last_offset(), 101);
        assert_eq!(h.last_log_time(), 5_002);
        assert_eq!(records.len(), 2);
        for i in 0..chunk.len() {
            let mut flipped = chunk.clone();
            flipped[i] ^= 0x10;
            assert!(
                decode_records(&Bytes::from(flipped)).is_err(),
                "flip at {i} undetected"
            );
        }
    }
}
