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
    Replace { sql: String },
    Rebuild,
    Rollback,
}

pub async fn run(target: &Target, name: &str, start: Start, wait: bool) -> anyhow::Result<()> {
    let message = match (target, &start) {
        (_, Start::Replace { sql }) => {
            target
                .statement(&format!(
                    "CREATE OR REPLACE VIEW \"{}\" AS {sql}",
                    name.replace('"', "\"\"")
                ))
                .await?
        }
        (Target::Server(http), _) => {
            let action = if matches!(start, Start::Rebuild) {
                "rebuild"
            } else {
                "rollback"
            };
            let path = format!("/v1/views/{}/{action}", segment(name));
            http.json("POST", &path, None, &[]).await?["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
        (Target::Embedded(o), Start::Rebuild) => done(o.engine.rebuild_view(name).await?),
        (Target::Embedded(o), _) => done(o.engine.rollback_view(name).await?),
    };
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
                        watched.set_message(format!(
                            "building version {}: {} records applied ({:.0}/s), {:.1} s of log behind",
                            r.version,
                            r.records_applied,
                            r.rate,
                            r.lag_micros as f64 / 1e6
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
                .view(name)
                .await
                .ok_or_else(|| anyhow::anyhow!("no view {name:?}"))?;
            kappa_server::status::view_json(&o.engine, &def).await?
        }
    })
}

fn progress(r: &Value) -> String {
    format!(
        "building version {}: {} records applied ({}/s), {:.1} s of log behind",
        r["version"],
        r["records_applied"],
        r["rate"],
        r["lag_ms"].as_f64().unwrap_or(0.0) / 1e3
    )
}
