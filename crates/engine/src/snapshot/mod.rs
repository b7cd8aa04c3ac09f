//! Snapshots of views, and what they allow: starting a version from one
//! (a rebuild replays only what follows it; a restore seeds a view on
//! another instance of the same log), and truncating a topic's history
//! once every view that reads it has a snapshot past the point.
//!
//! A version started from a snapshot is an ordinary version being built
//! (`pending:NAME`) whose definition names the snapshot (`seed`). Before
//! its first pass it is loaded, in transactions of a few MiB; the last one
//! sets its frontier to the snapshot's and clears `seed`, so a crash while
//! loading starts the load again from nothing.

pub mod file;

use crate::engine::{Inner, Output, ViewDef};
use crate::regen::PENDING_PREFIX;
use crate::{Engine, EngineError};
use file::{Entry, STATE_FORMAT, SnapshotHeader, SnapshotInfo, SnapshotReader};
use kappa_log::{LogTime, Token};
use kappa_store::{Puts, ViewCommit};
use std::path::{Path, PathBuf};

/// The snapshots written of a view (a list of [`SnapshotInfo`]).
pub(crate) const SNAPSHOTS_PREFIX: &str = "snapshots:";
/// How far a topic's history was truncated (records before this log time
/// are gone).
pub(crate) const TRUNCATED_PREFIX: &str = "truncated:";
/// A load commits about this much at a time.
const LOAD_BYTES: usize = 16 << 20;

/// Which snapshot a rebuild starts from.
#[derive(Clone, Debug, PartialEq)]
pub enum FromSnapshot {
    /// The newest one written of the view's definition.
    Latest,
    Path(PathBuf),
}

/// How `kappa view rebuild` goes about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RebuildOptions {
    pub from_snapshot: Option<FromSnapshot>,
    /// Drop the live version first and build the new one in its place:
    /// needs no second copy of the state, but the view answers no query
    /// until it has caught up.
    pub in_place: bool,
}

impl Engine {
    /// Writes a snapshot of `name`'s live version: to `path`, or to the
    /// engine's snapshot directory as `NAME-vVERSION-FRONTIER.ksnap`.
    pub async fn snapshot_view(
        &self,
        name: &str,
        path: Option<PathBuf>,
    ) -> Result<SnapshotInfo, EngineError> {
        let (def, topic) = {
            let inner = self.inner.lock().await;
            let def = inner.live(name)?;
            let topic = self.topic_of(&inner, &def).await?;
            (def, topic)
        };
        let dir = self.options.snapshot_dir.clone();
        let store = self.store.clone();
        let name = name.to_string();
        let info = tokio::task::spawn_blocking(move || {
            // Rows, state and frontier from one read: one committed step.
            let read = store.read()?;
            let meta = read.meta(def.id)?.unwrap_or_default();
            let path = match (path, dir) {
                (Some(p), _) => p,
                (None, Some(dir)) => dir.join(format!(
                    "{name}-v{}-{:016x}.ksnap",
                    def.version, meta.frontier
                )),
                (None, None) => {
                    return Err(EngineError::Plan(
                        "this engine has no snapshot directory: give the snapshot a path".into(),
                    ));
                }
            };
            let header = SnapshotHeader {
                view: name,
                version: def.version,
                sql: def.sql.clone(),
                history_micros: Some(def.history_micros),
                topic: topic.name.clone(),
                topic_def: Some(topic),
                frontier: meta.frontier,
                state_format: STATE_FORMAT,
                created_at: crate::regen::now_micros(),
                kappa_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            file::write(&*read, def.id, &header, &path)
        })
        .await
        .map_err(|e| EngineError::Query(format!("the snapshot writer failed: {e}")))??;
        let mut inner = self.inner.lock().await;
        let mut list = inner.snapshots.get(&def.name).cloned().unwrap_or_default();
        list.retain(|s| s.path != info.path);
        list.push(info.clone());
        list.sort_by_key(|s| (s.frontier, s.created_at));
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{SNAPSHOTS_PREFIX}{}", def.name),
            &serde_json::to_vec(&list).expect("snapshot lists serialize"),
        )?;
        w.commit()?;
        inner.snapshots.insert(def.name.clone(), list);
        Ok(info)
    }

    /// The snapshots written of `name` that are still on disk, oldest
    /// first.
    pub async fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, EngineError> {
        let inner = self.inner.lock().await;
        Ok(inner
            .snapshots
            .get(name)
            .into_iter()
            .flatten()
            .filter(|s| s.path.exists())
            .cloned()
            .collect())
    }

    /// The snapshot to start `def` from: the one named, or the newest of
    /// its definition; checked whole before it is used.
    async fn choose_snapshot(
        &self,
        def: &ViewDef,
        topic: &str,
        from: &FromSnapshot,
    ) -> Result<(PathBuf, SnapshotHeader), EngineError> {
        let candidates: Vec<PathBuf> = match from {
            FromSnapshot::Path(p) => vec![p.clone()],
            FromSnapshot::Latest => {
                let mut all = self.snapshots(&def.name).await?;
                all.reverse();
                all.into_iter().map(|s| s.path).collect()
            }
        };
        let mut refusals = Vec::new();
        for path in candidates {
            let checked = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || SnapshotReader::open(&path)?.check())
                    .await
                    .map_err(|e| EngineError::Query(format!("the snapshot check failed: {e}")))?
            };
            match checked.and_then(|(h, _, _)| fits(&h, def, topic, &path).map(|()| h)) {
                Ok(header) => return Ok((path, header)),
                Err(e) if *from == FromSnapshot::Latest => refusals.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Refused(if refusals.is_empty() {
            format!(
                "view {} has no snapshot: write one with `kappa view snapshot {}`",
                def.name, def.name
            )
        } else {
            format!(
                "no snapshot of view {} can be used: {}",
                def.name,
                refusals.join("; ")
            )
        }))
    }

    /// `kappa view rebuild NAME`, with its options.
    pub async fn rebuild_view_with(
        &self,
        name: &str,
        options: &RebuildOptions,
    ) -> Result<Output, EngineError> {
        let (live, topic, truncated) = {
            let inner = self.inner.lock().await;
            let live = inner.live(name)?;
            let topic = self.topic_of(&inner, &live).await?.name;
            let truncated = inner.truncated_before(&topic);
            (live, topic, truncated)
        };
        let from = match (&options.from_snapshot, truncated) {
            (Some(f), _) => Some(f.clone()),
            // The log alone no longer holds the view's whole input.
            (None, t) if t > 0 => Some(FromSnapshot::Latest),
            (None, _) => None,
        };
        let seed = match &from {
            None => None,
            Some(f) => {
                let (path, header) = self.choose_snapshot(&live, &topic, f).await?;
                if header.frontier.saturating_add(1) < truncated {
                    return Err(EngineError::Refused(format!(
                        "snapshot {} of view {name} is at {}, but topic {topic}'s history before {} was truncated: the records between are gone",
                        path.display(),
                        LogTime(header.frontier).to_rfc3339(),
                        LogTime(truncated).to_rfc3339()
                    )));
                }
                Some((path, header))
            }
        };
        self.bump_catalog();
        let done = self
            .replace_view_with(
                live.name.clone(),
                live.sql.clone(),
                live.history_micros,
                live.verify_every_micros,
                seed.as_ref().map(|(p, _)| p.clone()),
                options.in_place,
            )
            .await;
        self.bump_catalog();
        let mut message = match done? {
            Output::Done(m) => m.replacen("replacing", "rebuilding", 1),
            other => return Ok(other),
        };
        if let Some((path, header)) = seed {
            message.push_str(&format!(
                "; it starts from snapshot {} (at {}) and replays only what follows",
                path.display(),
                LogTime(header.frontier).to_rfc3339()
            ));
        }
        Ok(Output::Done(message))
    }

    /// Creates view `as_name` (or the snapshot's own name) from a
    /// snapshot: it is loaded, catches up from the snapshot's frontier,
    /// then serves. The topic it reads must exist. Returns the view's
    /// name, and what was done.
    pub async fn restore_view(
        &self,
        path: &Path,
        as_name: Option<&str>,
    ) -> Result<(String, Output), EngineError> {
        let checked = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || SnapshotReader::open(&path)?.check())
                .await
                .map_err(|e| EngineError::Query(format!("the snapshot check failed: {e}")))??
        };
        let header = checked.0;
        let name = as_name.unwrap_or(&header.view).to_string();
        self.bump_catalog();
        let mut inner = self.inner.lock().await;
        if inner.views.contains_key(&name)
            || inner.topics.contains_key(&name)
            || inner.pending.contains_key(&name)
        {
            return Err(EngineError::Refused(format!(
                "{name:?} already exists: to start an existing view from a snapshot, use `kappa view rebuild {name} --from-snapshot {}`",
                path.display()
            )));
        }
        self.adopt_snapshot_topic(&mut inner, &header).await?;
        let def = ViewDef {
            id: inner.next_view_id,
            name: name.clone(),
            sql: header.sql.clone(),
            history_micros: header
                .history_micros
                .unwrap_or(crate::sql::statement::DEFAULT_HISTORY_MICROS),
            version: 1,
            verify_every_micros: None,
            seed: Some(path.to_path_buf()),
        };
        let topic = self.topic_of(&inner, &def).await?;
        fits(&header, &def, &topic.name, path)?;
        let runtime = self
            .plan_and_record(&mut inner, &format!("{PENDING_PREFIX}{name}"), &def)
            .await?;
        inner.pending.insert(name.clone(), def);
        inner.install(&crate::regen::runtime_key(&name), runtime);
        drop(inner);
        self.bump_catalog();
        self.regen_kick.notify_one();
        let message = format!(
            "restoring view {name} from snapshot {} (at {}): it is loaded, catches up with the log, then serves",
            path.display(),
            LogTime(header.frontier).to_rfc3339()
        );
        Ok((name, Output::Done(message)))
    }

    /// Makes sure the engine knows the snapshot's topic as the snapshot
    /// does: a topic in the log but not in this engine's catalog (a new
    /// state store), or known only as raw JSON and read by no view, takes
    /// the snapshot's schema.
    async fn adopt_snapshot_topic(
        &self,
        inner: &mut Inner,
        header: &SnapshotHeader,
    ) -> Result<(), EngineError> {
        let Some(def) = &header.topic_def else {
            return Ok(());
        };
        let known = inner.topics.get(&header.topic).cloned();
        if known.as_ref() == Some(def) {
            return Ok(());
        }
        let mut read_by_a_view = false;
        for v in inner.views.values().chain(inner.pending.values()) {
            if self.topic_of(inner, v).await?.name == header.topic {
                read_by_a_view = true;
            }
        }
        let adoptable = match &known {
            None => true,
            Some(k) => k.columns.is_none() && !read_by_a_view,
        };
        if !adoptable {
            return Err(EngineError::Plan(format!(
                "topic {} here has another schema than the snapshot's; the snapshot cannot seed a view over it",
                header.topic
            )));
        }
        self.log.describe_topic(&header.topic).await.map_err(|e| {
            EngineError::Plan(format!(
                "the snapshot's view reads topic {}, which this log does not hold ({e}): a snapshot seeds an instance over the same log",
                header.topic
            ))
        })?;
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{}{}", crate::engine::TOPIC_PREFIX, header.topic),
            &serde_json::to_vec(def).expect("topic definitions serialize"),
        )?;
        w.commit()?;
        inner.topics.insert(header.topic.clone(), def.clone());
        Ok(())
    }

    /// Loads the snapshot a version being built starts from, if it has
    /// one not loaded yet.
    pub(crate) async fn seed_pending(&self, name: &str) -> Result<(), EngineError> {
        let Some(def) = self.inner.lock().await.pending.get(name).cloned() else {
            return Ok(());
        };
        let Some(path) = def.seed.clone() else {
            return Ok(());
        };
        let store = self.store.clone();
        let loaded = ViewDef {
            seed: None,
            ..def.clone()
        };
        let key = format!("{PENDING_PREFIX}{name}");
        let id = def.id;
        tokio::task::spawn_blocking(move || load(&*store, &path, &def, &loaded, &key))
            .await
            .map_err(|e| EngineError::Query(format!("the snapshot loader failed: {e}")))??;
        let mut inner = self.inner.lock().await;
        if let Some(p) = inner.pending.get_mut(name)
            && p.id == id
        {
            p.seed = None;
        }
        Ok(())
    }

    /// `kappa topic truncate NAME --before POSITION`: drops the topic's
    /// records before `position` (a token: every record up to it; or a
    /// timestamp: every record before it), only if every view that reads
    /// the topic has a snapshot that covers them.
    pub async fn truncate_topic(&self, topic: &str, position: &str) -> Result<Output, EngineError> {
        let before = parse_position(position)?;
        let mut inner = self.inner.lock().await;
        if !inner.topics.contains_key(topic) {
            return Err(EngineError::NotFound(topic.to_string()));
        }
        let mut blockers = Vec::new();
        for def in inner.views.values() {
            if self.topic_of(&inner, def).await?.name != topic {
                continue;
            }
            let covering = inner
                .snapshots
                .get(&def.name)
                .into_iter()
                .flatten()
                .filter(|s| s.version == def.version && s.frontier.saturating_add(1) >= before)
                .filter(|s| s.path.exists())
                .max_by_key(|s| s.frontier);
            let usable = match covering {
                None => false,
                Some(s) => {
                    let path = s.path.clone();
                    let checked =
                        tokio::task::spawn_blocking(move || SnapshotReader::open(&path)?.check())
                            .await
                            .map_err(|e| EngineError::Query(e.to_string()))?;
                    checked.is_ok_and(|(h, _, _)| h.sql == def.sql)
                }
            };
            if !usable {
                blockers.push(format!(
                    "view {} has no snapshot at or past that point (write one with `kappa view snapshot {}`)",
                    def.name, def.name
                ));
            }
        }
        for (name, def) in &inner.pending {
            if self.topic_of(&inner, def).await?.name != topic {
                continue;
            }
            let frontier = self.committed_frontier(def.id)?;
            if def.seed.is_some() || frontier.saturating_add(1) < before {
                blockers.push(format!(
                    "version {} of view {name} is being built and has not passed that point",
                    def.version
                ));
            }
        }
        if !blockers.is_empty() {
            return Err(EngineError::Refused(format!(
                "cannot truncate topic {topic} before {}: {}; nothing was dropped",
                LogTime(before).to_rfc3339(),
                blockers.join("; ")
            )));
        }
        let starts = self.log.truncate_before(topic, LogTime(before)).await?;
        let truncated = inner.truncated_before(topic).max(before);
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{TRUNCATED_PREFIX}{topic}"),
            &serde_json::to_vec(&truncated).expect("numbers serialize"),
        )?;
        w.commit()?;
        inner.truncated.insert(topic.to_string(), truncated);
        let starts: Vec<String> = starts.iter().map(|(p, s)| format!("{p}: {s}")).collect();
        Ok(Output::Done(format!(
            "truncated topic {topic} before {}; partitions now start at offsets {{{}}}",
            LogTime(before).to_rfc3339(),
            starts.join(", ")
        )))
    }
}

/// A truncation point as a log time: records before it go.
fn parse_position(position: &str) -> Result<u64, EngineError> {
    let position = position.trim();
    if position.starts_with("kt") {
        return position
            .parse::<Token>()
            .map(|t| t.log_time().0.saturating_add(1))
            .map_err(|e| EngineError::Plan(format!("position {position:?}: {e}")));
    }
    crate::schema::parse_timestamp(position)
        .filter(|m| *m >= 0)
        .map(|m| m as u64)
        .ok_or_else(|| {
            EngineError::Plan(format!(
                "position {position:?} is neither a token (kt1-...) nor a timestamp (try '2026-01-01 12:00:00' or RFC 3339)"
            ))
        })
}

/// Whether a snapshot can seed `def` (reading `topic`).
fn fits(h: &SnapshotHeader, def: &ViewDef, topic: &str, path: &Path) -> Result<(), EngineError> {
    let refuse = |reason: String| EngineError::Snapshot {
        path: path.display().to_string(),
        reason,
    };
    if h.state_format != STATE_FORMAT {
        return Err(refuse(format!(
            "it holds state format {}, this engine keeps format {STATE_FORMAT}; rebuild from the log instead",
            h.state_format
        )));
    }
    if h.sql != def.sql {
        return Err(refuse(format!(
            "it is of view {} version {} with another definition than view {}'s",
            h.view, h.version, def.name
        )));
    }
    if h.topic != topic {
        return Err(refuse(format!(
            "it was made from topic {}, the view reads {topic}",
            h.topic
        )));
    }
    Ok(())
}

/// Loads snapshot `path` into `def`'s (empty) state; the last transaction
/// sets the frontier and records `loaded` (the same definition, loaded)
/// under `key`.
fn load(
    store: &dyn kappa_store::StateStore,
    path: &Path,
    def: &ViewDef,
    loaded: &ViewDef,
    key: &str,
) -> Result<(), EngineError> {
    let mut reader = SnapshotReader::open(path)?;
    let frontier = reader.header.frontier;
    // A load cut short by a crash starts again from nothing.
    let mut w = store.write()?;
    w.drop_view(def.id)?;
    w.commit()?;
    let mut commit = ViewCommit {
        view: def.id,
        ..ViewCommit::default()
    };
    let mut bytes = 0usize;
    loop {
        let more = reader.next_block(&mut |e| match e {
            Entry::Row(k, v) => {
                bytes += k.len() + v.len();
                commit.rows.push(k, Some(v));
            }
            Entry::State(k, v) => {
                bytes += k.len() + v.len();
                commit.state.push(k, Some(v));
            }
        })?;
        if !more || bytes >= LOAD_BYTES {
            let mut w = store.write()?;
            if !more {
                commit.frontier = frontier;
                commit.history_start = frontier;
                w.put_catalog(
                    key,
                    &serde_json::to_vec(loaded).expect("view definitions serialize"),
                )?;
            }
            w.apply(&mut commit)?;
            w.commit()?;
            commit.rows = Puts::default();
            commit.state = Puts::default();
            bytes = 0;
        }
        if !more {
            return Ok(());
        }
    }
}
