//! `kappa view replace|rebuild|rollback`: start a view's next version
//! (a new definition, the same one, or the previous version), then follow
//! it with a progress bar until it serves (or return at once with
//! `--no-wait`).

use super::target::{Target, segment};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::time::Duration;

/// What to start.
pub enum Start {
    Replace {
        sql: String,
    },
    Rebuild(kappa_engine::RebuildOptions),
    Rollback,
    /// A new view from a snapshot (`as_name`, or the snapshot's name).
    Restore {
        path: std::path::PathBuf,
        as_name: Option<String>,
    },
}

/// Starts it; returns the view's name and what was done.
async fn start(target: &Target, name: &str, start: Start) -> anyhow::Result<(String, String)> {
    let name = name.to_string();
    Ok(match (target, start) {
        (_, Start::Replace { sql }) => {
            let m = target
                .statement(&format!(
                    "CREATE OR REPLACE VIEW \"{}\" AS {sql}",
                    name.replace('"', "\"\"")
                ))
                .await?;
            (name, m)
        }
        (Target::Server(http), Start::Restore { path, as_name }) => {
            let body = serde_json::json!({ "path": path, "name": as_name });
            let out = http
                .json(
                    "POST",
                    "/v1/views/restore",
                    Some(body.to_string().into()),
                    &[("content-type", "application/json")],
                )
                .await?;
            (text(&out["view"]), text(&out["message"]))
        }
        (Target::Server(http), start) => {
            let (action, body) = match start {
                Start::Rebuild(o) => (
                    "rebuild",
                    serde_json::json!({
                        "from_snapshot": o.from_snapshot.map(|f| match f {
                            kappa_engine::FromSnapshot::Latest => "latest".to_string(),
                            kappa_engine::FromSnapshot::Path(p) => p.display().to_string(),
                        }),
                        "in_place": o.in_place,
                    }),
                ),
                _ => ("rollback", serde_json::json!({})),
            };
            let path = format!("/v1/views/{}/{action}", segment(&name));
            let out = http
                .json(
                    "POST",
                    &path,
                    Some(body.to_string().into()),
                    &[("content-type", "application/json")],
                )
                .await?;
            (name, text(&out["message"]))
        }
        (Target::Embedded(o), Start::Rebuild(options)) => {
            let m = done(o.engine.rebuild_view_with(&name, &options).await?);
            (name, m)
        }
        (Target::Embedded(o), Start::Restore { path, as_name }) => {
            let (name, out) = o.engine.restore_view(&path, as_name.as_deref()).await?;
            (name, done(out))
        }
        (Target::Embedded(o), Start::Rollback) => {
            let m = done(o.engine.rollback_view(&name).await?);
            (name, m)
        }
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `kappa view snapshot NAME [--out PATH]`.
pub async fn snapshot(
    target: &Target,
    name: &str,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let info = match target {
        Target::Server(http) => {
            let body = serde_json::json!({ "path": out });
            http.json(
                "POST",
                &format!("/v1/views/{}/snapshot", segment(name)),
                Some(body.to_string().into()),
                &[],
            )
            .await?
        }
        Target::Embedded(o) => {
            let info = o.engine.snapshot_view(name, out).await?;
            kappa_server::status::snapshot_json(&info)
        }
    };
    println!(
        "wrote snapshot {} of view {name} version {} at {} ({} rows, {} bytes); its token is {}",
        text(&info["path"]),
        info["version"],
        text(&info["frontier"]),
        info["rows"],
        info["bytes"],
        text(&info["token"])
    );
    Ok(())
}

pub async fn run(target: &Target, name: &str, what: Start, wait: bool) -> anyhow::Result<()> {
    let (name, message) = start(target, name, what).await?;
    let name = name.as_str();
    eprintln!("{message}");
    if !wait {
        return Ok(());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let version = match target {
        Target::Server(_) => loop {
            let status = status(target, name).await?;
            match status.get("replacing").filter(|r| !r.is_null()) {
                Some(r) => bar.set_message(progress(r)),
                None => break status["version"].clone(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        },
        Target::Embedded(o) => {
            // No server builds it: this process does, while the bar
            // follows its progress.
            let engine = o.engine.clone();
            let watched = bar.clone();
            let view = name.to_string();
            let ticker = tokio::spawn(async move {
                loop {
                    if let Ok(Some(r)) = engine.replacing(&view).await {
                        watched.set_message(describe(
                            r.version,
                            r.records_applied,
                            r.rate,
                            r.lag_micros as f64 / 1e6,
                            r.eta_seconds,
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
            let built = o.engine.catch_up().await;
            ticker.abort();
            built?;
            status(target, name).await?["version"].clone()
        }
    };
    bar.finish_and_clear();
    eprintln!("view {name} now serves version {version}");
    Ok(())
}

fn done(out: kappa_engine::Output) -> String {
    match out {
        kappa_engine::Output::Done(m) => m,
        kappa_engine::Output::Rows(_) => String::new(),
    }
}

async fn status(target: &Target, name: &str) -> anyhow::Result<Value> {
    Ok(match target {
        Target::Server(http) => {
            http.json("GET", &format!("/v1/views/{}", segment(name)), None, &[])
                .await?
        }
        Target::Embedded(o) => {
            let def = o
                .engine
                .view_or_building(name)
                .await
                .ok_or_else(|| anyhow::anyhow!("no view {name:?}"))?;
            kappa_server::status::view_json(&o.engine, &def).await?
        }
    })
}

fn progress(r: &Value) -> String {
    describe(
        r["version"].as_u64().unwrap_or(0) as u32,
        r["records_applied"].as_u64().unwrap_or(0),
        r["rate"].as_f64().unwrap_or(0.0),
        r["lag_ms"].as_f64().unwrap_or(0.0) / 1e3,
        r["eta_seconds"].as_f64(),
    )
}

fn describe(version: u32, applied: u64, rate: f64, behind_s: f64, eta: Option<f64>) -> String {
    let eta = match eta {
        Some(s) if s >= 1.0 => format!(
            ", about {} left",
            indicatif::HumanDuration(Duration::from_secs_f64(s))
        ),
        Some(_) => ", almost there".to_string(),
        None => String::new(),
    };
    format!(
        "building version {version}: {applied} records applied ({rate:.0}/s), {behind_s:.1} s of log behind{eta}"
    )
}
