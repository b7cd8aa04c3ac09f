//! `kappa topic create|list|describe|delete`, through a server or on the
//! data directory: both build the same SQL and read the same JSON.

use super::target::{Target, segment};
use crate::parse;
use clap::Subcommand;
use kappa_log::{Cleanup, LogTime, PartitionInfo, Retention, TopicConfig};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic (raw JSON; `kappa sql "CREATE TOPIC ..."` gives it
    /// a schema).
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// forever (default), an age (7d, 12h) or a size per partition (10GB).
        #[arg(long, default_value = "forever", value_parser = parse::retention)]
        retention: Retention,
        /// Keep only the latest record per key (a null value is a tombstone).
        #[arg(long)]
        compact: bool,
        /// With --compact: how long tombstones are kept.
        #[arg(long, default_value = "1d", value_parser = parse::duration_ms)]
        tombstone_retention: u64,
    },
    /// List topics.
    List,
    /// Show a topic's configuration, schema and partitions.
    Describe { name: String },
    /// Delete a topic and its records (refused while a view reads it).
    Delete { name: String },
    /// Drop a topic's history before a point, once every view that reads
    /// it has a snapshot past the point (`kappa view snapshot`); else it
    /// is refused, naming the views that block it.
    Truncate {
        name: String,
        /// A token (every record up to it goes; a snapshot prints its
        /// own) or a timestamp (every record before it goes).
        #[arg(long, value_name = "POSITION")]
        before: String,
    },
}

pub async fn run(target: Target, cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    let result = command(&target, cmd).await;
    target.close();
    result
}

async fn command(target: &Target, cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            retention,
            compact,
            tombstone_retention,
        } => {
            let mut with = vec![
                format!("partitions = {partitions}"),
                format!(
                    "retention = '{}'",
                    kappa_log::units::retention_text(retention)
                ),
            ];
            if compact {
                with.push("cleanup = 'compact'".into());
                with.push(format!("tombstone_retention = '{tombstone_retention}ms'"));
            }
            let sql = format!("CREATE TOPIC {} WITH ({})", ident(&name), with.join(", "));
            println!("{}", target.statement(&sql).await?);
        }
        TopicCommand::List => {
            let listed = match target {
                Target::Server(http) => http.json("GET", "/v1/topics", None, &[]).await?,
                Target::Embedded(o) => kappa_server::status::topics_json(&o.engine).await?,
            };
            let topics = listed["topics"].as_array().cloned().unwrap_or_default();
            if topics.is_empty() {
                println!("no topics; create one with `kappa topic create NAME`");
            }
            for t in topics {
                println!(
                    "{}\t{} partition(s)\t{}\t{}",
                    t["name"].as_str().unwrap_or_default(),
                    t["partitions"],
                    describe_policy(&config(&t)?),
                    describe_schema(&t["schema"]),
                );
            }
        }
        TopicCommand::Describe { name } => {
            let d = match target {
                Target::Server(http) => {
                    let path = format!("/v1/topics/{}", segment(&name));
                    http.json("GET", &path, None, &[]).await?
                }
                Target::Embedded(o) => kappa_server::status::topic_json(&o.engine, &name).await?,
            };
            println!("topic      {}", d["name"].as_str().unwrap_or_default());
            println!("partitions {}", d["partitions"]);
            println!("policy     {}", describe_policy(&config(&d)?));
            println!("schema     {}", describe_schema(&d["schema"]));
            println!("created    {}", d["created"].as_str().unwrap_or_default());
            println!("partition  start_offset  end_offset  bytes  last_log_time");
            let extents: Vec<PartitionInfo> = serde_json::from_value(d["extents"].clone())?;
            for p in extents {
                println!(
                    "{:<9}  {:<12}  {:<10}  {:<5}  {}",
                    p.partition,
                    p.start_offset,
                    p.end_offset,
                    p.bytes,
                    p.last_log_time
                        .map_or("-".to_string(), |t: LogTime| t.to_rfc3339())
                );
            }
        }
        TopicCommand::Delete { name } => {
            println!(
                "{}",
                target
                    .statement(&format!("DROP TOPIC {}", ident(&name)))
                    .await?
            );
        }
        TopicCommand::Truncate { name, before } => {
            let message = match target {
                Target::Server(http) => {
                    let body = serde_json::json!({ "before": before });
                    http.json(
                        "POST",
                        &format!("/v1/topics/{}/truncate", segment(&name)),
                        Some(body.to_string().into()),
                        &[("content-type", "application/json")],
                    )
                    .await?["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }
                Target::Embedded(o) => match o.engine.truncate_topic(&name, &before).await? {
                    kappa_engine::Output::Done(m) => m,
                    kappa_engine::Output::Rows(_) => String::new(),
                },
            };
            println!("{message}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A name as a quoted SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn config(topic: &Value) -> anyhow::Result<TopicConfig> {
    serde_json::from_value(topic["config"].clone())
        .map_err(|e| anyhow::anyhow!("the topic's config is not understood ({e})"))
}

fn describe_schema(schema: &Value) -> String {
    match schema["columns"].as_array() {
        None => "raw JSON".into(),
        Some(cols) => {
            let cols: Vec<String> = cols
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["name"].as_str().unwrap_or_default(),
                        c["type"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            format!("({})", cols.join(", "))
        }
    }
}

fn describe_policy(config: &TopicConfig) -> String {
    let retention = match config.retention {
        Retention::Forever => "retention forever".to_string(),
        Retention::AgeMs(ms) => format!("retention {ms} ms"),
        Retention::BytesPerPartition(b) => format!("retention {b} bytes per partition"),
    };
    match config.cleanup {
        Cleanup::Delete => retention,
        Cleanup::Compact {
            tombstone_retention_ms,
        } => {
            format!("{retention}, compacted (tombstones kept {tombstone_retention_ms} ms)")
        }
    }
}
