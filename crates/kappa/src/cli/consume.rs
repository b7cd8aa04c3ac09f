//! `kappa consume TOPIC`: NDJSON out, every partition, in log-time order.

use anyhow::bail;
use clap::Args;
use kappa_log::{Log, LogTime, ReadFrom, ReadLimits, Record};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start every partition at this offset.
    #[arg(long, conflicts_with = "from_time")]
    pub from_offset: Option<u64>,
    /// Start at this log time (RFC 3339 or microseconds since the epoch).
    #[arg(long, value_parser = crate::parse::time)]
    pub from_time: Option<LogTime>,
    /// Keep waiting for new records (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub async fn run(data_dir: &Path, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let log = super::open(data_dir)?;
    let description = log.describe_topic(&args.topic).await?;
    // Offsets map to a log time per partition; start the merged reader just
    // before the earliest and skip records below the offset.
    let mut min_offsets: HashMap<u32, u64> = HashMap::new();
    let after = match (args.from_offset, args.from_time) {
        (Some(offset), _) => {
            let mut earliest: Option<u64> = None;
            for p in &description.partitions {
                if offset < p.start_offset {
                    bail!(
                        "offset {offset} is out of range for {}/{}: readable offsets start at {} (retention removed older ones)",
                        args.topic,
                        p.partition,
                        p.start_offset
                    );
                }
                min_offsets.insert(p.partition, offset);
                let first = log
                    .read(
                        &args.topic,
                        p.partition,
                        ReadFrom::Offset(offset.min(p.end_offset)),
                        ReadLimits {
                            max_records: 1,
                            max_bytes: 1,
                        },
                    )
                    .await?;
                if let Some(r) = first.first() {
                    earliest = Some(earliest.map_or(r.log_time.0, |e| e.min(r.log_time.0)));
                }
            }
            LogTime(earliest.map_or(log.head().await?.log_time().0, |e| e - 1))
        }
        (None, Some(t)) => LogTime(t.0.saturating_sub(1)),
        (None, None) => LogTime::ZERO,
    };
    let mut reader = log.merged_reader(&[args.topic.as_str()], after).await?;
    let stop_at = log.head().await?.log_time();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    loop {
        let batch = reader.next_batch(ReadLimits::default()).await?;
        if batch.is_empty() {
            if !args.follow && reader.position() >= stop_at {
                break;
            }
            if let Err(e) = out.flush() {
                return broken_pipe_ok(e);
            }
            if args.follow {
                log.wait_for_commit(reader.position(), Duration::from_secs(1))
                    .await?;
            }
            continue;
        }
        for r in batch {
            if min_offsets.get(&r.partition).is_some_and(|m| r.offset < *m) {
                continue;
            }
            if let Err(e) = writeln!(out, "{}", to_json(&r)) {
                return broken_pipe_ok(e);
            }
            printed += 1;
            if args.limit.is_some_and(|l| printed >= l) {
                out.flush().ok();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    if let Err(e) = out.flush() {
        return broken_pipe_ok(e);
    }
    Ok(ExitCode::SUCCESS)
}

fn broken_pipe_ok(e: std::io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(e.into())
    }
}

/// A record as one JSON line. A value that is JSON is embedded as JSON;
/// anything else is a string (lossy UTF-8).
pub fn to_json(r: &Record) -> String {
    let value = match &r.value {
        None => serde_json::Value::Null,
        Some(v) => serde_json::from_slice(v)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(v).into_owned())),
    };
    let mut obj = serde_json::Map::new();
    obj.insert("topic".into(), r.topic.to_string().into());
    obj.insert("partition".into(), r.partition.into());
    obj.insert("offset".into(), r.offset.into());
    obj.insert("log_time".into(), r.log_time.to_rfc3339().into());
    obj.insert(
        "key".into(),
        r.key.as_ref().map_or(serde_json::Value::Null, |k| {
            String::from_utf8_lossy(k).into_owned().into()
        }),
    );
    obj.insert("value".into(), value);
    if let Some(t) = r.event_time {
        obj.insert(
            "event_time".into(),
            kappa_log::LogTime(t.max(0) as u64).to_rfc3339().into(),
        );
    }
    if !r.headers.is_empty() {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|h| {
                let v = h.value.as_ref().map_or(serde_json::Value::Null, |v| {
                    String::from_utf8_lossy(v).into_owned().into()
                });
                (h.name.clone(), v)
            })
            .collect();
        obj.insert("headers".into(), headers.into());
    }
    serde_json::Value::Object(obj).to_string()
}
