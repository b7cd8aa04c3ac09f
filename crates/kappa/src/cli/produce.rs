//! `kappa produce TOPIC [FILE|-]`: NDJSON in, one record per line, in
//! atomic durable batches, through a server or on the data directory
//! (both check records against the topic's schema the same way).

use super::target::{Target, segment};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// NDJSON file to read; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// For a topic without a key column: use this top-level field of each
    /// record as its key.
    #[arg(long)]
    pub key_field: Option<String>,
    /// Records per atomic, durable append.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// After each durable batch, print `{"acked":N,"token":"..."}` to stdout.
    #[arg(long)]
    pub print_acks: bool,
}

pub async fn run(target: Target, args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let result = produce(&target, &args).await;
    target.close();
    result
}

async fn produce(target: &Target, args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // An unknown topic is an error even when the input is empty.
    match target {
        Target::Server(http) => {
            let path = format!("/v1/topics/{}", segment(&args.topic));
            http.json("GET", &path, None, &[]).await?;
        }
        Target::Embedded(o) => {
            kappa_server::status::topic_json(&o.engine, &args.topic).await?;
        }
    }
    let input: Box<dyn BufRead> = match &args.file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p.as_os_str() == "-" => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
        )),
    };
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {human_pos} records appended ({per_sec}, {elapsed})",
            )
            .expect("progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut out = Acks {
        print: args.print_acks,
        appended: 0,
        token: None,
    };
    let mut batch = Batch::default();
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                flush(target, args, &mut batch, &mut out, &progress).await?;
                bail!(
                    "cannot read line {line_no} ({e}); the {} records before it were appended",
                    out.appended
                );
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        batch.records.push(Bytes::from(line));
        batch.lines.push(line_no);
        if batch.records.len() >= args.batch_size {
            flush(target, args, &mut batch, &mut out, &progress).await?;
        }
    }
    flush(target, args, &mut batch, &mut out, &progress).await?;
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "appended {} records to {} in {secs:.2}s ({:.0} records/s)",
        out.appended,
        args.topic,
        out.appended as f64 / secs.max(1e-9)
    );
    match out.token {
        Some(t) => println!("token {t}"),
        None => println!("no records appended"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Records waiting to be appended, with the input line of each.
#[derive(Default)]
struct Batch {
    records: Vec<Bytes>,
    lines: Vec<usize>,
}

struct Acks {
    print: bool,
    appended: u64,
    token: Option<String>,
}

/// Appends the pending batch durably and reports it. If a record does
/// not fit, the records before it are appended, and the error names its
/// line.
async fn flush(
    target: &Target,
    args: &ProduceArgs,
    batch: &mut Batch,
    acks: &mut Acks,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    if batch.records.is_empty() {
        return Ok(());
    }
    let records = std::mem::take(&mut batch.records);
    let lines = std::mem::take(&mut batch.lines);
    match target
        .append(&args.topic, records.clone(), args.key_field.clone())
        .await?
    {
        Ok(token) => acked(acks, records.len(), token, progress),
        Err(refused) => {
            let Some(bad) = refused.record.filter(|i| *i < records.len()) else {
                bail!(
                    "{}; lines {}..={} were not appended ({} records before them were)",
                    refused.message,
                    lines[0],
                    lines[lines.len() - 1],
                    acks.appended
                );
            };
            if bad > 0 {
                let before = records[..bad].to_vec();
                match target
                    .append(&args.topic, before, args.key_field.clone())
                    .await?
                {
                    Ok(token) => acked(acks, bad, token, progress)?,
                    Err(again) => bail!("{}", again.message),
                }
            }
            bail!(
                "line {}: {}; the {} records before it were appended, nothing from line {} on",
                lines[bad],
                refused.message.trim_end_matches("; nothing was appended"),
                acks.appended,
                lines[bad]
            );
        }
    }
}

fn acked(acks: &mut Acks, n: usize, token: String, progress: &ProgressBar) -> anyhow::Result<()> {
    acks.appended += n as u64;
    progress.set_position(acks.appended);
    if acks.print {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "{{\"acked\":{},\"token\":\"{token}\"}}",
            acks.appended
        )?;
        stdout.flush()?;
    }
    acks.token = Some(token);
    Ok(())
}
