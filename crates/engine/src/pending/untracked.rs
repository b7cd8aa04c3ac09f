//! Changes older than a view's history: applied to the rows, not kept.
//!
//! A replay of records older than the view's history retention (a view
//! created over a long log, a regeneration) would build every change
//! only for the commit to let go of it. Past the cutoff the pending rows
//! are changed in place instead, and only the last log time let go of is
//! kept, which is where the view's history then starts.

use super::{Pending, PendingRow, Span};

impl Pending {
    /// [`Pending::sink_row`] for a change older than the view's history
    /// (a replay of old records, or a view without history): the row is
    /// applied and the change is not kept, only its log time as the last
    /// let go of. A key's row is then rewritten where it was when its new
    /// bytes fit exactly, so that replaying a long-past log keeps the
    /// arena at its rows' size. History of the same commit cannot name
    /// that place: changes past the cutoff all come after these, in one
    /// catch-up, and the place is reused only while no change is pending.
    pub(super) fn sink_untracked(
        &mut self,
        key: &[u8],
        group: u32,
        t: u64,
        inserted: bool,
        differs: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        if t != self.unsure_at {
            self.resolve_unsure();
            self.unsure_at = t;
            self.freed = None;
        }
        let (r, before) = match self.find(group, key) {
            Some(r) => {
                let row = &self.rows[r as usize];
                (r, (row.last_time != t).then_some(row.row))
            }
            None => {
                // Not pending: a retraction carries the stored row, whose
                // place the insertion that follows may take.
                let old = if inserted {
                    let r = self.new_untracked(key, group, t);
                    self.untracked_insert(r, encode);
                    (r, None)
                } else {
                    let old = self.encoded(encode);
                    let r = self.new_untracked(key, group, t);
                    self.freed = Some((r, old));
                    (r, Some(old))
                };
                self.note_untracked(old.0, Some(old.1), t, differs);
                return;
            }
        };
        if inserted {
            self.untracked_insert(r, encode);
        } else {
            let row = &mut self.rows[r as usize];
            self.freed = row.row.map(|s| (r, s));
            row.row = None;
        }
        self.rows[r as usize].last_time = t;
        self.note_untracked(r, before, t, differs);
    }

    /// A pending row for `key`, deleted, last changed at `t`.
    fn new_untracked(&mut self, key: &[u8], group: u32, t: u64) -> u32 {
        let key = self.put(key);
        let r = self.rows.len() as u32;
        self.insert(PendingRow {
            key,
            row: None,
            last: 0,
            last_time: t,
            group,
        });
        r
    }

    /// Writes row `r`'s new bytes, over its bytes just retracted when
    /// they fit exactly and nothing else can name them (no change, and no
    /// row kept to compare with).
    fn untracked_insert(&mut self, r: u32, encode: impl FnOnce(&mut Vec<u8>)) {
        let span = self.encoded(encode);
        let reuse = match self.freed.take() {
            Some((f, old))
                if f == r
                    && old.len == span.len
                    && self.unsure.is_empty()
                    && self.changes.is_empty()
                    && self.staged == 0 =>
            {
                Some(old)
            }
            _ => None,
        };
        let row = match reuse {
            Some(old) => {
                let new = span.range();
                self.arena.copy_within(new.clone(), old.start as usize);
                self.arena.truncate(new.start);
                old
            }
            None => span,
        };
        self.rows[r as usize].row = Some(row);
    }

    /// Notes that row `r` changed at `t` (from `before`, when this is its
    /// first output at `t`; `None` when it is not): the last log time let
    /// go of, now or once `t` is over if the output may change nothing.
    fn note_untracked(&mut self, r: u32, before: Option<Option<Span>>, t: u64, differs: bool) {
        if differs {
            self.dropped = self.dropped.max(t);
        } else if let Some(before) = before {
            self.unsure.push((r, before));
        }
    }

    /// Settles the rows changed at `unsure_at`: if any differs from what
    /// it was before, that log time was let go of.
    pub(super) fn resolve_unsure(&mut self) {
        let arena = &self.arena;
        let bytes = |s: Option<Span>| s.map(|s| &arena[s.range()]);
        if self
            .unsure
            .iter()
            .any(|&(r, before)| bytes(before) != bytes(self.rows[r as usize].row))
        {
            self.dropped = self.dropped.max(self.unsure_at);
        }
        self.unsure.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::{NO_GROUP, Part};
    use kappa_store::Puts;

    /// One output row for the model test: (key, log time, inserted,
    /// differs, row bytes).
    type Out = (Vec<u8>, u64, bool, bool, Vec<u8>);

    /// A random run of outputs over a few keys, as an aggregate (and a
    /// filter after it) would give them: a key first seen retracts its
    /// stored row; each later output retracts the current row and (mostly)
    /// inserts a new one, sometimes the same bytes, of one length or two.
    fn outputs(rng: &mut impl FnMut(u64) -> u64, differs: bool) -> Vec<Out> {
        let mut current: Vec<Option<Vec<u8>>> = (0..6)
            .map(|k| (k % 2 == 0).then(|| format!("stored{k}").into_bytes()))
            .collect();
        let mut out = Vec::new();
        for t in 1..=200u64 {
            for _ in 0..=rng(2) {
                let k = rng(6) as usize;
                let key = format!("k{k}").into_bytes();
                if out.iter().any(|o: &Out| o.0 == key && o.1 == t) {
                    continue;
                }
                if let Some(row) = current[k].take() {
                    out.push((key.clone(), t, false, differs, row));
                }
                if rng(8) > 0 {
                    let row = match rng(4) {
                        0 => out
                            .iter()
                            .rev()
                            .find(|o| o.0 == key && !o.2)
                            .map_or(b"same".to_vec(), |o| o.4.clone()),
                        1 => format!("long row {t:05}").into_bytes(),
                        _ => format!("r{t:05}").into_bytes(),
                    };
                    current[k] = Some(row.clone());
                    out.push((key, t, true, differs, row));
                }
            }
        }
        out
    }

    fn apply(pending: &mut Pending, outputs: &[Out]) {
        for (key, t, inserted, differs, row) in outputs {
            pending.sink_row(key, NO_GROUP, *t, *inserted, *differs, |a| {
                a.extend_from_slice(row)
            });
        }
    }

    /// A change as bytes: (log time, key, before, after).
    type ChangeBytes = (u64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

    /// The changes history keeps (as `History::encode` does: those
    /// known to differ, and those whose rows differ).
    fn changes_of(p: &Part) -> Vec<ChangeBytes> {
        let get = |s: Option<Span>| s.map(|s| p.arena[s.range()].to_vec());
        p.changes
            .iter()
            .map(|c| {
                let bytes = (
                    c.log_time,
                    get(Some(c.key)).unwrap(),
                    get(c.before),
                    get(c.after),
                );
                (c.differs, bytes)
            })
            .filter(|(differs, c)| *differs || c.2 != c.3)
            .map(|(_, c)| c)
            .collect()
    }

    fn rows_of(p: &Part) -> std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        p.rows
            .iter()
            .map(|r| {
                let get = |s: Span| p.arena[s.range()].to_vec();
                (get(r.key), r.row.map(get))
            })
            .collect()
    }

    /// Changes at or before the cutoff are applied to the rows without
    /// being kept: the rows, the changes after the cutoff and the last
    /// log time let go of all equal what keeping every change gives.
    #[test]
    fn changes_older_than_the_history_change_rows_only() {
        let mut rng = crate::test_rng::seeded();
        for round in 0..200 {
            let differs = round % 2 == 0;
            let outputs = outputs(&mut rng, differs);
            let cutoff = rng(220);
            let mut all = Pending::default();
            apply(&mut all, &outputs);
            let mut some = Pending::with_cutoff(cutoff);
            apply(&mut some, &outputs);
            let (all, some) = (
                all.take(Part::default(), &mut Puts::default()),
                some.take(Part::default(), &mut Puts::default()),
            );
            assert_eq!(
                rows_of(&some),
                rows_of(&all),
                "round {round}, cutoff {cutoff}"
            );
            let (kept, dropped): (Vec<_>, Vec<_>) =
                changes_of(&all).into_iter().partition(|c| c.0 > cutoff);
            assert_eq!(changes_of(&some), kept, "round {round}, cutoff {cutoff}");
            assert!(some.changes.iter().all(|c| c.log_time > cutoff));
            let last = dropped.last().map_or(0, |c| c.0);
            assert_eq!(some.dropped, last, "round {round}, cutoff {cutoff}");
        }
    }

    /// A long run of rows of one length, all older than the history,
    /// keeps the arena at the rows' size.
    #[test]
    fn untracked_rows_of_one_length_are_rewritten_in_place() {
        let mut p = Pending::with_cutoff(u64::MAX);
        for t in 1..=10_000u64 {
            let key = format!("k{}", t % 10);
            let row = format!("{t:08}");
            if t > 10 {
                let old = format!("{:08}", t - 10);
                p.sink_row(key.as_bytes(), NO_GROUP, t, false, true, |a| {
                    a.extend_from_slice(old.as_bytes())
                });
            }
            p.sink_row(key.as_bytes(), NO_GROUP, t, true, true, |a| {
                a.extend_from_slice(row.as_bytes())
            });
        }
        // Ten keys of two bytes and ten rows of eight, written once each.
        assert_eq!(p.arena.len(), 100);
        let part = p.take(Part::default(), &mut Puts::default());
        assert_eq!(rows_of(&part)[b"k3".as_slice()], Some(b"00009993".to_vec()));
        assert_eq!(part.dropped, 10_000);
        assert!(part.changes.is_empty());
    }
}
