//! A change to one row of a view, and the block encoding of a run of them.
//!
//! History is written once per record a view applies, so its encoding is
//! kept small:
//!
//! ```text
//! block   u8 version (3), varint count, then count entries:
//! entry   varint log_time - previous entry's (the first: from 0),
//!         varint key_len, key, u8 flags, [before], [after]
//! flags   1: before present, 2: after present,
//!         4: before is `row_prefix(key)` + the bytes stored,
//!         8: after likewise,
//!         16: before is a back reference (with 1; not with 4)
//! row     varint len, bytes
//! back    varint distance from this entry's first byte back to the first
//!         byte of an earlier entry of the same key in this block, whose
//!         after is this entry's before
//! ```
//! where `row_prefix(key)` is a row's leading bytes when its first cells
//! are the key's (a view's rows usually start with their key columns: two
//! bytes of width, then the key cells). A key changed many times in a
//! block (a replay folding records into a few groups) so stores each of
//! its rows once. Version 2 is version 3 without back references, and is
//! still read. Blocks live inside redb, which checksums its pages.

use crate::StoreError;
use crate::codec::{Reader, put_varint};
use crate::key_filter;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub log_time: u64,
    pub key: Vec<u8>,
    /// The row before (`None`: it did not exist).
    pub before: Option<Vec<u8>>,
    /// The row after (`None`: it was deleted).
    pub after: Option<Vec<u8>>,
}

/// A sealed block: its last log time, its changes, and a filter of its
/// keys (see `key_filter`).
#[derive(Clone, Debug)]
pub struct Block {
    pub last: u64,
    pub bytes: Vec<u8>,
    pub filter: Vec<u8>,
}

/// A commit's changes, encoded straight into blocks as they are pushed (no
/// allocation per change). A block is sealed once it holds about
/// [`ChangeBlocks::BLOCK_BYTES`], between two log times, so no log time
/// spans two blocks: blocks are keyed by their last log time.
#[derive(Clone, Debug, Default)]
pub struct ChangeBlocks {
    sealed: Vec<Block>,
    current: Vec<u8>,
    /// The key hashes of the current block, for its filter.
    hashes: Vec<u64>,
    count: u32,
    last: u64,
    /// Seal blocks at this size (0: [`ChangeBlocks::BLOCK_BYTES`]).
    block_bytes: usize,
    /// Recent afters of the current block, by key hash (a direct-mapped
    /// table: a newer key evicts an older one, which only costs a
    /// reference): see [`ChangeBlocks::push_versions`].
    afters: Vec<Recent>,
    /// Numbers the blocks, so that the table need not be cleared at a
    /// seal: an entry of an earlier block is not this one's.
    generation: u32,
    /// The bytes of the block sealed last: the next block is given as
    /// much room at once (a replay fills block after block, each grown by
    /// doubling copied ~256 KiB; a live step's small blocks stay small).
    last_len: usize,
}

/// An after in [`ChangeBlocks::afters`].
#[derive(Clone, Copy, Debug, Default)]
struct Recent {
    /// The row version's identity.
    id: u64,
    /// Where its entry starts in the block.
    at: u32,
    generation: u32,
}

/// Entries of [`ChangeBlocks::afters`] (16 bytes each).
const RECENT: usize = 4096;

fn recent_slot(hash: u64) -> usize {
    (hash >> 40) as usize % RECENT
}

impl ChangeBlocks {
    /// A block is sealed before a change with a new log time would take
    /// it past this many bytes. Just under a power of two: redb gives a
    /// value its own pages in power-of-two runs of 4 KiB, so a block just
    /// over 256 KiB would take 512 KiB on disk and in every write.
    pub const BLOCK_BYTES: usize = (256 << 10) - (4 << 10);

    /// Blocks sealed at `bytes` (at most [`ChangeBlocks::BLOCK_BYTES`]):
    /// smaller blocks, to be written sooner. 0 is the default size, as in
    /// [`ChangeBlocks::default`].
    pub fn with_block_bytes(bytes: usize) -> ChangeBlocks {
        ChangeBlocks {
            block_bytes: bytes.min(Self::BLOCK_BYTES),
            ..ChangeBlocks::default()
        }
    }

    /// No changes, and blocks sealed at this one's size (and given the
    /// room its last block took).
    pub fn empty_like(&self) -> ChangeBlocks {
        ChangeBlocks {
            last_len: self.last_len,
            ..ChangeBlocks::with_block_bytes(self.block_bytes)
        }
    }

    pub fn from_changes(changes: &[Change]) -> ChangeBlocks {
        let mut b = ChangeBlocks::default();
        for c in changes {
            b.push(c.log_time, &c.key, c.before.as_deref(), c.after.as_deref());
        }
        b
    }

    /// Appends a change; log times must not decrease.
    pub fn push(&mut self, log_time: u64, key: &[u8], before: Option<&[u8]>, after: Option<&[u8]>) {
        self.push_versions(
            log_time,
            key,
            before.map(|r| (r, None)),
            after.map(|r| (r, None)),
        );
    }

    /// Appends a change whose rows carry the caller's identities of row
    /// versions (two rows with the same identity have the same bytes).
    /// A `before` that is the `after` of the key's last entry in the
    /// current block, by identity, is stored as a reference to it, and its
    /// bytes are not read.
    pub fn push_versions(
        &mut self,
        log_time: u64,
        key: &[u8],
        before: Option<(&[u8], Option<u64>)>,
        after: Option<(&[u8], Option<u64>)>,
    ) {
        assert!(
            self.count == 0 && self.sealed.is_empty() || log_time >= self.last,
            "changes are pushed in log-time order"
        );
        // The most bytes the entry can take (varints of 10 bytes at most).
        let entry = 10
            + 10
            + key.len()
            + 1
            + [before, after]
                .iter()
                .flatten()
                .map(|r| 10 + r.0.len())
                .sum::<usize>();
        let limit = match self.block_bytes {
            0 => Self::BLOCK_BYTES,
            n => n,
        };
        if self.count > 0 && self.current.len() + entry > limit && log_time != self.last {
            self.seal();
        }
        let previous = if self.count == 0 {
            self.current.reserve_exact(self.last_len);
            self.current.push(VERSION);
            // The count, patched in when the block is sealed.
            self.current.extend_from_slice(&[0; COUNT_BYTES]);
            0
        } else {
            self.last
        };
        let hash = key_filter::key_hash(key);
        self.hashes.push(hash);
        let start = self.current.len();
        // The start of the key's last entry in this block, if its after is
        // `before` (the key compared too: hashes can collide).
        let back = before
            .and_then(|(_, id)| id)
            .and_then(|id| {
                let r = self.afters.get(recent_slot(hash))?;
                (r.id == id && r.generation == self.generation).then_some(r.at as usize)
            })
            .filter(|&at| entry_key(&self.current, at) == Some(key));
        let out = &mut self.current;
        put_varint(out, log_time - previous);
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        let shares = |row: &[u8]| row.len() >= 2 + key.len() && &row[2..2 + key.len()] == key;
        let mut flags = 0u8;
        for (row, present, shared) in [(before, 1, 4), (after, 2, 8)] {
            if let Some((r, _)) = row {
                flags |= present;
                if present == 1 && back.is_some() {
                    flags |= BACK;
                } else if shares(r) {
                    flags |= shared;
                }
            }
        }
        out.push(flags);
        if let Some(at) = back {
            put_varint(out, (start - at) as u64);
        }
        let rows = [(before.filter(|_| back.is_none()), 4), (after, 8)];
        for (row, shared) in rows {
            if let Some((r, _)) = row {
                let r = if flags & shared != 0 {
                    // The width stays; the key cells are the key's bytes.
                    out.extend_from_slice(&r[..2]);
                    &r[2 + key.len()..]
                } else {
                    r
                };
                put_varint(out, r.len() as u64);
                out.extend_from_slice(r);
            }
        }
        // A row version's identity names it alone, so an entry needs no
        // removal when its key is deleted: no later before has its id.
        if let Some((_, Some(id))) = after {
            if self.afters.is_empty() {
                self.afters = vec![Recent::default(); RECENT];
                self.generation = 1;
            }
            self.afters[recent_slot(hash)] = Recent {
                id,
                at: start as u32,
                generation: self.generation,
            };
        }
        self.count += 1;
        self.last = log_time;
    }

    fn seal(&mut self) {
        if self.count == 0 {
            return;
        }
        // A fixed-width varint (padded with continuation bytes), so the
        // count can be written after the entries.
        let mut count = self.count as u64;
        for b in &mut self.current[1..1 + COUNT_BYTES] {
            *b = (count & 0x7F) as u8 | 0x80;
            count >>= 7;
        }
        self.current[COUNT_BYTES] &= 0x7F;
        let bytes = std::mem::take(&mut self.current);
        self.last_len = bytes.len();
        let filter = key_filter::build(&self.hashes);
        self.hashes.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 blocks: entries of generation 1 would match again.
            self.afters.fill(Recent::default());
            self.generation = 1;
        }
        self.sealed.push(Block {
            last: self.last,
            bytes,
            filter,
        });
        self.count = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.sealed.is_empty()
    }

    /// Puts `later`'s blocks after this one's: their changes all follow
    /// this one's in log time (a run encoded apart, on another thread).
    /// This one's open block is sealed, and `later`'s open block is the
    /// one later changes go on from.
    pub fn append(&mut self, mut later: ChangeBlocks) {
        if later.is_empty() {
            return;
        }
        let first = later.sealed.first().map_or(later.last, |b| b.last);
        assert!(
            self.is_empty() || first > self.last,
            "appended changes must follow in log time"
        );
        self.seal();
        let mut sealed = std::mem::take(&mut self.sealed);
        sealed.append(&mut later.sealed);
        later.sealed = sealed;
        later.block_bytes = self.block_bytes;
        *self = later;
    }

    /// Bytes of the sealed blocks not yet taken.
    pub fn sealed_bytes(&self) -> usize {
        self.sealed
            .iter()
            .map(|b| b.bytes.len() + b.filter.len())
            .sum()
    }

    /// Takes the sealed blocks out, in log-time order; the open block
    /// stays, and later changes go on from it.
    pub fn take_sealed(&mut self) -> Vec<Block> {
        std::mem::take(&mut self.sealed)
    }

    /// The blocks, in log-time order.
    pub fn into_blocks(mut self) -> Vec<Block> {
        self.seal();
        self.sealed
    }

    /// The blocks without consuming them (sealing the open one).
    pub fn blocks(&mut self) -> &[Block] {
        self.seal();
        &self.sealed
    }
}

const VERSION: u8 = 3;
/// What a damaged block is called in errors.
const WHAT: &str = "change block";
/// The version before back references, still read.
const VERSION_2: u8 = 2;
/// Entry flag: the before is a back reference.
const BACK: u8 = 16;

/// The key of the entry that starts at `at` in a block being written.
fn entry_key(block: &[u8], at: usize) -> Option<&[u8]> {
    let mut r = Reader {
        b: block,
        at,
        what: WHAT,
    };
    r.varint().ok()?;
    let n = r.len().ok()?;
    r.bytes(n).ok()
}
/// Bytes of a block's entry count (a varint padded to this width).
const COUNT_BYTES: usize = 5;

pub fn decode_changes(b: &[u8]) -> Result<Vec<Change>, StoreError> {
    let mut out = Vec::new();
    scan(b, &mut |e| {
        out.push(e.to_change());
        true
    })?;
    Ok(out)
}

/// The first change to `key` after `after` in block `b`, if any; other
/// entries are passed over without being copied.
pub fn find_change(b: &[u8], key: &[u8], after: u64) -> Result<Option<Change>, StoreError> {
    let mut found = None;
    scan(b, &mut |e| {
        if e.log_time > after && e.key == key {
            found = Some(e.to_change());
            return false;
        }
        true
    })?;
    Ok(found)
}

/// A row as stored: its width and rest, after the key when it shares it.
#[derive(Clone, Copy)]
struct RowRef<'a> {
    head: Option<&'a [u8]>,
    rest: &'a [u8],
}

/// One entry of a block, borrowed.
struct EntryRef<'a> {
    log_time: u64,
    key: &'a [u8],
    before: Option<RowRef<'a>>,
    after: Option<RowRef<'a>>,
}

impl EntryRef<'_> {
    fn to_change(&self) -> Change {
        let row = |r: &RowRef| {
            let mut row = Vec::with_capacity(r.rest.len() + self.key.len() + 2);
            if let Some(head) = r.head {
                row.extend_from_slice(head);
                row.extend_from_slice(self.key);
            }
            row.extend_from_slice(r.rest);
            row
        };
        Change {
            log_time: self.log_time,
            key: self.key.to_vec(),
            before: self.before.as_ref().map(row),
            after: self.after.as_ref().map(row),
        }
    }
}

/// Walks a block's entries in order until `visit` returns false; checks
/// the whole block's framing when it walks to the end.
fn scan<'a>(b: &'a [u8], visit: &mut dyn FnMut(&EntryRef<'a>) -> bool) -> Result<(), StoreError> {
    let mut r = Reader::new(b, WHAT);
    let version = r.bytes(1)?[0];
    let allowed = match version {
        VERSION => 0x1F,
        VERSION_2 => 0x0F,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "change block has version {version}; this build reads versions {VERSION_2} and {VERSION}"
            )));
        }
    };
    let count = r.varint()?;
    let mut log_time = 0u64;
    for _ in 0..count {
        let start = r.at;
        let entry = parse_entry(&mut r, allowed)?;
        log_time = log_time
            .checked_add(entry.delta)
            .ok_or_else(|| StoreError::Corrupt("change block log time overflows".into()))?;
        let before = match entry.before {
            Before::Row(row) => row,
            Before::Back(back) => Some(referenced_after(b, start, back, entry.key, allowed)?),
        };
        let entry = EntryRef {
            log_time,
            key: entry.key,
            before,
            after: entry.after,
        };
        if !visit(&entry) {
            return Ok(());
        }
    }
    if r.at != b.len() {
        return Err(StoreError::Corrupt(format!(
            "change block has {} trailing bytes",
            b.len() - r.at
        )));
    }
    Ok(())
}

/// An entry as it is stored.
struct RawEntry<'a> {
    delta: u64,
    key: &'a [u8],
    before: Before<'a>,
    after: Option<RowRef<'a>>,
}

enum Before<'a> {
    Row(Option<RowRef<'a>>),
    /// The after of the entry this many bytes before this one's start.
    Back(usize),
}

fn parse_entry<'a>(r: &mut Reader<'a>, allowed: u8) -> Result<RawEntry<'a>, StoreError> {
    let delta = r.varint()?;
    let key_len = r.len()?;
    let key = r.bytes(key_len)?;
    let flags = r.bytes(1)?[0];
    if flags & !allowed != 0 || flags & BACK != 0 && flags & 0x05 != 0x01 {
        return Err(StoreError::Corrupt(format!(
            "bad flags {flags:#x} in change block"
        )));
    }
    let row =
        |r: &mut Reader<'a>, present: u8, shared: u8| -> Result<Option<RowRef<'a>>, StoreError> {
            if flags & present == 0 {
                return Ok(None);
            }
            let head = if flags & shared != 0 {
                Some(r.bytes(2)?)
            } else {
                None
            };
            let n = r.len()?;
            Ok(Some(RowRef {
                head,
                rest: r.bytes(n)?,
            }))
        };
    let before = if flags & BACK != 0 {
        Before::Back(r.len()?)
    } else {
        Before::Row(row(r, 1, 4)?)
    };
    let after = row(r, 2, 8)?;
    Ok(RawEntry {
        delta,
        key,
        before,
        after,
    })
}

/// The after of the entry `back` bytes before `start`, which must be an
/// earlier entry of `key` with an after.
fn referenced_after<'a>(
    b: &'a [u8],
    start: usize,
    back: usize,
    key: &[u8],
    allowed: u8,
) -> Result<RowRef<'a>, StoreError> {
    let bad = || {
        StoreError::Corrupt(format!(
            "bad back reference {back} at byte {start} of a change block"
        ))
    };
    // The first entry starts after the version and the count.
    let at = start
        .checked_sub(back)
        .filter(|&at| back > 0 && at > COUNT_BYTES)
        .ok_or_else(bad)?;
    let entry = parse_entry(&mut Reader { b, at, what: WHAT }, allowed)?;
    match entry.after {
        Some(after) if entry.key == key => Ok(after),
        _ => Err(bad()),
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
        let b = &blocks[0].bytes;
        assert_eq!(decode_changes(b).unwrap(), changes);
        for cut in 0..b.len() {
            assert!(decode_changes(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rows_that_start_with_their_key_store_it_once() {
        let key = b"key-0042".to_vec();
        let row = |v: u8| {
            let mut r = vec![3, 0];
            r.extend_from_slice(&key);
            r.extend_from_slice(&[v; 9]);
            r
        };
        let changes = vec![
            Change {
                log_time: 1 << 40,
                key: key.clone(),
                before: Some(row(1)),
                after: Some(row(2)),
            },
            Change {
                log_time: (1 << 40) + 3,
                key: key.clone(),
                before: Some(row(2)),
                // Not starting with the key: stored whole.
                after: Some(b"other".to_vec()),
            },
        ];
        let blocks = ChangeBlocks::from_changes(&changes).into_blocks();
        let b = &blocks[0].bytes;
        assert_eq!(decode_changes(b).unwrap(), changes);
        // The key is stored once per entry, not again in its rows.
        let copies = b
            .windows(key.len())
            .filter(|w| *w == key.as_slice())
            .count();
        assert_eq!(copies, 2);
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
        for block in &blocks {
            let part = decode_changes(&block.bytes).unwrap();
            assert_eq!(part.last().unwrap().log_time, block.last);
            for c in &part {
                assert!(key_filter::may_contain(
                    &block.filter,
                    key_filter::key_hash(&c.key)
                ));
            }
            assert!(part.first().unwrap().log_time > previous_last);
            previous_last = block.last;
            decoded.extend(part);
        }
        assert_eq!(decoded, changes);
        assert!(ChangeBlocks::default().into_blocks().is_empty());
    }

    #[test]
    fn blocks_stay_within_their_size_when_log_times_allow() {
        // One change per log time, as a record folded into a group gives:
        // every block fits its pages, and all but the last are nearly
        // full.
        let changes: Vec<Change> = (0..20_000u64)
            .map(|i| Change {
                log_time: 10 + i,
                key: format!("account-{i}").into_bytes(),
                before: Some(vec![1u8; (i % 90) as usize]),
                after: Some(vec![2u8; 40]),
            })
            .collect();
        let blocks = ChangeBlocks::from_changes(&changes).into_blocks();
        assert!(blocks.len() > 3, "{} blocks", blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            assert!(
                b.bytes.len() <= ChangeBlocks::BLOCK_BYTES,
                "block {i}: {}",
                b.bytes.len()
            );
            if i + 1 < blocks.len() {
                assert!(
                    b.bytes.len() > ChangeBlocks::BLOCK_BYTES - 400,
                    "block {i}: {}",
                    b.bytes.len()
                );
            }
        }
    }

    #[test]
    fn a_block_after_a_full_one_is_given_its_room_at_once() {
        // A replay fills block after block: each should be allocated
        // once, not grown by doubling (a copy of up to a block each time).
        let change = |i: u64| Change {
            log_time: 10 + i,
            key: format!("account-{i}").into_bytes(),
            before: None,
            after: Some(vec![2u8; 40]),
        };
        let mut b = ChangeBlocks::default();
        let mut i = 0;
        while b.sealed.is_empty() {
            let c = change(i);
            b.push(c.log_time, &c.key, None, c.after.as_deref());
            i += 1;
        }
        let full = b.sealed[0].bytes.len();
        assert!(
            b.current.capacity() >= full,
            "{} < {full}",
            b.current.capacity()
        );
        // And so is the first block of a run encoded beside it.
        let mut tail = b.empty_like();
        let c = change(i);
        tail.push(c.log_time, &c.key, None, c.after.as_deref());
        assert!(
            tail.current.capacity() >= full,
            "{} < {full}",
            tail.current.capacity()
        );
        // A live step's first block starts small.
        let mut live = ChangeBlocks::default();
        live.push(1, b"k", None, Some(b"v"));
        assert!(
            live.current.capacity() < 1024,
            "{}",
            live.current.capacity()
        );
    }

    /// Changes of a few keys, each before the key's previous after; the
    /// rows' identities are their version numbers.
    /// Each change's (before, after) row identities.
    type Ids = Vec<(Option<u64>, Option<u64>)>;

    fn versioned() -> (Vec<Change>, Ids) {
        versions(5, 400)
    }

    /// `n` changes of `keys` keys.
    fn versions(keys: u64, n: u64) -> (Vec<Change>, Ids) {
        let mut changes = Vec::new();
        let mut ids = Vec::new();
        let mut current: Vec<Option<(Vec<u8>, u64)>> = vec![None; keys as usize];
        for i in 0..n {
            let k = (i * 7 % keys) as usize;
            let key = format!("key-{k}").into_bytes();
            let before = current[k].clone();
            let after = (i % 11 != 3).then(|| {
                let mut row = vec![2, 0];
                row.extend_from_slice(&key);
                row.extend_from_slice(&i.to_le_bytes());
                (row, 1000 + i)
            });
            changes.push(Change {
                log_time: 100 + i,
                key,
                before: before.as_ref().map(|b| b.0.clone()),
                after: after.as_ref().map(|a| a.0.clone()),
            });
            ids.push((before.map(|b| b.1), after.as_ref().map(|a| a.1)));
            current[k] = after;
        }
        (changes, ids)
    }

    fn push_all(changes: &[Change], ids: &[(Option<u64>, Option<u64>)]) -> Vec<u8> {
        let blocks = push_blocks(changes, ids);
        assert_eq!(blocks.len(), 1);
        blocks.into_iter().next().unwrap().bytes
    }

    fn push_blocks(changes: &[Change], ids: &[(Option<u64>, Option<u64>)]) -> Vec<Block> {
        let mut blocks = ChangeBlocks::default();
        for (c, (b, a)) in changes.iter().zip(ids) {
            blocks.push_versions(
                c.log_time,
                &c.key,
                c.before.as_deref().map(|r| (r, *b)),
                c.after.as_deref().map(|r| (r, *a)),
            );
        }
        blocks.into_blocks()
    }

    #[test]
    fn references_hold_across_blocks_and_evictions() {
        // More keys than the table of recent afters, over many blocks.
        let (changes, ids) = versions(9_001, 60_000);
        let blocks = push_blocks(&changes, &ids);
        assert!(blocks.len() > 3, "{} blocks", blocks.len());
        let decoded: Vec<Change> = blocks
            .iter()
            .flat_map(|b| decode_changes(&b.bytes).unwrap())
            .collect();
        assert_eq!(decoded, changes);
        let plain: usize = ChangeBlocks::from_changes(&changes)
            .into_blocks()
            .iter()
            .map(|b| b.bytes.len())
            .sum();
        let with_refs: usize = blocks.iter().map(|b| b.bytes.len()).sum();
        assert!(
            with_refs < plain,
            "{with_refs} bytes with references, {plain} without"
        );
    }

    #[test]
    fn a_row_before_that_was_the_keys_last_after_is_stored_once() {
        let (changes, ids) = versioned();
        let with_refs = push_all(&changes, &ids);
        let plain = ChangeBlocks::from_changes(&changes)
            .into_blocks()
            .remove(0)
            .bytes;
        assert_eq!(decode_changes(&with_refs).unwrap(), changes);
        assert!(
            with_refs.len() * 10 < plain.len() * 8,
            "{} bytes with references, {} without",
            with_refs.len(),
            plain.len()
        );
        // Each change found by key after a time, through its reference.
        for (i, c) in changes.iter().enumerate().skip(1) {
            let found = find_change(&with_refs, &c.key, c.log_time - 1).unwrap();
            assert_eq!(found.as_ref(), Some(c), "change {i}");
        }
        // Identities that do not match store the row itself.
        let wrong: Vec<_> = ids.iter().map(|(b, a)| (b.map(|b| b + 1), *a)).collect();
        assert_eq!(push_all(&changes, &wrong).len(), plain.len());
        for cut in 0..with_refs.len() {
            assert!(decode_changes(&with_refs[..cut]).is_err(), "cut at {cut}");
        }
        // Damage anywhere is an error or a wrong answer, never a panic.
        for at in 0..with_refs.len() {
            for bit in [0x01, 0x80] {
                let mut b = with_refs.clone();
                b[at] ^= bit;
                let _ = decode_changes(&b);
                let _ = find_change(&b, b"key-3", 0);
            }
        }
    }

    #[test]
    fn version_2_blocks_are_still_read() {
        let (changes, _) = versioned();
        let mut b = ChangeBlocks::from_changes(&changes)
            .into_blocks()
            .remove(0)
            .bytes;
        assert_eq!(b[0], VERSION);
        // Without references, version 3 is version 2.
        b[0] = VERSION_2;
        assert_eq!(decode_changes(&b).unwrap(), changes);
        // A reference in a version 2 block is damage.
        let (changes, ids) = versioned();
        let mut b = push_all(&changes, &ids);
        b[0] = VERSION_2;
        assert!(decode_changes(&b).is_err());
    }
}
