//! `kappa topic create|list|describe|delete`.

use crate::parse;
use clap::Subcommand;
use kappa_log::{Cleanup, Log, Retention, TopicConfig};
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
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
    /// Show a topic's configuration and partitions.
    Describe { name: String },
    /// Delete a topic and its records.
    Delete { name: String },
}

pub async fn run(data_dir: &Path, cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    let log = super::open(data_dir)?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            retention,
            compact,
            tombstone_retention,
        } => {
            let cleanup = if compact {
                Cleanup::Compact {
                    tombstone_retention_ms: tombstone_retention,
                }
            } else {
                Cleanup::Delete
            };
            let config = TopicConfig {
                partitions,
                retention,
                cleanup,
            };
            log.create_topic(&name, config).await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            let topics = log.list_topics().await?;
            if topics.is_empty() {
                println!("no topics; create one with `kappa topic create NAME`");
            }
            for t in topics {
                println!(
                    "{}\t{} partition(s)\t{}",
                    t.name,
                    t.config.partitions,
                    describe_policy(&t.config)
                );
            }
        }
        TopicCommand::Describe { name } => {
            let d = log.describe_topic(&name).await?;
            println!("topic      {}", d.info.name);
            println!("partitions {}", d.info.config.partitions);
            println!("policy     {}", describe_policy(&d.info.config));
            println!("created    {}", d.info.created.to_rfc3339());
            println!("partition  start_offset  end_offset  bytes  last_log_time");
            for p in d.partitions {
                println!(
                    "{:<9}  {:<12}  {:<10}  {:<5}  {}",
                    p.partition,
                    p.start_offset,
                    p.end_offset,
                    p.bytes,
                    p.last_log_time.map_or("-".to_string(), |t| t.to_rfc3339())
                );
            }
        }
        TopicCommand::Delete { name } => {
            log.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
