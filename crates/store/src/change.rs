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

/// A commit's changes, encoded straight into blocks as they are pushed (no
/// allocation per change). A block is sealed once it holds about
/// [`ChangeBlocks::BLOCK_BYTES`], between two log times, so no log time
/// spans two blocks: blocks are keyed by their last log time.
#[derive(Clone, Debug, Default)]
pub struct ChangeBlocks {
    sealed: Vec<(u64, Vec<u8>)>,
    current: Vec<u8>,
    count: u32,
    last: u64,
}

impl ChangeBlocks {
    pub const BLOCK_BYTES: usize = 256 << 10;

    pub fn from_changes(changes: &[Change]) -> ChangeBlocks {
        let mut b = ChangeBlocks::default();
        for c in changes {
            b.push(c.log_time, &c.key, c.before.as_deref(), c.after.as_deref());
        }
        b
    }

    /// Appends a change; log times must not decrease.
    pub fn push(&mut self, log_time: u64, key: &[u8], before: Option<&[u8]>, after: Option<&[u8]>) {
        debug_assert!(self.count == 0 && self.sealed.is_empty() || log_time >= self.last);
        if self.count > 0 && self.current.len() >= Self::BLOCK_BYTES && log_time != self.last {
            self.seal();
        }
        if self.count == 0 {
            self.current.extend_from_slice(&0u32.to_le_bytes());
        }
        let out = &mut self.current;
        out.extend_from_slice(&log_time.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        for row in [before, after] {
            match row {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    out.extend_from_slice(r);
                }
            }
        }
        self.count += 1;
        self.last = log_time;
    }

    fn seal(&mut self) {
        if self.count == 0 {
            return;
        }
        self.current[..4].copy_from_slice(&self.count.to_le_bytes());
        let block = std::mem::take(&mut self.current);
        self.sealed.push((self.last, block));
        self.count = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.sealed.is_empty()
    }

    /// The blocks, each with its last log time, in log-time order.
    pub fn into_blocks(mut self) -> Vec<(u64, Vec<u8>)> {
        self.seal();
        self.sealed
    }

    /// The blocks without consuming them (sealing the open one).
    pub fn blocks(&mut self) -> &[(u64, Vec<u8>)] {
        self.seal();
        &self.sealed
    }
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
        let blocks = ChangeBlocks::from_changes(&changes).into_blocks();
        assert_eq!(blocks.len(), 1);
        let b = &blocks[0].1;
        assert_eq!(decode_changes(b).unwrap(), changes);
        for cut in 0..b.len() {
            assert!(decode_changes(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn blocks_split_between_log_times_and_decode_to_the_input() {
        let row = vec![7u8; 1000];
        let changes: Vec<Change> = (0..2000u64)
            .map(|i| Change {
                // Three changes per log time: a split must not cut one.
                log_time: 10 + i / 3,
                key: format!("k{i}").into_bytes(),
                before: (i % 2 == 0).then(|| row.clone()),
                after: Some(row[..i as usize % 50].to_vec()),
            })
            .collect();
        let blocks = ChangeBlocks::from_changes(&changes).into_blocks();
        assert!(blocks.len() > 2, "{} blocks", blocks.len());
        let mut decoded = Vec::new();
        let mut previous_last = 0;
        for (last, block) in &blocks {
            let part = decode_changes(block).unwrap();
            assert_eq!(part.last().unwrap().log_time, *last);
            assert!(part.first().unwrap().log_time > previous_last);
            previous_last = *last;
            decoded.extend(part);
        }
        assert_eq!(decoded, changes);
        assert!(ChangeBlocks::default().into_blocks().is_empty());
    }
}
