//! Regeneration: a view's next version is built from the log beside the
//! live one (CREATE OR REPLACE VIEW, a rebuild, a rollback), then swapped
//! in atomically; the version it replaces is kept for rollback.
//!
//! A version being built is an ordinary view runtime with its own id and
//! state, listed in the catalog as `pending:NAME`: it survives a restart
//! and resumes from what it committed. It is applied in passes, each up
//! to the log's head; once a pass had little left to do, the swap takes
//! the engine's catalog lock (queries resolve views under it, so each
//! answer reads one version), applies the last few records, and commits
//! the catalog change in one store transaction: `view:NAME` becomes the
//! new version, `retired:NAME` the old one, `pending:NAME` goes. A crash
//! before that commit leaves the old version live and the new one
//! pending; after it, the new one live.

use crate::engine::{Inner, Output, VIEW_PREFIX, ViewDef};
use crate::{Engine, EngineError};
use kappa_log::{LogTime, ReadLimits};
use serde::{Deserialize, Serialize};

pub(crate) const PENDING_PREFIX: &str = "pending:";
pub(crate) const RETIRED_PREFIX: &str = "retired:";

/// A pass that applied fewer records than this is followed by the swap
/// (which applies about as many again while queries wait).
const SWAP_BELOW_RECORDS: u64 = 5_000;

/// The version a view had before its last swap.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Retired {
    pub def: ViewDef,
    /// When it stopped serving, in microseconds since the epoch.
    pub retired_at: u64,
}

/// A version being built, as status reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replacing {
    pub version: u32,
    /// Every record up to here is applied to the new version.
    pub frontier: LogTime,
    /// How far the log's head is past it, in microseconds of log time.
    pub lag_micros: u64,
    /// Records applied per second, over the last 10 seconds.
    pub rate: f64,
    /// Records applied so far.
    pub records_applied: u64,
    /// Records of the log left to apply, once the build has read some.
    pub records_remaining: Option<u64>,
    /// Seconds until it catches up, at the current rate.
    pub eta_seconds: Option<f64>,
}

/// Why a query that failed to plan could not read a view that has only a
/// version being built (restored from a snapshot, or rebuilt in place).
pub(crate) fn unavailable(sql: &str, building: &[String]) -> Option<EngineError> {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    if building.is_empty() {
        return None;
    }
    let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}).ok()?;
    for statement in &statements {
        let (tables, _) =
            datafusion::sql::resolve::resolve_table_references(statement, true).ok()?;
        if let Some(name) = building
            .iter()
            .find(|b| tables.iter().any(|t| t.table() == b.as_str()))
        {
            return Some(EngineError::Unavailable(format!(
                "view {name} is being rebuilt in place (or restored from a snapshot) and answers no query until it has caught up with the log; `kappa view status {name}` shows how far it has got"
            )));
        }
    }
    None
}

/// Where a version being built keeps its runtime (and rate meter).
pub(crate) fn runtime_key(name: &str) -> String {
    format!("{name}\u{0}next")
}

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Engine {
    /// CREATE OR REPLACE VIEW on a view that exists: its next version,
    /// built beside it.
    pub(crate) async fn replace_view(
        &self,
        name: String,
        query: String,
        history_micros: u64,
        verify_every_micros: Option<u64>,
    ) -> Result<Output, EngineError> {
        self.replace_view_with(
            name,
            query,
            history_micros,
            verify_every_micros,
            None,
            false,
        )
        .await
    }

    /// The next version of a view: from the log, or from a snapshot
    /// (`seed`); beside the live one, or (`in_place`) in its place, the
    /// live one dropped first.
    pub(crate) async fn replace_view_with(
        &self,
        name: String,
        query: String,
        history_micros: u64,
        verify_every_micros: Option<u64>,
        seed: Option<std::path::PathBuf>,
        in_place: bool,
    ) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        let live = inner.live(&name)?;
        let readers = self.readers_of(&inner, &name).await?;
        if !readers.is_empty() {
            return Err(EngineError::Plan(format!(
                "cannot replace view {name}: views read it ({}); drop them, replace {name}, then create them again",
                readers.join(", ")
            )));
        }
        let def = ViewDef {
            id: inner.next_view_id,
            name: name.clone(),
            sql: query,
            history_micros,
            version: 0,
            verify_every_micros,
            seed,
        };
        // A definition refused here leaves the live version untouched.
        let runtime = self.runtime(&inner, &def).await?;
        let truncated = inner.truncated_before(&runtime.topic.name);
        if truncated > 0 && def.seed.is_none() {
            return Err(EngineError::Refused(format!(
                "cannot build view {name} from topic {}'s log: its history before {} was truncated, so a new definition would miss those records (a rebuild of the same definition starts from a snapshot instead)",
                runtime.topic.name,
                LogTime(truncated).to_rfc3339()
            )));
        }
        let abandoned = self.abandon_pending(&mut inner, &name).await?;
        let version = [
            Some(live.version),
            inner.retired.get(&name).map(|r| r.def.version),
            abandoned,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(1)
            + 1;
        let def = ViewDef { version, ..def };
        if in_place {
            // The live version stops first (a pass in flight finishes).
            if let Some(rt) = inner.runtimes.remove(&name) {
                let _quiet = rt.lock().await;
            }
            inner.meters.remove(&name);
        }
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{PENDING_PREFIX}{name}"),
            &serde_json::to_vec(&def).expect("view definitions serialize"),
        )?;
        if in_place {
            // Its state (and the previous version's) goes in the same
            // transaction.
            w.delete_catalog(&format!("{VIEW_PREFIX}{name}"))?;
            w.drop_view(live.id)?;
            if let Some(r) = inner.retired.get(&name) {
                w.delete_catalog(&format!("{RETIRED_PREFIX}{name}"))?;
                w.drop_view(r.def.id)?;
            }
        }
        w.commit()?;
        inner.next_view_id = inner.next_view_id.max(def.id + 1);
        if in_place {
            inner.views.remove(&name);
            inner.retired.remove(&name);
            self.shapes.lock().expect("not poisoned").remove(&name);
        }
        inner.pending.insert(name.clone(), def);
        inner.install(&runtime_key(&name), runtime);
        self.regen_kick.notify_one();
        Ok(Output::Done(if in_place {
            format!(
                "replacing view {name} in place: version {} was dropped, and the view answers no query until version {version} has caught up with the log (downtime)",
                live.version
            )
        } else {
            format!(
                "replacing view {name}: version {version} is being built from the log beside version {}, which serves until the new one has caught up",
                live.version
            )
        }))
    }

    /// Builds a view's next version with the same definition (after an
    /// engine upgrade, or suspected damage): from the log, or from its
    /// newest snapshot if the topic's history was truncated.
    pub async fn rebuild_view(&self, name: &str) -> Result<Output, EngineError> {
        self.rebuild_view_with(name, &crate::snapshot::RebuildOptions::default())
            .await
    }

    /// Brings back the version a view had before its last swap: it
    /// catches up from where it stopped, beside the live one, then is
    /// swapped in (and the live one kept in its place).
    pub async fn rollback_view(&self, name: &str) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        if !inner.views.contains_key(name) {
            return Err(EngineError::NotFound(name.to_string()));
        }
        let Some(previous) = inner.retired.get(name).cloned() else {
            return Err(EngineError::Plan(format!(
                "view {name} has no previous version to roll back to (one is kept for a while after each replace)"
            )));
        };
        let runtime = self.runtime(&inner, &previous.def).await?;
        let truncated = inner.truncated_before(&runtime.topic.name);
        let stopped_at = self.committed_frontier(previous.def.id)?;
        if stopped_at.saturating_add(1) < truncated {
            return Err(EngineError::Refused(format!(
                "cannot roll view {name} back to version {}: it stopped at {}, and topic {}'s history before {} was truncated since",
                previous.def.version,
                LogTime(stopped_at).to_rfc3339(),
                runtime.topic.name,
                LogTime(truncated).to_rfc3339()
            )));
        }
        self.abandon_pending(&mut inner, name).await?;
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{PENDING_PREFIX}{name}"),
            &serde_json::to_vec(&previous.def).expect("view definitions serialize"),
        )?;
        w.delete_catalog(&format!("{RETIRED_PREFIX}{name}"))?;
        w.commit()?;
        inner.retired.remove(name);
        inner.pending.insert(name.to_string(), previous.def.clone());
        inner.install(&runtime_key(name), runtime);
        self.regen_kick.notify_one();
        Ok(Output::Done(format!(
            "rolling view {name} back to version {}: it catches up from where it stopped, then serves",
            previous.def.version
        )))
    }

    /// Drops a version being built (replaced by a newer request); returns
    /// its version.
    async fn abandon_pending(
        &self,
        inner: &mut Inner,
        name: &str,
    ) -> Result<Option<u32>, EngineError> {
        let Some(old) = inner.pending.remove(name) else {
            return Ok(None);
        };
        let key = runtime_key(name);
        if let Some(rt) = inner.runtimes.remove(&key) {
            // A pass in flight finishes first.
            let _quiet = rt.lock().await;
        }
        inner.meters.remove(&key);
        let mut w = self.store.write()?;
        w.delete_catalog(&format!("{PENDING_PREFIX}{name}"))?;
        w.drop_view(old.id)?;
        w.commit()?;
        Ok(Some(old.version))
    }

    /// Drops a view's version being built and its previous version (the
    /// view itself is being dropped).
    pub(crate) async fn forget_versions(
        &self,
        inner: &mut Inner,
        name: &str,
    ) -> Result<(), EngineError> {
        self.abandon_pending(inner, name).await?;
        let mut w = self.store.write()?;
        if let Some(r) = inner.retired.remove(name) {
            w.delete_catalog(&format!("{RETIRED_PREFIX}{name}"))?;
            w.drop_view(r.def.id)?;
        }
        if inner.verified.remove(name).is_some() {
            w.delete_catalog(&format!("{}{name}", crate::verify::VERIFIED_PREFIX))?;
        }
        w.commit()?;
        Ok(())
    }

    /// The live views whose definitions read `name`.
    async fn readers_of(&self, inner: &Inner, name: &str) -> Result<Vec<String>, EngineError> {
        use datafusion::sql::parser::DFParser;
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        let mut out = Vec::new();
        for v in inner.views.values().filter(|v| v.name != name) {
            let statements = DFParser::parse_sql_with_dialect(&v.sql, &PostgreSqlDialect {})
                .map_err(|e| EngineError::Plan(format!("view {}: {e}", v.name)))?;
            for statement in &statements {
                let (tables, _) =
                    datafusion::sql::resolve::resolve_table_references(statement, true)?;
                if tables.iter().any(|t| t.table() == name) {
                    out.push(v.name.clone());
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Applies every version being built up to the log's head, and swaps
    /// in those that have caught up. Returns the views swapped.
    pub async fn advance_replacements(&self) -> Result<Vec<String>, EngineError> {
        self.free_retired().await?;
        let names: Vec<String> = self.inner.lock().await.pending.keys().cloned().collect();
        let mut swapped = Vec::new();
        for name in names {
            let applied = self.build_pass(&name).await?;
            if applied < SWAP_BELOW_RECORDS && self.swap(&name).await? {
                swapped.push(name);
            }
        }
        Ok(swapped)
    }

    /// Whether a version is being built for any view.
    pub async fn replacing_any(&self) -> bool {
        !self.inner.lock().await.pending.is_empty()
    }

    /// The runtime of `name`'s version being built (made again after a
    /// restart: it resumes from what it committed).
    async fn pending_runtime(
        &self,
        name: &str,
    ) -> Result<Option<crate::engine::SharedRuntime>, EngineError> {
        let mut inner = self.inner.lock().await;
        let Some(def) = inner.pending.get(name).cloned() else {
            return Ok(None);
        };
        let key = runtime_key(name);
        if !inner.runtimes.contains_key(&key) {
            let rt = self.runtime(&inner, &def).await?;
            inner.install(&key, rt);
        }
        Ok(inner.runtimes.get(&key).cloned())
    }

    /// One pass of a version being built, up to the head as it is now;
    /// returns the records it applied.
    async fn build_pass(&self, name: &str) -> Result<u64, EngineError> {
        self.seed_pending(name).await?;
        let Some(rt) = self.pending_runtime(name).await? else {
            return Ok(0);
        };
        let head = self.log.head().await?.log_time().0;
        let mut rt = rt.lock().await;
        let p = rt
            .catch_up(&self.log, &self.store, head, self.pass_limits())
            .await?;
        Ok(p.records)
    }

    fn pass_limits(&self) -> ReadLimits {
        ReadLimits {
            max_records: self.options.batch_records.max(1),
            max_bytes: 32 << 20,
        }
    }

    /// Makes `name`'s version being built the live one, if it is still
    /// pending. Queries wait meanwhile (they resolve views under the same
    /// lock), while the last records are applied and the catalog commits.
    async fn swap(&self, name: &str) -> Result<bool, EngineError> {
        let mut inner = self.inner.lock().await;
        let Some(def) = inner.pending.get(name).cloned() else {
            return Ok(false);
        };
        let key = runtime_key(name);
        let Some(rt) = inner.runtimes.get(&key).cloned() else {
            return Ok(false);
        };
        {
            let head = self.log.head().await?.log_time().0;
            let mut rt = rt.lock().await;
            rt.catch_up(&self.log, &self.store, head, self.pass_limits())
                .await?;
        }
        let previous = inner.views.get(name).cloned();
        let retired = previous.map(|def| Retired {
            def,
            retired_at: now_micros(),
        });
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{VIEW_PREFIX}{name}"),
            &serde_json::to_vec(&def).expect("view definitions serialize"),
        )?;
        if let Some(r) = &retired {
            w.put_catalog(
                &format!("{RETIRED_PREFIX}{name}"),
                &serde_json::to_vec(r).expect("retired versions serialize"),
            )?;
            // Only the last version is kept for rollback.
            if let Some(older) = inner.retired.get(name) {
                w.drop_view(older.def.id)?;
            }
        }
        w.delete_catalog(&format!("{PENDING_PREFIX}{name}"))?;
        w.commit()?;
        inner.pending.remove(name);
        inner.views.insert(name.to_string(), def);
        match retired {
            Some(r) => inner.retired.insert(name.to_string(), r),
            None => inner.retired.remove(name),
        };
        if let Some(rt) = inner.runtimes.remove(&key) {
            inner.runtimes.insert(name.to_string(), rt);
        }
        if let Some(m) = inner.meters.remove(&key) {
            inner.meters.insert(name.to_string(), m);
        }
        self.shapes.lock().expect("not poisoned").remove(name);
        self.bump_catalog();
        self.progress.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// Frees previous versions kept longer than the engine's
    /// `keep_previous`.
    async fn free_retired(&self) -> Result<(), EngineError> {
        let keep = self.options.keep_previous.as_micros() as u64;
        let now = now_micros();
        let mut inner = self.inner.lock().await;
        let expired: Vec<(String, Retired)> = inner
            .retired
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.retired_at) > keep)
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let mut w = self.store.write()?;
        for (name, r) in &expired {
            w.delete_catalog(&format!("{RETIRED_PREFIX}{name}"))?;
            w.drop_view(r.def.id)?;
        }
        w.commit()?;
        for (name, _) in expired {
            inner.retired.remove(&name);
        }
        Ok(())
    }

    /// How far `view`'s version being built has got, if one is.
    pub async fn replacing(&self, view: &str) -> Result<Option<Replacing>, EngineError> {
        let (def, meter) = {
            let inner = self.inner.lock().await;
            let Some(def) = inner.pending.get(view).cloned() else {
                return Ok(None);
            };
            (def, inner.meters.get(&runtime_key(view)).cloned())
        };
        let head = self.log.head().await?.log_time().0;
        let frontier = self.committed_frontier(def.id)?;
        let topic = self.pending_topic(view).await;
        let records_remaining = match (&meter, topic) {
            (Some(m), Some(t)) => match self.log.describe_topic(&t).await {
                Ok(d) => {
                    let ends: Vec<(u32, u64, u64)> = d
                        .partitions
                        .iter()
                        .map(|p| (p.partition, p.start_offset, p.end_offset))
                        .collect();
                    m.remaining(&ends)
                }
                Err(_) => None,
            },
            _ => None,
        };
        let eta_seconds = match (&meter, records_remaining) {
            (Some(m), Some(r)) => m.eta_seconds(r),
            _ => None,
        };
        Ok(Some(Replacing {
            records_remaining,
            eta_seconds,
            version: def.version,
            frontier: LogTime(frontier),
            lag_micros: head.saturating_sub(frontier),
            rate: meter.as_ref().map_or(0.0, |m| m.per_second()),
            records_applied: meter.as_ref().map_or(0, |m| m.total()),
        }))
    }

    /// The topic `view`'s version being built reads.
    async fn pending_topic(&self, view: &str) -> Option<String> {
        let inner = self.inner.lock().await;
        let def = inner.pending.get(view)?.clone();
        if let Some(rt) = inner.runtimes.get(&runtime_key(view))
            && let Ok(rt) = rt.try_lock()
        {
            return Some(rt.topic.name.clone());
        }
        // Busy with a pass: plan it again.
        self.topic_of(&inner, &def).await.ok().map(|t| t.name)
    }

    /// `name`'s live definition, or, while it has none (restored from a
    /// snapshot, or rebuilt in place), the one being built.
    pub async fn view_or_building(&self, name: &str) -> Option<ViewDef> {
        let inner = self.inner.lock().await;
        inner
            .views
            .get(name)
            .or_else(|| inner.pending.get(name))
            .cloned()
    }

    /// The previous version kept for rollback, if any.
    pub async fn previous_version(&self, view: &str) -> Option<u32> {
        self.inner
            .lock()
            .await
            .retired
            .get(view)
            .map(|r| r.def.version)
    }
}
