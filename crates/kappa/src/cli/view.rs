//! `kappa view list|describe|replace|rebuild|rollback` and `kappa
//! status`: each view's version, frontier, lag, rate (records/s) and dead
//! letters.

use super::target::Target;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ViewCommand {
    /// Every view with its frontier and lag.
    List,
    /// One view: its definition, status and recent dead letters (JSON).
    Describe { name: String },
    /// Give a view a new definition: the next version is built from the
    /// log beside the live one, which serves until it has caught up.
    Replace {
        name: String,
        /// The new SELECT.
        sql: String,
        /// Return once started, without following the build.
        #[arg(long)]
        no_wait: bool,
    },
    /// Rebuild a view from the log (the same definition, a new version
    /// built beside the live one). From a topic whose history was
    /// truncated, it starts from the view's newest snapshot.
    Rebuild {
        name: String,
        /// Start from a snapshot and replay only what follows it: the
        /// newest one of the view (no value, or `latest`), or a file.
        #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "latest")]
        from_snapshot: Option<String>,
        /// Drop the live version first and rebuild in its place: no second
        /// copy of the state on disk, but the view answers no query until
        /// it has caught up (downtime).
        #[arg(long)]
        in_place: bool,
        #[arg(long)]
        no_wait: bool,
    },
    /// Write a snapshot of a view: its rows and state at its frontier,
    /// checksummed, to start a rebuild or another instance from, and to
    /// let `kappa topic truncate` drop the history before it.
    Snapshot {
        name: String,
        /// Where to write it (default: the data directory's snapshots/).
        #[arg(long, value_name = "PATH")]
        out: Option<std::path::PathBuf>,
    },
    /// Create a view from a snapshot (on a new state store over the same
    /// log, say): it is loaded, catches up with the log, then serves.
    Restore {
        /// The snapshot file (on the server's machine, with --server).
        path: std::path::PathBuf,
        /// The view's name (default: the snapshot's).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Bring back a view's previous version (kept after each replace).
    Rollback {
        name: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Rebuild a view from the log up to its frontier, beside it, and
    /// compare: "identical", or counts and the first differing rows (exit
    /// status 1).
    Verify { name: String },
}

async fn views(target: &Target) -> anyhow::Result<Vec<Value>> {
    Ok(match target {
        Target::Server(http) => http.json("GET", "/v1/views", None, &[]).await?["views"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Target::Embedded(opened) => {
            let mut out = Vec::new();
            for def in opened.engine.views().await {
                out.push(kappa_server::status::view_json(&opened.engine, &def).await?);
            }
            out
        }
    })
}

fn status_table(views: &[Value]) -> String {
    let rows: Vec<Value> = views
        .iter()
        .map(|v| {
            json!([
                v["name"],
                v["version"],
                v["frontier"],
                v["lag_ms"],
                v["rate"],
                v["dead_letters"],
                v["late_records"],
                v["replacing"]["version"]
            ])
        })
        .collect();
    super::table::render(&json!({
        "columns": [{"name": "view"}, {"name": "version"}, {"name": "frontier"}, {"name": "lag_ms"}, {"name": "rate"}, {"name": "dead_letters"}, {"name": "late_records"}, {"name": "building"}],
        "rows": rows,
    }))
}

pub async fn run(target: Target, cmd: ViewCommand) -> anyhow::Result<ExitCode> {
    use super::regen::Start;
    let regen = match cmd {
        ViewCommand::Replace { name, sql, no_wait } => {
            Some((name, Start::Replace { sql }, no_wait))
        }
        ViewCommand::Rebuild {
            name,
            from_snapshot,
            in_place,
            no_wait,
        } => {
            let options = kappa_engine::RebuildOptions {
                from_snapshot: from_snapshot.map(|s| match s.as_str() {
                    "latest" => kappa_engine::FromSnapshot::Latest,
                    path => kappa_engine::FromSnapshot::Path(path.into()),
                }),
                in_place,
            };
            Some((name, Start::Rebuild(options), no_wait))
        }
        ViewCommand::Restore {
            path,
            as_name,
            no_wait,
        } => Some((
            as_name.clone().unwrap_or_default(),
            Start::Restore { path, as_name },
            no_wait,
        )),
        ViewCommand::Snapshot { name, out } => {
            let done = super::regen::snapshot(&target, &name, out).await;
            close(target);
            done?;
            return Ok(ExitCode::SUCCESS);
        }
        ViewCommand::Rollback { name, no_wait } => Some((name, Start::Rollback, no_wait)),
        ViewCommand::Verify { name } => {
            let identical = verify(&target, &name).await;
            close(target);
            return Ok(if identical? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        other => {
            list_or_describe(&target, other).await?;
            None
        }
    };
    if let Some((name, start, no_wait)) = regen {
        let done = super::regen::run(&target, &name, start, !no_wait).await;
        close(target);
        done?;
        return Ok(ExitCode::SUCCESS);
    }
    close(target);
    Ok(ExitCode::SUCCESS)
}

async fn list_or_describe(target: &Target, cmd: ViewCommand) -> anyhow::Result<()> {
    let target = &target;
    match cmd {
        ViewCommand::List => print!("{}", status_table(&views(target).await?)),
        ViewCommand::Describe { name } => {
            let v = match target {
                Target::Server(http) => {
                    http.json(
                        "GET",
                        &format!("/v1/views/{}", super::target::segment(&name)),
                        None,
                        &[],
                    )
                    .await?
                }
                Target::Embedded(opened) => {
                    let def = opened.engine.view_or_building(&name).await.ok_or_else(|| {
                        anyhow::anyhow!("no view {name:?}; `kappa view list` shows them")
                    })?;
                    let mut v = kappa_server::status::view_json(&opened.engine, &def).await?;
                    v["recent_dead_letters"] = Value::Array(
                        opened
                            .engine
                            .dead_letters(&name)
                            .await?
                            .into_iter()
                            .rev()
                            .take(20)
                            .collect(),
                    );
                    v
                }
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ViewCommand::Replace { .. }
        | ViewCommand::Rebuild { .. }
        | ViewCommand::Snapshot { .. }
        | ViewCommand::Restore { .. }
        | ViewCommand::Rollback { .. }
        | ViewCommand::Verify { .. } => {}
    }
    Ok(())
}

/// Prints what verify found; whether the view is identical to its rebuild.
async fn verify(target: &Target, name: &str) -> anyhow::Result<bool> {
    let report = match target {
        Target::Server(http) => {
            let path = format!("/v1/views/{}/verify", super::target::segment(name));
            http.json("POST", &path, None, &[]).await?
        }
        Target::Embedded(o) => {
            kappa_server::status::verify_json(name, &o.engine.verify_view(name).await?)
        }
    };
    if report["identical"] == true {
        println!(
            "identical: view {name} version {} ({} rows at {}) equals its rebuild from the log",
            report["version"],
            report["rows"],
            report["frontier"].as_str().unwrap_or_default()
        );
        return Ok(true);
    }
    println!(
        "DIFFERENT: view {name} version {} at {}: {} rows differ, {} only in the view, {} only in the rebuild",
        report["version"],
        report["frontier"].as_str().unwrap_or_default(),
        report["differing"],
        report["only_live"],
        report["only_rebuilt"]
    );
    for d in report["first_differences"].as_array().into_iter().flatten() {
        println!("  view:    {}\n  rebuilt: {}", d["live"], d["rebuilt"]);
    }
    println!("(kappa view rebuild {name} builds a fresh version from the log)");
    Ok(false)
}

/// `kappa status`: where the answers come from, and every view.
pub async fn status(target: Target) -> anyhow::Result<ExitCode> {
    match &target {
        Target::Server(http) => println!("server {}", http.url()),
        Target::Embedded(_) => println!(
            "no server running: opened the data directory (views caught up to the log's head)"
        ),
    }
    let views = views(&target).await?;
    if views.is_empty() {
        println!("no views; create one with kappa sql \"CREATE VIEW v AS SELECT ...\"");
    } else {
        print!("{}", status_table(&views));
    }
    close(target);
    Ok(ExitCode::SUCCESS)
}

fn close(target: Target) {
    if let Target::Embedded(opened) = target {
        opened.close();
    }
}
