//! A view's rows, or its operators' state, as sorted blocks of entries in
//! one redb table.
//!
//! Each table entry is a *block*: the entries of a run of keys, in key
//! order, keyed by the view (8 bytes, big-endian) and the block's first
//! key. Blocks of different views never mix, and a view's blocks cover
//! disjoint key ranges: a key lives in the last block whose first key is
//! at or before it.
//!
//! Why not one table entry per key: a replay's last commit writes every
//! row and group of the view, and redb spends about half a microsecond
//! on each insert (a walk from the root, a page lookup per level). Blocks
//! of about [`FILL`] bytes, one redb page each, take ~100 entries per
//! insert. A live step that changes a few keys rewrites one block each,
//! which is what redb does to the leaf page of an entry anyway.
//!
//! ```text
//! block  u8 version (1), then entries in strictly increasing key order:
//! entry  varint key_len, key, varint value_len, value
//! ```
//!
//! Writes merge sorted puts into the blocks they fall in, streaming: the
//! merged entries are cut into blocks of at most [`FILL`] bytes, the last
//! two of a run split evenly (so one insert into a full block makes two
//! half-full ones, not a full one and a crumb), and a run that would end
//! in a block below [`MIN`] takes in the next block too.

use crate::codec::{Reader, put_varint};
use crate::{Puts, StoreError, ViewId};
use redb::{ReadableTable, Table};

/// Blocks are cut at this many bytes (one 4 KiB redb page holds one, its
/// key and the page's header).
pub(crate) const FILL: usize = 3_584;

/// A run whose last block would be smaller takes in the next block.
pub(crate) const MIN: usize = 896;

const VERSION: u8 = 1;

const WHAT: &str = "packed block";

type Bytes = &'static [u8];

/// A key and its value, in a block.
type Entry<'a> = (&'a [u8], &'a [u8]);

/// A block's table key and bytes.
type Found = Option<(Vec<u8>, Vec<u8>)>;

/// The table key of `view`'s block whose first key is `first`.
fn block_key(view: ViewId, first: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + first.len());
    k.extend_from_slice(&view.to_be_bytes());
    k.extend_from_slice(first);
    k
}

/// Table keys at or above this are past `view`'s blocks (`None`: none are).
fn view_end(view: ViewId) -> Option<Vec<u8>> {
    view.checked_add(1).map(|v| v.to_be_bytes().to_vec())
}

/// The entries of a block, in key order.
pub(crate) fn entries(block: &[u8]) -> Result<Entries<'_>, StoreError> {
    let mut r = Reader::new(block, WHAT);
    let version = r.bytes(1)?[0];
    if version != VERSION {
        return Err(StoreError::Corrupt(format!(
            "{WHAT} has version {version}; this build reads version {VERSION}"
        )));
    }
    Ok(Entries { r })
}

pub(crate) struct Entries<'a> {
    r: Reader<'a>,
}

impl<'a> Entries<'a> {
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, StoreError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let n = self.r.len()?;
        let key = self.r.bytes(n)?;
        let n = self.r.len()?;
        let value = self.r.bytes(n)?;
        Ok(Some((key, value)))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// The table key and bytes of the block that holds `key` if anything
/// does: the last whose first key is at or before it.
fn floor(
    t: &impl ReadableTable<Bytes, Bytes>,
    view: ViewId,
    key: &[u8],
) -> Result<Found, StoreError> {
    let start = view.to_be_bytes();
    let at = block_key(view, key);
    let found = t.range(start.as_slice()..=at.as_slice())?.next_back();
    Ok(match found {
        Some(entry) => {
            let (k, v) = entry?;
            Some((k.value().to_vec(), v.value().to_vec()))
        }
        None => None,
    })
}

/// The table key of `view`'s first block, or of the first after `after`.
fn next_block(
    t: &impl ReadableTable<Bytes, Bytes>,
    view: ViewId,
    after: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, StoreError> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let start = view.to_be_bytes();
    let lower = match after {
        Some(a) => Excluded(a),
        None => Included(start.as_slice()),
    };
    let end = view_end(view);
    let upper = match &end {
        Some(e) => Excluded(e.as_slice()),
        None => Unbounded,
    };
    let found = t.range::<&[u8]>((lower, upper))?.next();
    Ok(match found {
        Some(entry) => Some(entry?.0.value().to_vec()),
        None => None,
    })
}

/// The value of `key` in `view`, if it has one.
pub(crate) fn get(
    t: &impl ReadableTable<Bytes, Bytes>,
    view: ViewId,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some((_, block)) = floor(t, view, key)? else {
        return Ok(None);
    };
    for entry in entries(&block)? {
        let (k, v) = entry?;
        match k.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(Some(v.to_vec())),
            std::cmp::Ordering::Greater => break,
        }
    }
    Ok(None)
}

/// Every entry of `view` with a key at or after `from`, in key order;
/// `visit` returns false to stop.
pub(crate) fn scan_from(
    t: &impl ReadableTable<Bytes, Bytes>,
    view: ViewId,
    from: &[u8],
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let start = match floor(t, view, from)? {
        Some((k, _)) => k,
        None => view.to_be_bytes().to_vec(),
    };
    let end = view_end(view);
    let range = match &end {
        Some(end) => t.range(start.as_slice()..end.as_slice())?,
        None => t.range(start.as_slice()..)?,
    };
    for block in range {
        let (_, block) = block?;
        for entry in entries(block.value())? {
            let (k, v) = entry?;
            if k >= from && !visit(k, v) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Removes every block of `view`.
pub(crate) fn drop_view(t: &mut Table<Bytes, Bytes>, view: ViewId) -> Result<(), StoreError> {
    let start = view.to_be_bytes();
    match view_end(view) {
        Some(end) => t.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?,
        None => t.retain_in(start.as_slice().., |_, _| false)?,
    }
    Ok(())
}

/// Upserts (`Some`) and deletes (`None`) entries of `view`, applied in the
/// order given: of two puts of one key, the later wins. Fastest in key
/// order; puts that come out of order are set aside and applied after.
///
/// A block touched costs one lookup, of the block itself: which puts go
/// in it is known without looking up the block after it (see [`Bound`]).
pub(crate) fn put(
    t: &mut Table<Bytes, Bytes>,
    view: ViewId,
    puts: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>,
) -> Result<(), StoreError> {
    let mut puts = Ascending {
        inner: puts,
        last: None,
        late: Puts::default(),
    };
    let mut w = Writer::new(view);
    let mut next = puts.next();
    // The block the next put falls in, when merging found it already.
    let mut found: Option<Found> = None;
    while let Some((key, _)) = next {
        // The block `key` falls in, or the view's first if `key` precedes
        // them all (or nothing, for a view without blocks).
        let floor = match found.take() {
            Some(f) => f,
            None => floor(t, view, key)?,
        };
        let mut cur = match floor {
            some @ Some(_) => some,
            None => match next_block(t, view, None)? {
                Some(k) => {
                    let b = block_bytes(t, &k)?;
                    Some((k, b))
                }
                None => None,
            },
        };
        loop {
            let (block, mut bound) = match cur.take() {
                Some((k, b)) => {
                    // Replaced in place if a new block starts where it did
                    // (a step that changes a few keys of a block), else
                    // removed at the end of the run.
                    w.stale.push(k.clone());
                    (b, Bound::Unknown(k))
                }
                // No blocks: every put goes in.
                None => (vec![VERSION], Bound::Known(None)),
            };
            found = merge(&block, &mut next, &mut puts, &mut bound, &mut w, t)?;
            // Go on into the next block if this run would end in a small
            // block (the only time the block after it is read here; a
            // put past this block starts the next run from the block its
            // own lookup found).
            if w.pending() >= MIN {
                break;
            }
            let hi = match bound {
                Bound::Known(hi) => hi,
                // After the blocks this run wrote, not the first of them.
                Bound::Unknown(k) => next_block(t, view, Some(run_end(&k, w.written())))?,
            };
            let Some(h) = hi else { break };
            let b = block_bytes(t, &h)?;
            cur = Some((h, b));
        }
        w.finish(t)?;
    }
    if !puts.late.is_empty() {
        let mut late = std::mem::take(&mut puts.late);
        late.sort_by_key();
        put(t, view, &mut late.iter())?;
    }
    Ok(())
}

fn block_bytes(t: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    match t.get(key)? {
        Some(v) => Ok(v.value().to_vec()),
        None => Err(StoreError::Corrupt(format!(
            "{WHAT} listed by its table cannot be read"
        ))),
    }
}

/// Where the puts of a block being merged end: below the first key of
/// the block after it. A put at or below one of the block's own keys is
/// in it, so the next block is looked up only for a put past the
/// block's last key, and then by that put's own lookup, which the next
/// run starts from if the put falls elsewhere.
enum Bound {
    /// Not looked up yet: the block's table key.
    Unknown(Vec<u8>),
    /// The table key of the next block (`None`: there is none).
    Known(Option<Vec<u8>>),
}

impl Bound {
    /// Whether the put of `key`, past every entry of the block, goes in
    /// it; if not, the block it falls in (found to tell), in `found`.
    ///
    /// `written` is the table key of the last block the run wrote: the
    /// blocks from the merged block's key to it are the run's own (cut
    /// from the block and its puts), not the block after it.
    fn admits(
        &mut self,
        key: &[u8],
        t: &impl ReadableTable<Bytes, Bytes>,
        view: ViewId,
        written: Option<&[u8]>,
        found: &mut Option<Found>,
    ) -> Result<bool, StoreError> {
        let hi = match self {
            Bound::Known(hi) => hi,
            Bound::Unknown(k) => {
                let own = run_end(k, written);
                let f = floor(t, view, key)?;
                if f.as_ref().is_some_and(|(fk, _)| fk.as_slice() > own) {
                    *found = Some(f);
                    return Ok(false);
                }
                // Past the block's last key and still in it: the block
                // after it (and the run's) bounds this put and those that
                // follow.
                let next = next_block(t, view, Some(own))?;
                *self = Bound::Known(next);
                return self.admits(key, t, view, written, found);
            }
        };
        Ok(hi.as_deref().is_none_or(|h| key < &h[8..]))
    }
}

/// The last table key a run that started at block `k` may have written
/// (`written`: the last block it wrote): blocks up to it are the run's.
fn run_end<'a>(k: &'a [u8], written: Option<&'a [u8]>) -> &'a [u8] {
    written.map_or(k, |w| w.max(k))
}

/// Merges `block`'s entries with its puts (those below `bound`) into
/// `w`. Returns the block the next put falls in if it was looked up.
fn merge<'k, 'v>(
    block: &[u8],
    next: &mut Option<(&'k [u8], Option<&'v [u8]>)>,
    puts: &mut Ascending<'_, 'k, 'v>,
    bound: &mut Bound,
    w: &mut Writer,
    t: &mut Table<Bytes, Bytes>,
) -> Result<Option<Found>, StoreError> {
    let mut old = entries(block)?;
    let mut o = old.next_entry()?;
    let mut found = None;
    loop {
        let put = match (*next, o) {
            (None, _) => None,
            // At or below one of the block's keys: in the block.
            (Some((pk, _)), Some((ok, _))) if pk <= ok => *next,
            // The block's entries below it go first.
            (Some(_), Some(_)) => None,
            (Some((pk, _)), None) => {
                if found.is_none() && bound.admits(pk, t, w.view, w.written(), &mut found)? {
                    *next
                } else {
                    None
                }
            }
        };
        match (o, put) {
            (None, None) => return Ok(found),
            (Some((ok, ov)), None) => {
                w.push(ok, ov, t)?;
                o = old.next_entry()?;
            }
            (_, Some((pk, mut pv))) => {
                if o.is_some_and(|(ok, _)| ok == pk) {
                    o = old.next_entry()?;
                }
                // Of equal keys, the last put wins.
                *next = puts.next();
                while let Some((k, v)) = *next {
                    if k != pk {
                        break;
                    }
                    pv = v;
                    *next = puts.next();
                }
                if let Some(v) = pv {
                    w.push(pk, v, t)?;
                }
            }
        }
    }
}

/// The puts in ascending key order (equal keys allowed); one that comes
/// below the previous is kept in `late`.
struct Ascending<'i, 'k, 'v> {
    inner: &'i mut dyn Iterator<Item = (&'k [u8], Option<&'v [u8]>)>,
    last: Option<&'k [u8]>,
    late: Puts,
}

impl<'k, 'v> Ascending<'_, 'k, 'v> {
    fn next(&mut self) -> Option<(&'k [u8], Option<&'v [u8]>)> {
        for (k, v) in &mut *self.inner {
            if self.last.is_some_and(|l| k < l) {
                self.late.push(k, v);
                continue;
            }
            self.last = Some(k);
            return Some((k, v));
        }
        None
    }
}

/// Cuts a run of entries, given in key order, into blocks.
struct Writer {
    view: ViewId,
    /// The table keys of the blocks the run replaces: each goes when the
    /// run ends, unless a new block took its key (and so its place).
    stale: Vec<Vec<u8>>,
    /// The table key of the last block the run wrote.
    written: Option<Vec<u8>>,
    /// Encoded entries not yet in a block.
    buf: Vec<u8>,
    /// Where each entry in `buf` starts, and its key's span.
    starts: Vec<(usize, usize, usize)>,
    block: Vec<u8>,
}

impl Writer {
    fn new(view: ViewId) -> Writer {
        Writer {
            view,
            stale: Vec::new(),
            written: None,
            buf: Vec::new(),
            starts: Vec::new(),
            block: Vec::new(),
        }
    }

    /// The table key of the last block this run wrote.
    fn written(&self) -> Option<&[u8]> {
        self.written.as_deref()
    }

    /// Bytes of entries not yet written.
    fn pending(&self) -> usize {
        self.buf.len()
    }

    fn push(
        &mut self,
        key: &[u8],
        value: &[u8],
        t: &mut Table<Bytes, Bytes>,
    ) -> Result<(), StoreError> {
        let start = self.buf.len();
        put_varint(&mut self.buf, key.len() as u64);
        let key_at = self.buf.len();
        self.buf.extend_from_slice(key);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self.starts.push((start, key_at, key.len()));
        // Keep up to two blocks' worth, so that the run's last two can be
        // split evenly.
        if self.buf.len() > 2 * FILL {
            let cut = self.cut_at(FILL);
            self.write(cut, t)?;
        }
        Ok(())
    }

    /// The number of leading entries that fill at most `bytes` (at least one).
    fn cut_at(&self, bytes: usize) -> usize {
        let n = self.starts.partition_point(|&(s, _, _)| s < bytes);
        // Entry n-1 starts below `bytes`; it fits if the next starts at or below.
        let end = |i: usize| self.starts.get(i).map_or(self.buf.len(), |s| s.0);
        if n > 1 && end(n) > bytes {
            n - 1
        } else {
            n.max(1)
        }
    }

    /// Writes the first `n` entries as a block.
    fn write(&mut self, n: usize, t: &mut Table<Bytes, Bytes>) -> Result<(), StoreError> {
        let end = self.starts.get(n).map_or(self.buf.len(), |s| s.0);
        let (_, key_at, key_len) = self.starts[0];
        let key = block_key(self.view, &self.buf[key_at..key_at + key_len]);
        self.block.clear();
        self.block.push(VERSION);
        self.block.extend_from_slice(&self.buf[..end]);
        t.insert(key.as_slice(), self.block.as_slice())?;
        self.stale.retain(|k| *k != key);
        self.written = Some(key);
        self.buf.drain(..end);
        self.starts.drain(..n);
        for s in &mut self.starts {
            s.0 -= end;
            s.1 -= end;
        }
        Ok(())
    }

    /// Writes what is left: one block, or (the last two) two of about
    /// equal size.
    fn finish(&mut self, t: &mut Table<Bytes, Bytes>) -> Result<(), StoreError> {
        while self.buf.len() > FILL {
            let half = self.cut_at(self.buf.len() / 2);
            let rest = self.buf.len() - self.starts.get(half).map_or(self.buf.len(), |s| s.0);
            // A big entry can leave more than a block after the half.
            let n = if rest > FILL { self.cut_at(FILL) } else { half };
            self.write(n, t)?;
        }
        if !self.starts.is_empty() {
            let n = self.starts.len();
            self.write(n, t)?;
        }
        for k in self.stale.drain(..) {
            t.remove(k.as_slice())?;
        }
        self.written = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use redb::{Database, ReadableDatabase, TableDefinition, backends::InMemoryBackend};
    use std::collections::BTreeMap;

    const T: TableDefinition<Bytes, Bytes> = TableDefinition::new("blocks");

    fn db() -> Database {
        Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap()
    }

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    fn apply(db: &Database, view: ViewId, puts: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            let mut it = puts.iter().map(|(k, v)| (k.as_slice(), v.as_deref()));
            put(&mut t, view, &mut it).unwrap();
        }
        txn.commit().unwrap();
    }

    fn scan(db: &Database, view: ViewId, from: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        let mut out = Vec::new();
        scan_from(&t, view, from, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        out
    }

    /// Every block: in the view's key range, non-empty, its entries in
    /// strictly increasing order starting at its first key, above the
    /// previous block's, within `FILL` unless it holds one entry.
    fn check_blocks(db: &Database, view: ViewId) -> usize {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        let mut last: Option<Vec<u8>> = None;
        let mut blocks = 0;
        for entry in t.iter().unwrap() {
            let (k, v) = entry.unwrap();
            let (k, v) = (k.value(), v.value());
            if k[..8] != view.to_be_bytes() {
                continue;
            }
            blocks += 1;
            let es: Vec<_> = entries(v).unwrap().map(Result::unwrap).collect();
            assert!(!es.is_empty(), "an empty block");
            assert_eq!(es[0].0, &k[8..], "a block is keyed by its first key");
            assert!(
                v.len() <= FILL + 1 || es.len() == 1,
                "block of {} bytes",
                v.len()
            );
            for (k, _) in &es {
                assert!(last.as_deref().is_none_or(|l| l < *k), "keys out of order");
                last = Some(k.to_vec());
            }
        }
        blocks
    }

    #[test]
    fn puts_and_reads_equal_a_sorted_map() {
        let (seed, mut rng) = crate::test_rng::seeded();
        let db = db();
        let mut models = [Model::new(), Model::new()];
        for round in 0..120 {
            let view = rng.random_range(0..2u64);
            let space = [50u32, 2_000, 100_000][rng.random_range(0..3)];
            let n = [1usize, 5, 200, 2_000][rng.random_range(0..4)];
            let mut puts = Vec::new();
            for _ in 0..n {
                let key = format!("k{:06}", rng.random_range(0..space)).into_bytes();
                let value = if rng.random_bool(0.2) {
                    None
                } else {
                    // Now and then bigger than a block.
                    let len = if rng.random_bool(0.01) {
                        rng.random_range(FILL..3 * FILL)
                    } else {
                        rng.random_range(0..60)
                    };
                    Some(vec![rng.random::<u8>(); len])
                };
                puts.push((key, value));
            }
            if rng.random_bool(0.7) {
                // Mostly in key order, as commits give them (stable: the
                // last of equal keys stays last).
                puts.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let model = &mut models[view as usize];
            for (k, v) in &puts {
                match v {
                    Some(v) => model.insert(k.clone(), v.clone()),
                    None => model.remove(k),
                };
            }
            apply(&db, view, &puts);
            for v in 0..2u64 {
                let want: Vec<_> = models[v as usize]
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(
                    scan(&db, v, &[]),
                    want,
                    "seed {seed} round {round} view {v}"
                );
                check_blocks(&db, v);
            }
            let model = &models[view as usize];
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(T).unwrap();
            for _ in 0..20 {
                let key = format!("k{:06}", rng.random_range(0..space)).into_bytes();
                assert_eq!(
                    get(&t, view, &key).unwrap(),
                    model.get(&key).cloned(),
                    "seed {seed} round {round}"
                );
            }
            let from = format!("k{:03}", rng.random_range(0..1000)).into_bytes();
            let want: Vec<_> = model
                .range(from.clone()..)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            drop(t);
            assert_eq!(scan(&db, view, &from), want, "seed {seed} round {round}");
        }
    }

    #[test]
    fn blocks_fill_up_and_split_evenly() {
        let db = db();
        let value = vec![7u8; 30];
        let puts: Vec<_> = (0..10_000)
            .map(|i| (format!("key{i:06}").into_bytes(), Some(value.clone())))
            .collect();
        apply(&db, 3, &puts);
        // 9 + 30 + 2 bytes an entry, 87 to a block.
        let blocks = check_blocks(&db, 3);
        assert!((115..=116).contains(&blocks), "{blocks} blocks");
        // One more key in a full block splits it into two about half
        // full, and touches nothing else.
        apply(&db, 3, &[(b"key000000a".to_vec(), Some(value.clone()))]);
        let split = check_blocks(&db, 3);
        assert_eq!(split, blocks + 1);
        // Deleting every key of a block (261..=347) and most of the next
        // one's (348..=434) leaves 15 entries, too few for a block: they
        // go into the block after, which then splits evenly. Three blocks
        // become two.
        let deletes: Vec<_> = (261..420)
            .map(|i| (format!("key{i:06}").into_bytes(), None))
            .collect();
        apply(&db, 3, &deletes);
        let after = check_blocks(&db, 3);
        assert_eq!(after, split - 1, "blocks after deleting 159 keys");
        assert_eq!(scan(&db, 3, &[]).len(), 10_000 + 1 - 159);
        // Dropping the view leaves the others.
        apply(&db, 4, &puts[..10]);
        let txn = db.begin_write().unwrap();
        drop_view(&mut txn.open_table(T).unwrap(), 3).unwrap();
        txn.commit().unwrap();
        assert!(scan(&db, 3, &[]).is_empty());
        assert_eq!(scan(&db, 4, &[]).len(), 10);
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let db = db();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            let mut key = 5u64.to_be_bytes().to_vec();
            key.extend_from_slice(b"a");
            t.insert(key.as_slice(), [VERSION, 1, b'a', 9, 1].as_slice())
                .unwrap();
            let mut key = 6u64.to_be_bytes().to_vec();
            key.extend_from_slice(b"a");
            t.insert(key.as_slice(), [9u8, 1, b'a', 0].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(T).unwrap();
        let e = get(&t, 5, b"a").unwrap_err().to_string();
        assert!(e.contains("packed block cut short"), "{e}");
        let e = get(&t, 6, b"a").unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }
}
