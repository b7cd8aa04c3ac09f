//! `kappa consume TOPIC`: NDJSON out, every partition, in log-time order,
//! to the end of the topic (or on, with `--follow`), through a server
//! (its SSE follow stream) or on the data directory.

use super::target::{StreamEnd, Target, segment, with_query};
use anyhow::bail;
use clap::Args;
use kappa_log::{Log, LogTime, ReadLimits};
use kappa_server::topic_read::{ReadStart, TopicRead, record_json};
use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::sync::Arc;
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

impl ConsumeArgs {
    fn start(&self) -> ReadStart {
        match (self.from_offset, self.from_time) {
            (Some(offset), _) => ReadStart::Offset(offset),
            (None, Some(t)) => ReadStart::After(LogTime(t.0.saturating_sub(1))),
            (None, None) => ReadStart::Beginning,
        }
    }
}

/// Where records go: stdout, until the limit or a closed pipe.
struct Out {
    w: std::io::BufWriter<std::io::StdoutLock<'static>>,
    printed: u64,
    limit: Option<u64>,
}

impl Out {
    /// Writes one line; `false` once no more are wanted.
    fn line(&mut self, line: &str) -> anyhow::Result<bool> {
        if let Err(e) = writeln!(self.w, "{line}") {
            return pipe_closed(e);
        }
        self.printed += 1;
        Ok(self.limit.is_none_or(|l| self.printed < l))
    }

    /// Flushes; `false` if the reader has gone.
    fn flush(&mut self) -> anyhow::Result<bool> {
        match self.w.flush() {
            Ok(()) => Ok(true),
            Err(e) => pipe_closed(e),
        }
    }
}

/// A reader that went away (`| head`) is the normal end.
fn pipe_closed(e: std::io::Error) -> anyhow::Result<bool> {
    if e.kind() == ErrorKind::BrokenPipe {
        Ok(false)
    } else {
        Err(e.into())
    }
}

pub async fn run(target: Target, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let mut out = Out {
        w: std::io::BufWriter::new(std::io::stdout().lock()),
        printed: 0,
        limit: args.limit,
    };
    if args.limit == Some(0) {
        target.close();
        return Ok(ExitCode::SUCCESS);
    }
    let result = match &target {
        Target::Server(http) => {
            let (from_start, from_offset, after) = match args.start() {
                ReadStart::Offset(o) => (None, Some(o.to_string()), None),
                ReadStart::After(t) => (None, None, Some(t.0.to_string())),
                _ => (Some("true".to_string()), None, None),
            };
            let path = with_query(
                &format!("/v1/topics/{}/follow", segment(&args.topic)),
                &[
                    ("from_start", from_start),
                    ("from_offset", from_offset),
                    ("after", after),
                    ("until", (!args.follow).then(|| "head".to_string())),
                ],
            );
            let end = http
                .events(&path, |kind, data| match kind {
                    "record" => {
                        if !out.line(data)? {
                            return Ok(false);
                        }
                        // Live records show as they come.
                        if args.follow { out.flush() } else { Ok(true) }
                    }
                    "end" => Ok(false),
                    "error" => {
                        let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                        bail!(
                            "{}",
                            v["error"]["message"]
                                .as_str()
                                .unwrap_or("the stream failed")
                        )
                    }
                    _ => Ok(true),
                })
                .await;
            match end {
                Ok(StreamEnd::Stopped) => Ok(()),
                Ok(StreamEnd::Closed) => Err(anyhow::anyhow!(
                    "the server closed the stream after {} records",
                    out.printed
                )),
                Err(e) => Err(e),
            }
        }
        Target::Embedded(opened) => {
            let log: Arc<dyn Log> = opened.log.clone();
            local(log, &args, &mut out).await
        }
    };
    out.flush()?;
    target.close();
    result.map(|()| ExitCode::SUCCESS)
}

async fn local(log: Arc<dyn Log>, args: &ConsumeArgs, out: &mut Out) -> anyhow::Result<()> {
    let mut read = TopicRead::open(log, &args.topic, args.start(), !args.follow).await?;
    loop {
        let Some(batch) = read.next(ReadLimits::default()).await? else {
            return Ok(());
        };
        if batch.is_empty() {
            if !out.flush()? {
                return Ok(());
            }
            read.wait(Duration::from_secs(1)).await?;
            continue;
        }
        for r in batch {
            if !out.line(&record_json(&r).to_string())? {
                return Ok(());
            }
        }
    }
}
