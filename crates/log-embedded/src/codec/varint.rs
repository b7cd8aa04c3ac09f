//! LEB128 unsigned varints and zigzag signed ones (as in Kafka's records).

use super::DecodeError;

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a varint at `*at`, advancing it.
#[inline]
pub fn get_u64(buf: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    // Most varints in a chunk (lengths, deltas, attributes' neighbours)
    // are one byte.
    if let Some(&byte) = buf.get(*at)
        && byte < 0x80
    {
        *at += 1;
        return Ok(u64::from(byte));
    }
    get_u64_long(buf, at)
}

#[inline(never)]
fn get_u64_long(buf: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let (mut v, mut i) = (0u64, *at);
    // Bytes 1 to 10 carry bits from 0, 7, ..., 63.
    for shift in [0, 7, 14, 21, 28, 35, 42, 49, 56, 63] {
        let Some(&byte) = buf.get(i) else {
            return Err(DecodeError("varint runs past the end".into()));
        };
        i += 1;
        if shift == 63 && byte > 1 {
            return Err(DecodeError("varint overflows 64 bits".into()));
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            *at = i;
            return Ok(v);
        }
    }
    Err(DecodeError("varint longer than 10 bytes".into()))
}

pub fn get_i64(buf: &[u8], at: &mut usize) -> Result<i64, DecodeError> {
    let v = get_u64(buf, at)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// A varint that must fit in `usize` and in the remaining buffer, for lengths.
#[inline]
pub fn get_len(buf: &[u8], at: &mut usize) -> Result<usize, DecodeError> {
    let v = get_u64(buf, at)?;
    let remaining = buf.len().saturating_sub(*at) as u64;
    if v > remaining {
        return Err(DecodeError(format!(
            "length {v} runs past the end ({remaining} bytes left)"
        )));
    }
    Ok(v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_u64(&mut buf, v);
            let mut at = 0;
            assert_eq!(get_u64(&buf, &mut at).unwrap(), v);
            assert_eq!(at, buf.len());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -1_767_225_600_000_000] {
            let mut buf = Vec::new();
            put_i64(&mut buf, v);
            let mut at = 0;
            assert_eq!(get_i64(&buf, &mut at).unwrap(), v);
        }
    }

    /// Every length, with and without bytes after it, reads as written.
    #[test]
    fn varints_of_every_length_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for bits in 0..=64 {
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = if bits == 64 {
                    x
                } else {
                    x & ((1u64 << bits) - 1)
                };
                for tail in [0usize, 3, 9] {
                    let mut buf = Vec::new();
                    put_u64(&mut buf, v);
                    let len = buf.len();
                    buf.extend(std::iter::repeat_n(0xffu8, tail));
                    let mut at = 0;
                    assert_eq!(get_u64(&buf, &mut at).unwrap(), v, "{v:#x} tail {tail}");
                    assert_eq!(at, len, "{v:#x} tail {tail}");
                }
            }
        }
    }

    #[test]
    fn malformed_varints_are_errors() {
        assert!(get_u64(&[0x80], &mut 0).is_err());
        assert!(get_u64(&[0xff; 11], &mut 0).is_err());
        assert!(
            get_u64(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut 0
            )
            .is_err()
        );
        assert!(get_len(&[5, 1, 2], &mut 0).is_err());
    }
}
