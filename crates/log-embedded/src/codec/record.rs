//! One record inside a chunk.
//!
//! ```text
//! body_len          varint   bytes after this field
//! attributes        u8       bit 0 key, bit 1 value (else tombstone), bit 2 event time
//! offset_delta      varint   offset - chunk base offset
//! log_time_delta    varint   log time - chunk base log time
//! event_time        zigzag   if bit 2
//! key               varint len, bytes   if bit 0
//! value             varint len, bytes   if bit 1
//! header_count      varint
//!   name            varint len, UTF-8 bytes
//!   value           varint (0 = null, n + 1 = n bytes follow), bytes
//! ```

use super::DecodeError;
use super::varint::{get_i64, get_len, get_u64, put_i64, put_u64};
use bytes::Bytes;
use kappa_log::Header;

const HAS_KEY: u8 = 1;
const HAS_VALUE: u8 = 2;
const HAS_EVENT_TIME: u8 = 4;

/// The fields of a record as stored (positions are deltas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset_delta: u32,
    pub log_time_delta: u64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub event_time: Option<i64>,
}

/// Appends one encoded record to `out`.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    out: &mut Vec<u8>,
    offset_delta: u32,
    log_time_delta: u64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
    event_time: Option<i64>,
) {
    let mut body =
        Vec::with_capacity(16 + key.map_or(0, |k| k.len()) + value.map_or(0, |v| v.len()));
    let mut attributes = 0;
    if key.is_some() {
        attributes |= HAS_KEY;
    }
    if value.is_some() {
        attributes |= HAS_VALUE;
    }
    if event_time.is_some() {
        attributes |= HAS_EVENT_TIME;
    }
    body.push(attributes);
    put_u64(&mut body, offset_delta as u64);
    put_u64(&mut body, log_time_delta);
    if let Some(t) = event_time {
        put_i64(&mut body, t);
    }
    if let Some(k) = key {
        put_u64(&mut body, k.len() as u64);
        body.extend_from_slice(k);
    }
    if let Some(v) = value {
        put_u64(&mut body, v.len() as u64);
        body.extend_from_slice(v);
    }
    put_u64(&mut body, headers.len() as u64);
    for h in headers {
        put_u64(&mut body, h.name.len() as u64);
        body.extend_from_slice(h.name.as_bytes());
        match &h.value {
            None => put_u64(&mut body, 0),
            Some(v) => {
                put_u64(&mut body, v.len() as u64 + 1);
                body.extend_from_slice(v);
            }
        }
    }
    put_u64(out, body.len() as u64);
    out.extend_from_slice(&body);
}

/// A record as stored, its key and value given as where they are in the
/// buffer it was decoded from (`(start, len)`), not as slices of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedRecord {
    pub offset_delta: u32,
    pub log_time_delta: u64,
    pub key: Option<(usize, usize)>,
    pub value: Option<(usize, usize)>,
    pub headers: Vec<Header>,
    pub event_time: Option<i64>,
}

impl LocatedRecord {
    /// The record with its key and value as zero-copy slices of `buf`,
    /// the buffer it was located in.
    pub fn in_buffer(self, buf: &Bytes) -> StoredRecord {
        let slice = |r: Option<(usize, usize)>| r.map(|(start, len)| buf.slice(start..start + len));
        StoredRecord {
            offset_delta: self.offset_delta,
            log_time_delta: self.log_time_delta,
            key: slice(self.key),
            value: slice(self.value),
            headers: self.headers,
            event_time: self.event_time,
        }
    }
}

/// Decodes the record at `*at` in `buf`, advancing `*at`. Key, value and
/// header values are zero-copy slices of `buf`.
pub fn decode(buf: &Bytes, at: &mut usize) -> Result<StoredRecord, DecodeError> {
    Ok(locate(buf, at)?.in_buffer(buf))
}

/// Decodes the record at `*at` in `buf`, advancing `*at`, with its key and
/// value located in `buf` (no slice made: a reader of many records makes
/// none). Header values are zero-copy slices of `buf`.
pub fn locate(buf: &Bytes, at: &mut usize) -> Result<LocatedRecord, DecodeError> {
    let body_len = get_len(buf, at)?;
    let end = *at + body_len;
    let body = &buf[..end];
    let attributes = *body
        .get(*at)
        .ok_or_else(|| DecodeError("empty record".into()))?;
    if attributes & !(HAS_KEY | HAS_VALUE | HAS_EVENT_TIME) != 0 {
        return Err(DecodeError(format!(
            "unknown record attributes {attributes:#x}"
        )));
    }
    *at += 1;
    let offset_delta = get_u64(body, at)?;
    let offset_delta = u32::try_from(offset_delta)
        .map_err(|_| DecodeError(format!("offset delta {offset_delta} too large")))?;
    let log_time_delta = get_u64(body, at)?;
    let event_time = if attributes & HAS_EVENT_TIME != 0 {
        Some(get_i64(body, at)?)
    } else {
        None
    };
    let range = |at: &mut usize| -> Result<(usize, usize), DecodeError> {
        let len = get_len(body, at)?;
        let start = *at;
        *at += len;
        Ok((start, len))
    };
    let key = if attributes & HAS_KEY != 0 {
        Some(range(at)?)
    } else {
        None
    };
    let value = if attributes & HAS_VALUE != 0 {
        Some(range(at)?)
    } else {
        None
    };
    let header_count = get_len(body, at)?;
    let mut headers = Vec::with_capacity(header_count.min(64));
    for _ in 0..header_count {
        let (start, len) = range(at)?;
        let name = String::from_utf8(body[start..start + len].to_vec())
            .map_err(|_| DecodeError("header name is not UTF-8".into()))?;
        let tag = get_u64(body, at)?;
        let value = if tag == 0 {
            None
        } else {
            let len = (tag - 1) as usize;
            if len > body.len() - *at {
                return Err(DecodeError("header value runs past the record".into()));
            }
            let v = buf.slice(*at..*at + len);
            *at += len;
            Some(v)
        };
        headers.push(Header { name, value });
    }
    if *at != end {
        return Err(DecodeError(format!(
            "record body has {} unread bytes",
            end - *at
        )));
    }
    Ok(LocatedRecord {
        offset_delta,
        log_time_delta,
        key,
        value,
        headers,
        event_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let headers = vec![
            Header {
                name: "h".into(),
                value: Some(Bytes::from_static(b"v")),
            },
            Header {
                name: "n".into(),
                value: None,
            },
        ];
        let mut buf = Vec::new();
        encode(&mut buf, 3, 9, Some(b"k"), Some(b"{}"), &headers, Some(-5));
        encode(&mut buf, 4, 10, None, None, &[], None);
        let buf = Bytes::from(buf);
        let mut at = 0;
        let a = decode(&buf, &mut at).unwrap();
        assert_eq!(a.offset_delta, 3);
        assert_eq!(a.log_time_delta, 9);
        assert_eq!(a.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(a.value.as_deref(), Some(&b"{}"[..]));
        assert_eq!(a.headers, headers);
        assert_eq!(a.event_time, Some(-5));
        let b = decode(&buf, &mut at).unwrap();
        assert_eq!((b.key, b.value, b.event_time), (None, None, None));
        assert_eq!(at, buf.len());
    }
}
