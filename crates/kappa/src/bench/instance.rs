//! What the bench runs against: a fresh embedded instance in a temporary
//! directory (the log, the view store and the maintenance task, as
//! `kappa serve` runs them, without the network), or a running server
//! through its HTTP API.

use crate::cli::engine::Opened;
use crate::cli::target::{Http, segment, with_query};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use kappa_engine::feed::{FeedEvent, FeedStart};
use kappa_engine::{JsonAppend, QueryOptions};
use kappa_log::{LogTime, Token};
use serde_json::Value;
use std::time::{Duration, Instant};

pub enum Instance {
    Embedded(Embedded),
    Server(Http),
}

pub struct Embedded {
    pub opened: Opened,
    maintenance: Option<kappa_engine::live::Maintenance>,
    dir: tempfile::TempDir,
}

/// A view's progress, as its status gives it.
#[derive(Clone, Copy, Debug)]
pub struct ViewProgress {
    pub frontier: LogTime,
    pub records_applied: u64,
    pub version: u64,
    /// Records applied to the version being built, while one is.
    pub building: Option<u64>,
}

/// How long a query waits for a token before the bench gives up on it.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);

impl Instance {
    /// A fresh embedded instance in a new directory under `parent`.
    pub fn embedded(parent: &std::path::Path, workers: Option<usize>) -> anyhow::Result<Instance> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("kappa-bench-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
        let mut options = kappa_engine::EngineOptions::default();
        if let Some(w) = workers {
            options.workers = w;
        }
        let opened = crate::cli::engine::open_with(
            dir.path(),
            kappa_store::StoreOptions::default(),
            options,
        )?;
        let maintenance = Some(opened.engine.maintain());
        Ok(Instance::Embedded(Embedded {
            opened,
            maintenance,
            dir,
        }))
    }

    /// The longest fsync of the log since it was opened, for an embedded
    /// instance (a server's is on its `/metrics`).
    pub fn log_fsync_max(&self) -> Option<Duration> {
        match self {
            Instance::Embedded(e) => Some(Duration::from_micros(
                kappa_log::Log::stats(e.opened.log.as_ref()).sync_micros_max,
            )),
            Instance::Server(_) => None,
        }
    }

    pub async fn server(url: &str) -> anyhow::Result<Instance> {
        let http = Http::new(url)?;
        let (status, _) = http
            .request("GET", "/healthz", None, &[])
            .await
            .with_context(|| format!("no Kappa server answers at {url}"))?;
        if status != 200 {
            bail!("the server at {url} answered /healthz with {status}");
        }
        Ok(Instance::Server(http))
    }

    /// Where it runs, for the report.
    pub fn describe(&self) -> String {
        match self {
            Instance::Embedded(e) => format!("embedded, in {}", e.dir.path().display()),
            Instance::Server(h) => format!("server at {}", h.url()),
        }
    }

    /// The directory of an embedded instance (the disk floor is measured
    /// there).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Instance::Embedded(e) => Some(e.dir.path()),
            Instance::Server(_) => None,
        }
    }

    /// Runs a statement that returns no rows.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        match self {
            Instance::Embedded(e) => {
                e.opened.engine.execute(sql).await?;
            }
            Instance::Server(h) => {
                let body = serde_json::json!({ "sql": sql }).to_string().into_bytes();
                h.json(
                    "POST",
                    "/v1/sql",
                    Some(body),
                    &[("content-type", "application/json")],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// One durable, atomic append; the log time it was given.
    pub async fn append(&self, topic: &str, records: Vec<Bytes>) -> anyhow::Result<LogTime> {
        match self {
            Instance::Embedded(e) => {
                let r = e
                    .opened
                    .engine
                    .append_json_owned(topic, records, JsonAppend::default())
                    .await?;
                Ok(r.token.log_time())
            }
            Instance::Server(h) => {
                let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
                for r in &records {
                    body.extend_from_slice(r);
                    body.push(b'\n');
                }
                let path = format!("/v1/topics/{}/records", segment(topic));
                let v = h
                    .json(
                        "POST",
                        &path,
                        Some(body),
                        &[("content-type", "application/x-ndjson")],
                    )
                    .await?;
                let token = v["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the server's append answer has no token: {v}"))?;
                crate::cli::parse_point(token)
            }
        }
    }

    /// A query's rows as JSON values, once every view it reads has applied
    /// the log up to `after` (if given).
    pub async fn query(
        &self,
        sql: &str,
        after: Option<LogTime>,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        let v = match self {
            Instance::Embedded(e) => {
                let options = QueryOptions {
                    after: after.map(Token::at),
                    timeout: TOKEN_TIMEOUT,
                };
                // The SQL path users take (AS OF, the point-query path).
                let kappa_engine::Output::Rows(batches) =
                    e.opened.engine.execute_with(sql, &options).await?
                else {
                    bail!("{sql:?} returned no rows");
                };
                let schema = batches
                    .first()
                    .map(|b| b.schema())
                    .ok_or_else(|| anyhow!("the query returned no schema"))?;
                kappa_server::format::json(&schema, &batches)
            }
            Instance::Server(h) => {
                let mut body = serde_json::json!({ "sql": sql });
                if let Some(t) = after {
                    body["token"] = Value::String(Token::at(t).to_string());
                }
                h.json(
                    "POST",
                    "/v1/sql",
                    Some(body.to_string().into_bytes()),
                    &[("content-type", "application/json")],
                )
                .await?
            }
        };
        let Some(rows) = v["rows"].as_array() else {
            bail!("the query's answer has no rows: {v}");
        };
        Ok(rows
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect())
    }

    pub async fn progress(&self, view: &str) -> anyhow::Result<ViewProgress> {
        match self {
            Instance::Embedded(e) => {
                let s = e.opened.engine.view_status(view).await?;
                Ok(ViewProgress {
                    frontier: s.frontier,
                    records_applied: s.records_applied,
                    version: u64::from(s.version),
                    building: s.replacing.map(|r| r.records_applied),
                })
            }
            Instance::Server(h) => {
                let v = h
                    .json("GET", &format!("/v1/views/{}", segment(view)), None, &[])
                    .await?;
                let frontier = v["frontier"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the view's status has no frontier: {v}"))?;
                Ok(ViewProgress {
                    frontier: crate::cli::parse_point(frontier)?,
                    records_applied: v["records_applied"].as_u64().unwrap_or(0),
                    version: v["version"].as_u64().unwrap_or(0),
                    building: v
                        .get("replacing")
                        .filter(|r| !r.is_null())
                        .map(|r| r["records_applied"].as_u64().unwrap_or(0)),
                })
            }
        }
    }

    /// Rebuilds `view` from the log as a new version (with `workers`
    /// backfill workers, embedded only); returns once it has started.
    pub async fn rebuild(&self, view: &str, workers: Option<usize>) -> anyhow::Result<()> {
        match self {
            Instance::Embedded(e) => {
                if let Some(w) = workers {
                    e.opened.engine.set_workers(w);
                }
                e.opened.engine.rebuild_view(view).await?;
            }
            Instance::Server(h) => {
                h.json(
                    "POST",
                    &format!("/v1/views/{}/rebuild", segment(view)),
                    Some(b"{}".to_vec()),
                    &[("content-type", "application/json")],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Follows `view`'s changes from now, calling `on` with each change's
    /// log time and when it arrived, until `stop` fires; returns the
    /// time the snapshot took to arrive.
    pub async fn subscribe(
        &self,
        view: &str,
        mut on: impl FnMut(LogTime, Instant),
        mut stop: tokio::sync::watch::Receiver<bool>,
        ready: tokio::sync::oneshot::Sender<Duration>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut ready = Some(ready);
        match self {
            Instance::Embedded(e) => {
                let mut feed = e.opened.engine.subscribe(view, FeedStart::Now).await?;
                loop {
                    let event = tokio::select! {
                        event = feed.next() => event?,
                        _ = stop.changed() => return Ok(()),
                    };
                    match event {
                        FeedEvent::Snapshot { last: true, .. } => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(started.elapsed());
                            }
                        }
                        FeedEvent::Change { log_time, .. } => on(log_time, Instant::now()),
                        FeedEvent::Snapshot { .. }
                        | FeedEvent::Progress { .. }
                        | FeedEvent::Replaced { .. } => {}
                    }
                }
            }
            Instance::Server(h) => {
                let path = with_query(&format!("/v1/views/{}/subscribe", segment(view)), &[]);
                let mut failed = None;
                let stopped = stop.clone();
                let events = h.events(&path, |kind, data| {
                    if *stopped.borrow() {
                        return Ok(false);
                    }
                    match kind {
                        "snapshot" => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(started.elapsed());
                            }
                        }
                        "change" => {
                            let v: Value = serde_json::from_str(data)?;
                            let t = v["log_time"].as_str().unwrap_or_default();
                            on(crate::cli::parse_point(t)?, Instant::now());
                        }
                        "error" => {
                            failed = Some(data.to_string());
                            return Ok(false);
                        }
                        _ => {}
                    }
                    Ok(true)
                });
                tokio::select! {
                    r = events => { r?; }
                    _ = stop.changed() => return Ok(()),
                }
                if let Some(e) = failed {
                    bail!("the server cut the subscription: {e}");
                }
                Ok(())
            }
        }
    }

    /// Stops an embedded instance and removes its directory.
    pub async fn close(self) {
        if let Instance::Embedded(mut e) = self {
            if let Some(m) = e.maintenance.take() {
                m.stop().await;
            }
            e.opened.close();
            drop(e.dir);
        }
    }
}
