//! Changes older than a view's history: applied to the rows, not kept.
//!
//! A replay of records older than the view's history retention (a view
//! created over a long log, a regeneration) would build every change
//! only for the commit to let go of it. Past the cutoff the pending rows
//! are changed, and only the last log time let go of is kept, which is
//! where the view's history then starts.

use super::{Pending, PendingRow, Span};

/// A row changed at the log time being applied, untracked.
pub(super) struct Untracked {
    row: u32,
    /// Its bytes before that log time.
    before: Option<Span>,
    /// Known to change the row (as [`super::PendingChange::differs`]).
    differs: bool,
}

impl Pending {
    /// [`Pending::sink_row`] for a change older than the view's history
    /// (a replay of old records, or a view without history): the row is
    /// applied and the change is not kept, only its log time as the last
    /// let go of (exactly as the change would have been: see
    /// [`Pending::resolve_unsure`]).
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
        }
        let r = match self.find(group, key) {
            Some(r) if self.rows[r as usize].last_time == t => {
                // Again at this log time: as a change merged with later
                // output, only one retraction and insertion pair stays
                // known to differ.
                let after_none = self.rows[r as usize].row.is_none();
                if let Some(u) = self.unsure.iter_mut().rev().find(|u| u.row == r) {
                    u.differs &= differs && inserted && after_none;
                }
                r
            }
            Some(r) => {
                let row = &mut self.rows[r as usize];
                row.last_time = t;
                let before = row.row;
                self.unsure.push(Untracked {
                    row: r,
                    before,
                    differs,
                });
                r
            }
            // Not pending: a retraction carries the stored row (and
            // leaves the row deleted until an insertion follows).
            None if inserted => self.new_untracked(key, group, t, None, differs),
            None => {
                let before = self.encoded(encode);
                self.new_untracked(key, group, t, Some(before), differs);
                return;
            }
        };
        let row = inserted.then(|| self.encoded(encode));
        self.rows[r as usize].row = row;
    }

    /// A pending row for `key`, deleted, first changed at `t` from
    /// `before`.
    fn new_untracked(
        &mut self,
        key: &[u8],
        group: u32,
        t: u64,
        before: Option<Span>,
        differs: bool,
    ) -> u32 {
        let key = self.put(key);
        let r = self.rows.len() as u32;
        self.insert(PendingRow {
            key,
            row: None,
            last: 0,
            last_time: t,
            group,
        });
        self.unsure.push(Untracked {
            row: r,
            before,
            differs,
        });
        r
    }

    /// Settles the rows changed at `unsure_at`, once it is over: that log
    /// time was let go of if any of them is known to differ or differs
    /// from its bytes before.
    ///
    /// (Writing a row's new bytes over its old ones, to keep the arena at
    /// its rows' size, was tried: peak RSS of a 1M replay past the
    /// history fell from ~170 to ~135 MiB, but the old bytes are far back
    /// in the arena and each write missed the cache: ~10% of the replay's
    /// CPU. Appending is sequential.)
    pub(super) fn resolve_unsure(&mut self) {
        let arena = &self.arena;
        let bytes = |s: Option<Span>| s.map(|s| &arena[s.range()]);
        if self
            .unsure
            .iter()
            .any(|u| u.differs || bytes(u.before) != bytes(self.rows[u.row as usize].row))
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
    /// inserts a new one, sometimes the same bytes, of one length or two;
    /// a key may have several pairs at one log time.
    fn outputs(rng: &mut impl FnMut(u64) -> u64, differs: bool) -> Vec<Out> {
        let mut current: Vec<Option<Vec<u8>>> = (0..6)
            .map(|k| (k % 2 == 0).then(|| format!("stored{k}").into_bytes()))
            .collect();
        let mut out = Vec::new();
        for t in 1..=200u64 {
            let before_t = current.clone();
            for _ in 0..=rng(2) {
                let k = rng(6) as usize;
                let key = format!("k{k}").into_bytes();
                // A key again at one log time (an aggregate over an
                // aggregate), now and then.
                if out.iter().any(|o: &Out| o.0 == key && o.1 == t) && rng(2) == 0 {
                    continue;
                }
                if let Some(row) = current[k].take() {
                    out.push((key.clone(), t, false, differs, row));
                }
                if rng(8) > 0 {
                    let row = match rng(5) {
                        // The row it retracted last (a pair that changes
                        // nothing), or the row before this log time (two
                        // pairs that, together, change nothing).
                        0 => out
                            .iter()
                            .rev()
                            .find(|o| o.0 == key && !o.2)
                            .map_or(b"same".to_vec(), |o| o.4.clone()),
                        4 => before_t[k].clone().unwrap_or(b"same".to_vec()),
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

    /// A long run of outputs all older than the history keeps no change,
    /// only each key's last row and the last log time.
    #[test]
    fn a_run_past_the_history_keeps_rows_only() {
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
        let part = p.take(Part::default(), &mut Puts::default());
        assert_eq!(part.rows.len(), 10);
        assert_eq!(rows_of(&part)[b"k3".as_slice()], Some(b"00009993".to_vec()));
        assert_eq!(part.dropped, 10_000);
        assert!(part.changes.is_empty());
    }

    /// Two retraction and insertion pairs at one log time, each known to
    /// change the row, may still change nothing together (an aggregate
    /// over an aggregate): that log time is not let go of.
    #[test]
    fn pairs_that_change_nothing_together_are_not_let_go_of() {
        let outputs: Vec<Out> = [
            (1, true, "a"),
            (2, false, "a"),
            (2, true, "b"),
            (2, false, "b"),
            (2, true, "a"),
        ]
        .iter()
        .map(|&(t, inserted, row)| (b"k".to_vec(), t, inserted, true, row.as_bytes().to_vec()))
        .collect();
        let mut all = Pending::default();
        apply(&mut all, &outputs);
        let all = all.take(Part::default(), &mut Puts::default());
        assert_eq!(
            changes_of(&all).len(),
            1,
            "only the insertion at 1 is a change"
        );
        let mut some = Pending::with_cutoff(10);
        apply(&mut some, &outputs);
        let some = some.take(Part::default(), &mut Puts::default());
        assert_eq!(some.dropped, 1);
    }
}
