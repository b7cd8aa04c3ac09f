//! Verify: a view's rows against a shadow rebuilt from the log. The
//! shadow is the view's definition applied from offset 0 up to the live
//! version's frontier (read at one moment); the live rows are read AS OF
//! that same point, so appends meanwhile change nothing. The shadow's
//! state is dropped afterwards.

use crate::engine::ViewDef;
use crate::value::decode_row;
use crate::{Engine, EngineError};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use kappa_log::{LogTime, ReadLimits};

pub(crate) const VERIFIED_PREFIX: &str = "verified:";
/// A shadow being built (its id), so that a crash mid-verify does not
/// leave its state behind: the next open drops it.
pub(crate) const SHADOW_PREFIX: &str = "shadow:";

/// The last verify of a view, as status shows it (kept in the catalog).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyOutcome {
    /// When it ran, in microseconds since the epoch.
    pub at: u64,
    pub version: u32,
    pub frontier: u64,
    pub identical: bool,
    pub differing: u64,
    pub only_live: u64,
    pub only_rebuilt: u64,
}

/// At most this many differing rows are reported.
const FIRST_DIFFERENCES: usize = 10;

/// What verify found.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    pub version: u32,
    /// The point both sides were compared at.
    pub frontier: LogTime,
    /// Rows of the live version at that point.
    pub rows: u64,
    /// Keys only the live version has, only the rebuilt one has, and in
    /// both with different rows.
    pub only_live: u64,
    pub only_rebuilt: u64,
    pub differing: u64,
    /// The first differences, in key order.
    pub first: Vec<Difference>,
}

impl VerifyReport {
    pub fn identical(&self) -> bool {
        self.only_live == 0 && self.only_rebuilt == 0 && self.differing == 0
    }
}

/// One key whose rows differ (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub live: Option<Vec<String>>,
    pub rebuilt: Option<Vec<String>>,
}

impl Engine {
    /// Rebuilds `view` from the log beside the live version, up to the
    /// live frontier, and compares.
    pub async fn verify_view(&self, view: &str) -> Result<VerifyReport, EngineError> {
        let (live, shadow_def, mut shadow) = {
            let mut inner = self.inner.lock().await;
            let live = inner
                .views
                .get(view)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(view.to_string()))?;
            let shadow_def = ViewDef {
                id: inner.next_view_id,
                ..live.clone()
            };
            let shadow = self.runtime(&inner, &shadow_def).await?;
            let mut w = self.store.write()?;
            w.put_catalog(
                &format!("{SHADOW_PREFIX}{}", shadow_def.id),
                &serde_json::to_vec(&shadow_def.id).expect("ids serialize"),
            )?;
            w.commit()?;
            inner.next_view_id += 1;
            (live, shadow_def, shadow)
        };
        let frontier = self.frontier(view).await?.0;
        let result = async {
            let limits = ReadLimits {
                max_records: self.options.batch_records.max(1),
                max_bytes: 32 << 20,
            };
            shadow
                .catch_up(&self.log, &self.store, frontier, limits)
                .await?;
            let stored_live = self.stored_view(view, Some(frontier)).await?;
            let stored_shadow = crate::query::StoredView {
                id: shadow_def.id,
                as_of: None,
                ..stored_live.clone()
            };
            let types: Vec<DataType> = stored_live
                .schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            let mut report = VerifyReport {
                version: live.version,
                frontier: LogTime(frontier),
                rows: 0,
                only_live: 0,
                only_rebuilt: 0,
                differing: 0,
                first: Vec::new(),
            };
            compare(&stored_live, &stored_shadow, &types, &mut report)?;
            Ok::<_, EngineError>(report)
        }
        .await;
        drop(shadow);
        let mut w = self.store.write()?;
        w.drop_view(shadow_def.id)?;
        w.delete_catalog(&format!("{SHADOW_PREFIX}{}", shadow_def.id))?;
        w.commit()?;
        let report = result?;
        self.record_verify(view, &report).await?;
        Ok(report)
    }

    /// Keeps the outcome for status (and across restarts).
    async fn record_verify(&self, view: &str, r: &VerifyReport) -> Result<(), EngineError> {
        let outcome = VerifyOutcome {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            version: r.version,
            frontier: r.frontier.0,
            identical: r.identical(),
            differing: r.differing,
            only_live: r.only_live,
            only_rebuilt: r.only_rebuilt,
        };
        let mut inner = self.inner.lock().await;
        if !inner.views.contains_key(view) {
            return Ok(());
        }
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{VERIFIED_PREFIX}{view}"),
            &serde_json::to_vec(&outcome).expect("outcomes serialize"),
        )?;
        w.commit()?;
        inner.verified.insert(view.to_string(), outcome);
        Ok(())
    }

    /// Verifies every view whose `verify_every` has passed since its last
    /// verify (or that was never verified). Returns the views verified.
    pub async fn verify_due(&self) -> Result<Vec<String>, EngineError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let due: Vec<String> = {
            let inner = self.inner.lock().await;
            inner
                .views
                .values()
                .filter(|v| {
                    v.verify_every_micros.is_some_and(|every| {
                        inner
                            .verified
                            .get(&v.name)
                            .is_none_or(|o| now.saturating_sub(o.at) >= every)
                    })
                })
                .map(|v| v.name.clone())
                .collect()
        };
        for name in &due {
            let report = self.verify_view(name).await?;
            if !report.identical() {
                tracing::warn!(
                    view = %name,
                    differing = report.differing,
                    only_live = report.only_live,
                    only_rebuilt = report.only_rebuilt,
                    "scheduled verify: the view differs from its rebuild from the log; `kappa view rebuild` repairs it"
                );
            }
        }
        Ok(due)
    }

    /// The last verify of `view`, if any.
    pub async fn last_verify(&self, view: &str) -> Option<VerifyOutcome> {
        self.inner.lock().await.verified.get(view).copied()
    }

    /// Test-only: damages the live version's stored rows (swaps the values
    /// of its first two rows, deletes its third and adds a row after its
    /// last; or deletes its only row), so that tests can check that verify
    /// reports it.
    #[doc(hidden)]
    pub async fn damage_for_test(&self, view: &str) -> Result<(), EngineError> {
        let id = self
            .view(view)
            .await
            .ok_or_else(|| EngineError::NotFound(view.to_string()))?
            .id;
        let read = self.store.read()?;
        let meta = read.meta(id)?.unwrap_or_default();
        let mut first = Vec::new();
        let mut last = Vec::new();
        read.rows(id, &mut |k, v| {
            if first.len() < 3 {
                first.push((k.to_vec(), v.to_vec()));
            }
            last = k.to_vec();
            true
        })?;
        drop(read);
        let mut rows = kappa_store::Puts::default();
        match first.as_slice() {
            [(k1, v1), (k2, v2), rest @ ..] => {
                rows.push(k1, Some(v2));
                rows.push(k2, Some(v1));
                if let [(k3, _)] = rest {
                    rows.push(k3, None);
                    last.push(0xFF);
                    rows.push(&last, Some(v1));
                }
            }
            [(k, _)] => rows.push(k, None),
            _ => return Ok(()),
        }
        let mut commit = kappa_store::ViewCommit {
            view: id,
            rows,
            frontier: meta.frontier,
            history_start: meta.history_start,
            ..Default::default()
        };
        let mut w = self.store.write()?;
        w.apply(&mut commit)?;
        w.commit()?;
        Ok(())
    }
}

fn render(bytes: &[u8], types: &[DataType]) -> Vec<String> {
    match decode_row(bytes, types) {
        Some(values) => values.iter().map(ScalarValue::to_string).collect(),
        None => vec!["<does not decode>".to_string()],
    }
}

/// Compares the two views' rows key by key, both read in key order at
/// once (the rebuilt one on a thread of its own, a chunk at a time), so
/// that neither is held whole.
fn compare(
    live: &crate::query::StoredView,
    rebuilt: &crate::query::StoredView,
    types: &[DataType],
    report: &mut VerifyReport,
) -> Result<(), EngineError> {
    let note = |report: &mut VerifyReport, l: Option<&[u8]>, r: Option<&[u8]>| {
        match (l, r) {
            (Some(a), Some(b)) if a == b => return,
            (Some(_), Some(_)) => report.differing += 1,
            (Some(_), None) => report.only_live += 1,
            (None, Some(_)) => report.only_rebuilt += 1,
            (None, None) => return,
        }
        if report.first.len() < FIRST_DIFFERENCES {
            report.first.push(Difference {
                live: l.map(|b| render(b, types)),
                rebuilt: r.map(|b| render(b, types)),
            });
        }
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(2);
        let reader = std::thread::Builder::new()
            .name("kappa-verify".into())
            .spawn_scoped(scope, move || {
                let mut chunk = Vec::with_capacity(COMPARE_CHUNK);
                rebuilt.visit_rows(&mut |k, v| {
                    chunk.push((k.to_vec(), v.to_vec()));
                    chunk.len() < COMPARE_CHUNK || tx.send(std::mem::take(&mut chunk)).is_ok()
                })?;
                let _ = tx.send(chunk);
                Ok::<_, EngineError>(())
            })
            .map_err(|e| EngineError::Query(format!("cannot start a thread to verify: {e}")))?;
        // Dropped on any early return: the reader's sends then fail and
        // it stops.
        let mut other = rx.into_iter().flatten().peekable();
        live.visit_rows(&mut |k, v| {
            report.rows += 1;
            while let Some((_, r)) = other.next_if(|(rk, _)| rk.as_slice() < k) {
                note(report, None, Some(&r));
            }
            match other.next_if(|(rk, _)| rk.as_slice() == k) {
                Some((_, r)) => note(report, Some(v), Some(&r)),
                None => note(report, Some(v), None),
            }
            true
        })?;
        for (_, r) in other {
            note(report, None, Some(&r));
        }
        reader
            .join()
            .map_err(|_| EngineError::Query("the verify reader failed".into()))?
    })
}

/// Rows per chunk from the verify reader.
const COMPARE_CHUNK: usize = 1024;
