//! A change to one row of a view, and the block encoding of a run of them.
//!
//! ```text
//! block   u32 count, then count entries:
//! entry   u64 log_time, u32 key_len, key, before, after
//! row     u8 0 (none) | u8 1, u32 len, bytes
//! ```
//! (little-endian). Blocks live inside redb, which checksums its pages.

use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub log_time: u64,
    pub key: Vec<u8>,
    /// The row before (`None`: it did not exist).
    pub before: Option<Vec<u8>>,
    /// The row after (`None`: it was deleted).
    pub after: Option<Vec<u8>>,
}

pub fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|c| {
            21 + c.key.len()
                + c.before.as_ref().map_or(0, |b| b.len() + 4)
                + c.after.as_ref().map_or(0, |a| a.len() + 4)
        })
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for c in changes {
        out.extend_from_slice(&c.log_time.to_le_bytes());
        out.extend_from_slice(&(c.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&c.key);
        for row in [&c.before, &c.after] {
            match row {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    out.extend_from_slice(r);
                }
            }
        }
    }
    out
}

pub fn decode_changes(b: &[u8]) -> Result<Vec<Change>, StoreError> {
    let mut r = Reader { b, at: 0 };
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let log_time = r.u64()?;
        let key_len = r.u32()? as usize;
        let key = r.bytes(key_len)?.to_vec();
        let before = r.row()?;
        let after = r.row()?;
        out.push(Change {
            log_time,
            key,
            before,
            after,
        });
    }
    if r.at != b.len() {
        return Err(StoreError::Corrupt(format!(
            "change block has {} trailing bytes",
            b.len() - r.at
        )));
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| StoreError::Corrupt("change block cut short".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn row(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.bytes(1)?[0] {
            0 => Ok(None),
            1 => {
                let n = self.u32()? as usize;
                Ok(Some(self.bytes(n)?.to_vec()))
            }
            t => Err(StoreError::Corrupt(format!(
                "bad row tag {t} in change block"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_reject_damage() {
        let changes = vec![
            Change {
                log_time: 5,
                key: b"a".to_vec(),
                before: None,
                after: Some(b"1".to_vec()),
            },
            Change {
                log_time: 9,
                key: b"a".to_vec(),
                before: Some(b"1".to_vec()),
                after: None,
            },
        ];
        let b = encode_changes(&changes);
        assert_eq!(decode_changes(&b).unwrap(), changes);
        for cut in 0..b.len() {
            assert!(decode_changes(&b[..cut]).is_err(), "cut at {cut}");
        }
    }
}
