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
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*at)
            .ok_or_else(|| DecodeError("varint runs past the end".into()))?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err(DecodeError("varint overflows 64 bits".into()));
        }
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
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
