//! What a view has applied since its last commit, per shard: the changed
//! rows (found by key or by their group's slot) and one change per (key,
//! log time), their bytes in one arena, so applying a change allocates
//! nothing; taken out whole by a commit.

use crate::memory::table_bytes;
use crate::ops::Delta;
use crate::value::encode_cell;
use kappa_store::{Puts, key_head};
use std::hash::BuildHasher;

mod untracked;

use untracked::Untracked;

/// A range of [`Pending::arena`], in 32 bits (a pending change is most
/// of a replay's memory): the arena is committed before it reaches
/// [`ARENA_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Where it starts in its arena: with the arena, its identity.
    pub(crate) fn start(self) -> u32 {
        self.start
    }

    pub(crate) fn new(start: usize, len: usize) -> Span {
        debug_assert!(
            start + len <= u32::MAX as usize,
            "the arena is committed before 4 GiB"
        );
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// A shard's pending rows are committed once its arena holds this much,
/// whatever the memory budget (spans are 32-bit; one batch adds far less
/// than the rest).
pub(crate) const ARENA_LIMIT: usize = 2 << 30;

#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingChange {
    pub(crate) log_time: u64,
    pub(crate) key: Span,
    pub(crate) before: Option<Span>,
    pub(crate) after: Option<Span>,
    /// Known to change the row (`before` and `after` differ), so history
    /// need not compare their bytes; else they may be the same.
    pub(crate) differs: bool,
}

/// A row changed since the last commit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRow {
    pub(crate) key: Span,
    /// Its latest value (`None`: deleted).
    pub(crate) row: Option<Span>,
    /// Its last change, in `Pending::changes`, and that change's log time
    /// (kept here: the change itself is rarely in cache).
    last: usize,
    last_time: u64,
    /// Its group in the view's last aggregate ([`NO_GROUP`]: found by key).
    group: u32,
}

pub(crate) const NO_GROUP: u32 = u32::MAX;

/// What a view has applied since its last commit. Keys and rows live in
/// one arena, so applying a change allocates nothing.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) arena: Vec<u8>,
    /// The rows changed, found by key through `index`.
    rows: Vec<PendingRow>,
    index: hashbrown::HashTable<u32>,
    /// Seeded at random: keys cannot be prepared to collide.
    hasher: foldhash::fast::RandomState,
    /// Or through their group (see [`Delta::groups`]): one plus the row's
    /// number, by group slot; 0 for none.
    by_group: Vec<u32>,
    /// In log-time order; one per (key, log time). Those before it was
    /// last emptied ([`Pending::clear_changes`]) are gone: `staged` of
    /// them, so a row's `last` is `changes[last - staged]`.
    changes: Vec<PendingChange>,
    staged: usize,
    /// Changes at or before this log time are older than the view's
    /// history: their rows are applied, the changes themselves are not
    /// kept ([`Pending::sink_untracked`]). 0 before a catch-up sets it.
    cutoff: u64,
    /// The last log time of a change let go of that way.
    dropped: u64,
    /// The rows changed at `unsure_at`, log time by log time
    /// ([`Pending::sink_untracked`]).
    unsure: Vec<Untracked>,
    unsure_at: u64,
    /// Dead letters.
    pub(crate) state: Puts,
    pub(crate) records: u64,
}

impl Pending {
    /// Empty, for a catch-up whose changes at or before `cutoff` are
    /// older than the view's history.
    pub(crate) fn with_cutoff(cutoff: u64) -> Pending {
        Pending {
            cutoff,
            ..Pending::default()
        }
    }

    /// Heap bytes held, by capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.capacity()
            + self.changes.capacity() * std::mem::size_of::<PendingChange>()
            + self.rows.capacity() * std::mem::size_of::<PendingRow>()
            + table_bytes(self.index.capacity())
            + self.by_group.capacity() * 4
            + self.state.heap_bytes()
    }

    fn put(&mut self, bytes: &[u8]) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Span::new(start, bytes.len())
    }

    fn get(&self, s: Span) -> &[u8] {
        &self.arena[s.range()]
    }

    /// The pending row with `key` (of `group`, if known), if any.
    fn find(&self, group: u32, key: &[u8]) -> Option<u32> {
        if group != NO_GROUP {
            return match self.by_group.get(group as usize) {
                Some(&r) if r > 0 => Some(r - 1),
                _ => None,
            };
        }
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.get(self.rows[i as usize].key) == key)
            .copied()
    }

    /// Starts fetching where the pending row of the group in `slot` (of
    /// the view's last aggregate) is found.
    pub(crate) fn prefetch_index(&self, slot: u32) {
        if let Some(r) = self.by_group.get(slot as usize) {
            crate::memory::prefetch(r);
        }
    }

    /// Starts fetching the pending row of the group in `slot` (of the
    /// view's last aggregate), if it has one, into the cache.
    pub(crate) fn prefetch(&self, slot: u32) {
        if let Some(&r) = self.by_group.get(slot as usize)
            && let Some(row) = self.rows.get((r as usize).wrapping_sub(1))
        {
            crate::memory::prefetch(row);
        }
    }

    fn insert(&mut self, row: PendingRow) {
        let i = self.rows.len() as u32;
        self.rows.push(row);
        if row.group != NO_GROUP {
            let g = row.group as usize;
            if self.by_group.len() <= g {
                self.by_group.resize(g + 1, 0);
            }
            self.by_group[g] = i + 1;
            return;
        }
        let hash = self.hasher.hash_one(self.get(row.key));
        let (rows, arena, hasher) = (&self.rows, &self.arena, &self.hasher);
        self.index.insert_unique(hash, i, |&j| {
            let k = rows[j as usize].key;
            hasher.hash_one(&arena[k.range()])
        });
    }

    /// The changes not yet encoded, with the arena their bytes are in.
    pub(crate) fn changes(&self) -> Changes<'_> {
        Changes {
            arena: &self.arena,
            changes: &self.changes,
        }
    }

    /// How many changes are pending since they were last emptied.
    pub(crate) fn change_count(&self) -> usize {
        self.changes.len()
    }

    /// Empties the changes once they are encoded (their rows stay
    /// pending). Only between batches: a change is merged with later
    /// output only at its own log time, which no later batch has.
    pub(crate) fn clear_changes(&mut self) {
        self.staged += self.changes.len();
        self.changes.clear();
    }

    /// Takes what is pending out for a commit, leaving it empty (with
    /// `spare`'s buffers). Its dead letters go to `state`.
    pub(crate) fn take(&mut self, spare: Part, state: &mut Puts) -> Part {
        for r in &self.rows {
            if r.group != NO_GROUP {
                self.by_group[r.group as usize] = 0;
            }
        }
        self.resolve_unsure();
        self.index.clear();
        self.records = 0;
        self.staged = 0;
        state.append_puts(&std::mem::take(&mut self.state));
        Part {
            arena: std::mem::replace(&mut self.arena, spare.arena),
            rows: std::mem::replace(&mut self.rows, spare.rows),
            changes: std::mem::replace(&mut self.changes, spare.changes),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

/// A shard's changed rows and changes, taken from its [`Pending`].
#[derive(Default)]
pub(crate) struct Part {
    pub(crate) arena: Vec<u8>,
    pub(crate) rows: Vec<PendingRow>,
    pub(crate) changes: Vec<PendingChange>,
    /// The last log time of a change let go of, older than the history.
    pub(crate) dropped: u64,
}

impl Part {
    pub(crate) fn changes(&self) -> Changes<'_> {
        Changes {
            arena: &self.arena,
            changes: &self.changes,
        }
    }

    /// Heap bytes held, by capacity.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.capacity()
            + self.rows.capacity() * std::mem::size_of::<PendingRow>()
            + self.changes.capacity() * std::mem::size_of::<PendingChange>()
    }

    fn key(&self, row: u32) -> &[u8] {
        &self.arena[self.rows[row as usize].key.range()]
    }

    /// Its rows' places in `rows`, in key order (a row's key is unique),
    /// sorted by [`key_head`] first, then the whole key.
    pub(crate) fn key_order(&self) -> Vec<u32> {
        let mut order: Vec<(u128, u32)> = (0..self.rows.len() as u32)
            .map(|i| (key_head(self.key(i)), i))
            .collect();
        kappa_store::sort_by_head(&mut order, |a, b| self.key(a).cmp(self.key(b)));
        order.into_iter().map(|(_, i)| i).collect()
    }
}

/// The rows of every part (their keys are disjoint) as (key, row; `None`:
/// deleted), in key order, given each part's [`Part::key_order`].
pub(crate) fn rows_in_key_order<'a>(
    parts: &'a [Part],
    orders: &'a [Vec<u32>],
) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
    debug_assert_eq!(parts.len(), orders.len());
    // The rows are all over the arena (which holds the changes too): the
    // bytes of the rows a little ahead are fetched into the cache.
    const AHEAD: usize = 8;
    let prefetch = |part: &Part, i: u32| {
        let r = &part.rows[i as usize];
        for span in [Some(r.key), r.row].into_iter().flatten() {
            if let Some(b) = part.arena.get(span.range()) {
                crate::memory::prefetch_bytes(b);
            }
        }
    };
    for (part, order) in parts.iter().zip(orders) {
        for &i in order.iter().take(AHEAD) {
            prefetch(part, i);
        }
    }
    let mut next = vec![0usize; parts.len()];
    std::iter::from_fn(move || {
        let (p, i) = parts
            .iter()
            .zip(orders)
            .enumerate()
            .filter_map(|(p, (part, order))| order.get(next[p]).map(|&i| (p, (part, i))))
            .min_by(|(_, (a, i)), (_, (b, j))| a.key(*i).cmp(b.key(*j)))
            .map(|(p, (_, i))| (p, i))?;
        next[p] += 1;
        let part = &parts[p];
        if let Some(&ahead) = orders[p].get(next[p] + AHEAD) {
            prefetch(part, ahead);
        }
        let row = part.rows[i as usize].row;
        Some((part.key(i), row.map(|s| &part.arena[s.range()])))
    })
}

/// A shard's changes in log-time order, and the arena their bytes are in.
#[derive(Clone, Copy)]
pub(crate) struct Changes<'a> {
    pub(crate) arena: &'a [u8],
    pub(crate) changes: &'a [PendingChange],
}

impl Changes<'_> {
    /// Starts fetching the key and rows of `change` into the cache.
    fn prefetch(&self, change: &PendingChange) {
        for span in [Some(change.key), change.before, change.after]
            .into_iter()
            .flatten()
        {
            if let Some(b) = self.arena.get(span.range()) {
                crate::memory::prefetch_bytes(b);
            }
        }
    }
}

/// Bytes pending in all shards.
pub(crate) fn pending_bytes(pending: &[Pending]) -> usize {
    pending.iter().map(Pending::bytes).sum()
}

/// The shards' changes in log-time order (each shard's are), with the
/// shard each comes from. The bytes of each shard's changes a little
/// ahead are fetched into the cache as they go: a change may name a row
/// written much earlier in the arena (see [`Pending::sink_row`]).
pub(crate) fn merged_changes<'a>(
    parts: &'a [Changes<'a>],
) -> impl Iterator<Item = (usize, &'a PendingChange)> {
    const AHEAD: usize = 8;
    let mut next = vec![0usize; parts.len()];
    for part in parts {
        for c in part.changes.iter().take(AHEAD) {
            part.prefetch(c);
        }
    }
    std::iter::from_fn(move || {
        let (p, c) = parts
            .iter()
            .enumerate()
            .filter_map(|(p, part)| part.changes.get(next[p]).map(|c| (p, c)))
            .min_by_key(|(_, c)| c.log_time)?;
        if let Some(ahead) = parts[p].changes.get(next[p] + AHEAD) {
            parts[p].prefetch(ahead);
        }
        next[p] += 1;
        Some((p, c))
    })
}

/// Turns the last stage's delta into pending rows and changes, one change
/// per (key, log time).
pub(crate) fn sink(pending: &mut Pending, delta: &Delta) {
    let columns = delta.batch.columns();
    let width = (columns.len() as u16).to_le_bytes();
    for i in 0..delta.len() {
        let group = delta.groups.get(i).copied().unwrap_or(NO_GROUP);
        pending.sink_row(
            delta.keys.get(i),
            group,
            delta.log_times[i],
            delta.weights[i] > 0,
            false,
            |arena| {
                arena.extend_from_slice(&width);
                for c in columns {
                    encode_cell(arena, c, i);
                }
            },
        );
    }
}

impl Pending {
    /// Appends what `encode` writes to the arena.
    fn encoded(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = self.arena.len();
        encode(&mut self.arena);
        Span::new(start, self.arena.len() - start)
    }

    /// One row of the last stage's output: the row with `key` (in the
    /// last aggregate's group slot `group`, or [`NO_GROUP`]) inserted or
    /// retracted at log time `t`; `encode` writes the row. A retraction
    /// of a pending row is its current value (what the stage emitted for
    /// it last), so it is named by that row's span, not written again;
    /// the commit fetches such spans ahead as it encodes the changes.
    /// `differs`: the row is one of a retraction and insertion pair (or a
    /// lone one) that the stage knows changes the row; a change made of
    /// more than that pair may come to nothing, and is compared.
    pub(crate) fn sink_row(
        &mut self,
        key: &[u8],
        group: u32,
        t: u64,
        inserted: bool,
        differs: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        if t <= self.cutoff {
            self.sink_untracked(key, group, t, inserted, differs, encode);
            return;
        }
        if !self.unsure.is_empty() {
            // The last untracked log time is over.
            self.resolve_unsure();
        }
        match self.find(group, key) {
            Some(r) => {
                let PendingRow {
                    row: current,
                    last,
                    last_time,
                    ..
                } = self.rows[r as usize];
                let (at, after) = if last_time == t {
                    // A retraction names the row already pending.
                    let after = inserted.then(|| self.encoded(encode));
                    debug_assert!(last >= self.staged, "a change is merged only in its batch");
                    let change = &mut self.changes[last - self.staged];
                    // Only the insertion that completes a retraction keeps
                    // the pair known to differ.
                    change.differs &= differs && inserted && change.after.is_none();
                    change.after = after;
                    (last, after)
                } else {
                    // The key again, beside the row about to be written:
                    // history reads each change's key, and the pending
                    // row's copy is wherever the key was first seen (a
                    // cache miss per change).
                    let key = self.put(key);
                    let (before, after) = if inserted {
                        (current, Some(self.encoded(encode)))
                    } else {
                        debug_assert!(
                            {
                                let mut row = Vec::new();
                                encode(&mut row);
                                current.map(|c| self.get(c)) == Some(&row[..])
                            },
                            "a retraction is of the row's current value"
                        );
                        (current, None)
                    };
                    self.changes.push(PendingChange {
                        log_time: t,
                        key,
                        before,
                        after,
                        differs,
                    });
                    (self.staged + self.changes.len() - 1, after)
                };
                let entry = &mut self.rows[r as usize];
                entry.row = after;
                entry.last = at;
                entry.last_time = t;
            }
            None => {
                // Not seen since the last commit: a retraction names the
                // old row.
                let row = self.encoded(encode);
                let key_span = self.put(key);
                let (before, after) = if inserted {
                    (None, Some(row))
                } else {
                    (Some(row), None)
                };
                let last = self.staged + self.changes.len();
                self.insert(PendingRow {
                    key: key_span,
                    row: after,
                    last,
                    last_time: t,
                    group,
                });
                self.changes.push(PendingChange {
                    log_time: t,
                    key: key_span,
                    before,
                    after,
                    differs,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part holding `rows` (key, value; `None`: deleted) in that order,
    /// after some bytes that are not rows.
    fn part(rows: &[(&str, Option<&str>)]) -> Part {
        let mut p = Part {
            arena: b"change bytes".to_vec(),
            ..Part::default()
        };
        for (key, row) in rows {
            let mut put = |b: &str| {
                let start = p.arena.len();
                p.arena.extend_from_slice(b.as_bytes());
                Span::new(start, b.len())
            };
            let key = put(key);
            let row = row.map(&mut put);
            p.rows.push(PendingRow {
                key,
                row,
                last: 0,
                last_time: 0,
                group: NO_GROUP,
            });
        }
        p
    }

    #[test]
    fn rows_of_several_parts_come_in_key_order() {
        // Keys longer than the 16 bytes sorted on first, and sharing them.
        let long = |s: &str| format!("0123456789abcdef-{s}");
        let (k1, k2, k3) = (long("b"), long("a"), long("c"));
        let parts = [
            part(&[("m", Some("1")), (&k1, None), ("a", Some("2"))]),
            part(&[("z", Some("3")), (&k2, Some("4"))]),
            part(&[]),
            part(&[(&k3, Some("5")), ("b", None)]),
        ];
        let orders: Vec<_> = parts.iter().map(Part::key_order).collect();
        let got: Vec<(String, Option<String>)> = rows_in_key_order(&parts, &orders)
            .map(|(k, v)| {
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                (text(k), v.map(text))
            })
            .collect();
        let mut want: Vec<(String, Option<String>)> = [
            ("m", Some("1")),
            (k1.as_str(), None),
            ("a", Some("2")),
            ("z", Some("3")),
            (k2.as_str(), Some("4")),
            (k3.as_str(), Some("5")),
            ("b", None),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
