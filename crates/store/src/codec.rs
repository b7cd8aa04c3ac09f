//! Varints and a bounds-checked reader, shared by the store's encodings
//! (change blocks, packed entry blocks). A read past the end or an
//! overlong varint is damage, reported with what was being read.

use crate::StoreError;

/// LEB128: seven bits a byte, low first.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
    /// What is read, for error messages ("change block").
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { b, at: 0, what }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.b.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| StoreError::Corrupt(format!("{} cut short", self.what)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bytes(1)?[0];
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StoreError::Corrupt(format!(
            "{} varint too long",
            self.what
        )))
    }

    pub(crate) fn len(&mut self) -> Result<usize, StoreError> {
        usize::try_from(self.varint()?)
            .map_err(|_| StoreError::Corrupt(format!("{} length too large", self.what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_damage_is_named() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out, "test");
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.is_empty());
        }
        let err = Reader::new(&[0x80], "test block").varint().unwrap_err();
        assert!(err.to_string().contains("test block cut short"), "{err}");
    }
}
