//! `kappa produce TOPIC [FILE|-]`: NDJSON in, one record per line.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kappa_log::{AppendBatch, AppendRecord, Log, Token};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// NDJSON file to read; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Use this top-level field of each record as its key.
    #[arg(long)]
    pub key_field: Option<String>,
    /// Records per atomic, durable append.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// After each durable batch, print `{"acked":N,"token":"..."}` to stdout.
    #[arg(long)]
    pub print_acks: bool,
}

pub async fn run(data_dir: &Path, args: ProduceArgs) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let log = super::open(data_dir)?;
    log.describe_topic(&args.topic).await?;
    let input: Box<dyn BufRead> = match &args.file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
        )),
    };
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {human_pos} records appended ({per_sec}, {elapsed})",
        )
        .expect("progress template"),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(args.batch_size);
    let mut out = Acks {
        print: args.print_acks,
        appended: 0,
        token: None,
    };
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                flush(&log, &mut batch, &mut out, &progress).await?;
                bail!(
                    "cannot read line {line_no} ({e}); the {} records before it were appended",
                    out.appended
                );
            }
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match parse_line(&args, text) {
            Ok(record) => batch.push(record),
            Err(e) => {
                // Keep what came before, append nothing from here on.
                flush(&log, &mut batch, &mut out, &progress).await?;
                bail!(
                    "line {line_no}: {e}; the {} records before it were appended, nothing from line {line_no} on",
                    out.appended
                );
            }
        }
        if batch.len() >= args.batch_size {
            flush(&log, &mut batch, &mut out, &progress).await?;
        }
    }
    flush(&log, &mut batch, &mut out, &progress).await?;
    let (appended, token) = (out.appended, out.token);
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "appended {appended} records to {} in {secs:.2}s ({:.0} records/s)",
        args.topic,
        appended as f64 / secs.max(1e-9)
    );
    match token {
        Some(t) => println!("token {t}"),
        None => println!("no records appended"),
    }
    Ok(ExitCode::SUCCESS)
}

struct Acks {
    print: bool,
    appended: u64,
    token: Option<Token>,
}

/// Appends the pending batch durably and reports it.
async fn flush(
    log: &kappa_log_embedded::EmbeddedLog,
    batch: &mut Vec<AppendRecord>,
    acks: &mut Acks,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len() as u64;
    let result = log
        .append(AppendBatch::new(std::mem::take(batch)))
        .await
        .with_context(|| {
            format!(
                "append failed after {} records had been appended",
                acks.appended
            )
        })?;
    acks.appended += n;
    acks.token = Some(result.token);
    progress.set_position(acks.appended);
    if acks.print {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "{{\"acked\":{},\"token\":\"{}\"}}",
            acks.appended, result.token
        )?;
        stdout.flush()?;
    }
    Ok(())
}

fn parse_line(args: &ProduceArgs, text: &str) -> Result<AppendRecord, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut record = AppendRecord::new(args.topic.clone(), Bytes::copy_from_slice(text.as_bytes()));
    if let Some(field) = &args.key_field {
        let key = match value.get(field) {
            None | Some(serde_json::Value::Null) => {
                return Err(format!("the key field {field:?} is missing or null"));
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        record.key = Some(Bytes::from(key));
    }
    Ok(record)
}
