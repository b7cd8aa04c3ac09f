//! `kappa subscribe VIEW`: the view's rows, then every change as it
//! happens. On a terminal it is a live table, redrawn at each progress
//! mark; otherwise one JSON line per event (snapshot rows, changes,
//! progress), ready for another program.

use super::target::Target;
use anyhow::bail;
use clap::Args;
use kappa_engine::feed::{FeedEvent, FeedStart};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(Args)]
pub struct SubscribeArgs {
    pub view: String,
    /// Only changes after this point (a token, log time or timestamp), no
    /// snapshot: how to resume from the last line's log time.
    #[arg(long)]
    pub after: Option<String>,
}

/// What is shown: the rows by key, redrawn on a terminal.
struct Screen {
    live: bool,
    columns: Vec<String>,
    rows: BTreeMap<String, Value>,
}

impl Screen {
    fn event(&mut self, kind: &str, data: Value) -> anyhow::Result<()> {
        if !self.live {
            let mut line = json!({ "event": kind });
            if let (Value::Object(l), Value::Object(d)) = (&mut line, data) {
                l.extend(d);
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            return Ok(out.flush()?);
        }
        match kind {
            "snapshot" => {
                for row in data["rows"].as_array().into_iter().flatten() {
                    if self.columns.is_empty()
                        && let Some(o) = row.as_object()
                    {
                        self.columns = o.keys().cloned().collect();
                    }
                    self.rows.insert(row.to_string(), row.clone());
                }
                if data["last"] == true {
                    self.draw(data["at"].as_str().unwrap_or(""))?;
                }
            }
            "change" => {
                if let Some(before) = data.get("before").filter(|b| !b.is_null()) {
                    self.rows.remove(&before.to_string());
                }
                if let Some(after) = data.get("after").filter(|a| !a.is_null()) {
                    if self.columns.is_empty()
                        && let Some(o) = after.as_object()
                    {
                        self.columns = o.keys().cloned().collect();
                    }
                    self.rows.insert(after.to_string(), after.clone());
                }
            }
            "progress" => self.draw(data["frontier"].as_str().unwrap_or(""))?,
            // A new version's snapshot follows; its columns may differ.
            "replaced" => {
                self.rows.clear();
                self.columns.clear();
            }
            "error" => bail!(
                "{}",
                data["error"]["message"]
                    .as_str()
                    .unwrap_or("the stream failed")
            ),
            _ => {}
        }
        Ok(())
    }

    fn draw(&self, at: &str) -> anyhow::Result<()> {
        let rows: Vec<Value> = self
            .rows
            .values()
            .map(|r| Value::Array(self.columns.iter().map(|c| r[c].clone()).collect()))
            .collect();
        let columns: Vec<Value> = self.columns.iter().map(|c| json!({ "name": c })).collect();
        let table = super::table::render(&json!({ "columns": columns, "rows": rows }));
        let mut out = std::io::stdout().lock();
        // Clear the screen, then the table and where it stands.
        writeln!(out, "\x1b[2J\x1b[H{table}as of {at} (Ctrl-C to stop)")?;
        Ok(out.flush()?)
    }
}

pub async fn run(target: Target, args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let mut screen = Screen {
        live: std::io::stdout().is_terminal(),
        columns: Vec::new(),
        rows: BTreeMap::new(),
    };
    match target {
        Target::Server(http) => {
            let path = super::target::with_query(
                &format!("/v1/views/{}/subscribe", super::target::segment(&args.view)),
                &[("after", args.after.clone())],
            );
            http.events(&path, |kind, data| {
                screen.event(kind, serde_json::from_str(data)?)?;
                Ok(true)
            })
            .await?;
            bail!("the server closed the subscription");
        }
        Target::Embedded(opened) => {
            let maintenance = opened.engine.maintain();
            let start = match &args.after {
                Some(p) => FeedStart::After(super::parse_point(p)?),
                None => FeedStart::Now,
            };
            let mut feed = opened.engine.subscribe(&args.view, start).await?;
            let row =
                |schema: &datafusion::arrow::datatypes::SchemaRef,
                 v: &Option<Vec<datafusion::common::ScalarValue>>| match v {
                    None => Value::Null,
                    Some(values) => Value::Object(
                        schema
                            .fields()
                            .iter()
                            .zip(values)
                            .map(|(f, v)| (f.name().clone(), kappa_server::format::scalar(v)))
                            .collect(),
                    ),
                };
            loop {
                let event = tokio::select! {
                    e = feed.next() => e?,
                    _ = tokio::signal::ctrl_c() => break,
                };
                match event {
                    FeedEvent::Snapshot { at, rows, last } => screen.event(
                        "snapshot",
                        json!({ "at": at.to_rfc3339(), "rows": kappa_server::format::objects(feed.schema(), &rows), "last": last }),
                    )?,
                    FeedEvent::Change { log_time, before, after, .. } => screen.event(
                        "change",
                        json!({ "log_time": log_time.to_rfc3339(), "id": log_time.0, "before": row(feed.schema(), &before), "after": row(feed.schema(), &after) }),
                    )?,
                    FeedEvent::Replaced { version } => {
                        screen.event("replaced", json!({ "version": version }))?
                    }
                    FeedEvent::Progress { frontier } => screen.event(
                        "progress",
                        json!({ "frontier": frontier.to_rfc3339(), "id": frontier.0 }),
                    )?,
                }
            }
            maintenance.stop().await;
            opened.close();
            Ok(ExitCode::SUCCESS)
        }
    }
}
