//! Benchmark program for the embedded log. Run on a release build:
//!
//! ```text
//! cargo run --release -p kappa-log-bench -- --records 1000000
//! ```
//!
//! Every figure comes with a floor measured in the same run (the disk's own
//! sequential fdatasync bandwidth), because absolute numbers move from run to
//! run on shared machines.

use kappa_log_bench::workload;

use bytes::Bytes;
use clap::Parser;
use kappa_log::{AppendBatch, AppendRecord, Log, LogTime, ReadFrom, ReadLimits, TopicConfig};
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Records in the workload.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Distinct accounts (keys).
    #[arg(long, default_value_t = 100_000)]
    accounts: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to put the logs (a fresh directory per step is made inside).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Time budget per append configuration, seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only these steps (comma-separated: disk, append, latency, replay).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Step>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Step {
    Disk,
    Append,
    Latency,
    Replay,
}

const TOPIC: &str = "transactions";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile_dir(&base)?;
    println!(
        "workload: {} records, {} accounts, seed {}",
        args.records, args.accounts, args.seed
    );
    let records = workload::generate(args.records, args.accounts, args.seed);
    let payload_bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    println!(
        "average record: {:.1} bytes of value, {:.1} bytes of key+value",
        records.iter().map(|(_, v)| v.len()).sum::<usize>() as f64 / records.len() as f64,
        payload_bytes as f64 / records.len() as f64
    );
    let mut results = serde_json::Map::new();
    let run = |step: Step| args.only.is_empty() || args.only.contains(&step);

    // The append step reports its bandwidth as a fraction of this floor.
    let disk = if run(Step::Disk) || run(Step::Append) {
        let disk = disk_sync_bandwidth(&root.join("disk-floor"), args.seconds)?;
        println!(
            "\ndisk floor: sequential 1 MiB writes + fdatasync: {:.1} MB/s",
            disk / 1e6
        );
        results.insert("disk_sync_bytes_per_sec".into(), json!(disk));
        disk
    } else {
        f64::NAN
    };
    if run(Step::Append) {
        append_step(&root, &records, disk, args.seconds, &mut results)?;
    }
    if run(Step::Latency) {
        latency_step(&root, &records, args.seconds, &mut results)?;
    }
    if run(Step::Replay) {
        replay_step(&root, &records, &mut results)?;
    }
    std::fs::remove_dir_all(&root).ok();
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
        println!("\nresults written to {}", path.display());
    }
    Ok(())
}

type Results = serde_json::Map<String, serde_json::Value>;

fn append_step(
    root: &Path,
    records: &Arc<Vec<(Bytes, Bytes)>>,
    disk: f64,
    seconds: f64,
    results: &mut Results,
) -> anyhow::Result<()> {
    println!("\ndurable append throughput (4 partitions, keyed)");
    println!(
        "{:>7} {:>9} {:>12} {:>10} {:>10} {:>12}",
        "batch", "producers", "records/s", "MB/s log", "of disk", "records"
    );
    let mut throughput = Vec::new();
    for batch in [1usize, 100, 10_000] {
        for producers in [1usize, 4] {
            let dir = root.join(format!("append-{batch}-{producers}"));
            let r = append_throughput(&dir, records, batch, producers, seconds)?;
            println!(
                "{batch:>7} {producers:>9} {:>12.0} {:>10.1} {:>9.1}% {:>12}",
                r.records_per_sec,
                r.log_bytes_per_sec / 1e6,
                100.0 * r.log_bytes_per_sec / disk,
                r.records
            );
            throughput.push(json!({
                "batch": batch, "producers": producers, "records": r.records,
                "records_per_sec": r.records_per_sec, "log_bytes_per_sec": r.log_bytes_per_sec,
                "fraction_of_disk": r.log_bytes_per_sec / disk, "syncs": r.syncs,
            }));
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    results.insert("append_throughput".into(), json!(throughput));
    Ok(())
}

fn latency_step(
    root: &Path,
    records: &Arc<Vec<(Bytes, Bytes)>>,
    seconds: f64,
    results: &mut Results,
) -> anyhow::Result<()> {
    println!("\nsingle-record durable append latency");
    println!(
        "{:>7} {:>9} {:>10} {:>10} {:>12} {:>8} {:>13} {:>8}",
        "as", "producers", "p50 ms", "p99 ms", "records/s", "vs one", "records/sync", "sync ms"
    );
    let mut latency = Vec::new();
    for (mode, name) in [(Producers::Threads, "threads"), (Producers::Tasks, "tasks")] {
        let mut single_rate = 0.0;
        for producers in [1usize, 16] {
            let dir = root.join(format!("latency-{name}-{producers}"));
            let r = append_latency(&dir, records, producers, seconds, mode)?;
            if producers == 1 {
                single_rate = r.records_per_sec;
            }
            let ratio = r.records_per_sec / single_rate;
            println!(
                "{name:>7} {producers:>9} {:>10.3} {:>10.3} {:>12.0} {:>7.1}x {:>13.1} {:>8.3}",
                r.p50_ms, r.p99_ms, r.records_per_sec, ratio, r.records_per_sync, r.sync_ms
            );
            latency.push(json!({
                "producers_as": name, "producers": producers, "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms, "records_per_sec": r.records_per_sec,
                "records_per_sync": r.records_per_sync, "mean_sync_ms": r.sync_ms,
                "ratio_to_one_producer": ratio,
            }));
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    results.insert("append_latency".into(), json!(latency));
    Ok(())
}

fn replay_step(
    root: &Path,
    records: &Arc<Vec<(Bytes, Bytes)>>,
    results: &mut Results,
) -> anyhow::Result<()> {
    println!("\nreplay from the page cache ({} records)", records.len());
    let dir = root.join("replay");
    let r = replay(&dir, records)?;
    println!(
        "  merged reader (log-time order, 4 partitions): {:.0} records/s",
        r.merged_per_sec
    );
    println!(
        "  partition reads (offset order):                {:.0} records/s",
        r.partition_per_sec
    );
    results.insert(
        "replay".into(),
        json!({
            "records": records.len(), "merged_records_per_sec": r.merged_per_sec,
            "partition_records_per_sec": r.partition_per_sec,
        }),
    );
    Ok(())
}

fn tempfile_dir(base: &Path) -> anyhow::Result<PathBuf> {
    let dir = base.join(format!("kappa-log-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Sequential 1 MiB writes, each followed by fdatasync: the disk's floor.
fn disk_sync_bandwidth(path: &Path, seconds: f64) -> anyhow::Result<f64> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let block = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut written = 0usize;
    while started.elapsed().as_secs_f64() < seconds.min(3.0) {
        file.write_all(&block)?;
        file.sync_data()?;
        written += block.len();
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(rate)
}

fn open_log(dir: &Path) -> anyhow::Result<Arc<EmbeddedLog>> {
    std::fs::create_dir_all(dir)?;
    let log = EmbeddedLog::open(
        dir,
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )?;
    log.create_topic_blocking(TOPIC, TopicConfig::with_partitions(4))?;
    Ok(Arc::new(log))
}

fn record(k: &Bytes, v: &Bytes) -> AppendRecord {
    AppendRecord {
        topic: TOPIC.to_string(),
        partition: None,
        key: Some(k.clone()),
        value: Some(v.clone()),
        headers: Vec::new(),
        event_time: None,
    }
}

struct Throughput {
    records: usize,
    records_per_sec: f64,
    log_bytes_per_sec: f64,
    syncs: u64,
}

/// `producers` threads append `batch`-record batches until the records or
/// the time budget run out.
fn append_throughput(
    dir: &Path,
    records: &Arc<Vec<(Bytes, Bytes)>>,
    batch: usize,
    producers: usize,
    seconds: f64,
) -> anyhow::Result<Throughput> {
    let log = open_log(dir)?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let (log, next, records) = (log.clone(), next.clone(), records.clone());
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let mut done = 0;
                while Instant::now() < deadline {
                    let start = next.fetch_add(batch, Ordering::Relaxed);
                    if start >= records.len() {
                        break;
                    }
                    let end = (start + batch).min(records.len());
                    let batch: Vec<AppendRecord> = records[start..end]
                        .iter()
                        .map(|(k, v)| record(k, v))
                        .collect();
                    log.append_blocking(&AppendBatch::new(batch))?;
                    done += end - start;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().expect("producer thread")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let m = log.metrics();
    Ok(Throughput {
        records: total,
        records_per_sec: total as f64 / secs,
        log_bytes_per_sec: m.bytes_appended as f64 / secs,
        syncs: m.syncs,
    })
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    records_per_sec: f64,
    records_per_sync: f64,
    /// Mean `fdatasync` time, ms.
    sync_ms: f64,
}

/// How the concurrent producers of the latency step run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Producers {
    /// OS threads calling `append_blocking`.
    Threads,
    /// Tasks on a 2-worker tokio runtime awaiting `Log::append`, as the
    /// server's request handlers do.
    Tasks,
}

fn append_latency(
    dir: &Path,
    records: &Arc<Vec<(Bytes, Bytes)>>,
    producers: usize,
    seconds: f64,
    mode: Producers,
) -> anyhow::Result<Latency> {
    let log = open_log(dir)?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut all = Vec::new();
    match mode {
        Producers::Threads => {
            let handles: Vec<_> = (0..producers)
                .map(|_| {
                    let (log, next, records) = (log.clone(), next.clone(), records.clone());
                    std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed) % records.len();
                            let (k, v) = &records[i];
                            let t = Instant::now();
                            log.append_blocking(&AppendBatch::new(vec![record(k, v)]))?;
                            latencies.push(t.elapsed());
                        }
                        Ok(latencies)
                    })
                })
                .collect();
            for h in handles {
                all.extend(h.join().expect("producer thread")?);
            }
        }
        Producers::Tasks => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()?;
            all = runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..producers {
                    let (log, next, records) = (log.clone(), next.clone(), records.clone());
                    tasks.spawn(async move {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed) % records.len();
                            let (k, v) = &records[i];
                            let t = Instant::now();
                            log.append(AppendBatch::new(vec![record(k, v)])).await?;
                            latencies.push(t.elapsed());
                        }
                        anyhow::Ok(latencies)
                    });
                }
                let mut all = Vec::new();
                while let Some(r) = tasks.join_next().await {
                    all.extend(r??);
                }
                anyhow::Ok(all)
            })?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    let m = log.metrics();
    Ok(Latency {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        records_per_sec: all.len() as f64 / secs,
        records_per_sync: all.len() as f64 / m.syncs.max(1) as f64,
        sync_ms: m.sync_micros_total as f64 / 1e3 / m.syncs.max(1) as f64,
    })
}

struct Replay {
    merged_per_sec: f64,
    partition_per_sec: f64,
}

fn replay(dir: &Path, records: &Arc<Vec<(Bytes, Bytes)>>) -> anyhow::Result<Replay> {
    let log = open_log(dir)?;
    for chunk in records.chunks(10_000) {
        let batch: Vec<AppendRecord> = chunk.iter().map(|(k, v)| record(k, v)).collect();
        log.append_blocking(&AppendBatch::new(batch))?;
    }
    let limits = ReadLimits {
        max_records: 10_000,
        max_bytes: 16 << 20,
    };
    let mut merged_per_sec = 0.0f64;
    for _ in 0..2 {
        let started = Instant::now();
        let mut reader = log.merged_reader_blocking(&[TOPIC], LogTime::ZERO)?;
        let mut n = 0;
        loop {
            let batch = reader.next_batch_blocking(limits)?;
            if batch.is_empty() {
                break;
            }
            n += batch.len();
        }
        anyhow::ensure!(
            n == records.len(),
            "replay read {n} records, expected {}",
            records.len()
        );
        merged_per_sec = merged_per_sec.max(n as f64 / started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let mut n = 0;
    for p in 0..4 {
        let mut from = ReadFrom::Start;
        loop {
            let batch = log.read_blocking(TOPIC, p, from, limits)?;
            let Some(last) = batch.last() else { break };
            from = ReadFrom::Offset(last.offset + 1);
            n += batch.len();
        }
    }
    anyhow::ensure!(n == records.len(), "partition reads returned {n} records");
    Ok(Replay {
        merged_per_sec,
        partition_per_sec: n as f64 / started.elapsed().as_secs_f64(),
    })
}
