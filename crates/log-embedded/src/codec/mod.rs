//! The byte layout of the journal: frames of chunks of records.
//! docs/format.md is the reference; this module is its implementation.

pub mod chunk;
pub mod frame;
pub mod record;
pub mod varint;

/// Why bytes did not decode. The caller adds the file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The fuzz target's body (fuzz/fuzz_targets/decode_batch.rs): decode
/// arbitrary bytes as a segment, as a frame and as a chunk. It must return
/// errors, never panic, and a chunk that decodes must re-encode to itself.
pub fn fuzz_decode(data: &[u8]) {
    let _ = crate::segment::scan::scan(data, 0, true);
    let _ = crate::segment::scan::check_frame(data, 0, 0);
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok((header, records)) = chunk::decode_records(&bytes) {
        let mut builder = chunk::ChunkBuilder::default();
        for r in &records {
            builder.push_stored(r);
        }
        let again = builder.finish(
            header.topic_id,
            header.partition,
            header.base_offset,
            header.base_log_time,
        );
        assert_eq!(again, data, "a decoded chunk re-encodes to the same bytes");
    }
}
