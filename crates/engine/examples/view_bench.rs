//! The views benchmark. Replay into a view, beside two floors measured in
//! the same run: a plain serde_json parse-and-fold of the same JSON lines,
//! and DuckDB (if the `duckdb` Python package is installed) running the
//! same GROUP BY over the same file. Then point queries by key, now and AS
//! OF, and live latency from append to visible in the view at 10,000
//! records/s. Release build:
//!
//! ```text
//! cargo run --release -p kappa-engine --example view_bench -- 1000000
//! ```
//!
//! `view_bench memory 10000000 256` measures peak memory instead: a view
//! over 10,000,000 distinct keys replayed with a 256 MiB budget, in a
//! process of its own.

use kappa_engine::{Engine, Output};
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use kappa_store::{RedbStore, StoreOptions};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

const VIEW: &str =
    "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM transactions GROUP BY account";
const WIDE: &str = "SELECT account, SUM(amount) AS balance, COUNT(*) AS n, MIN(amount) AS low, \
     MAX(amount) AS high FROM transactions GROUP BY account";

#[derive(serde::Deserialize)]
struct Tx<'a> {
    account: &'a str,
    amount: f64,
}

fn main() -> anyhow::Result<()> {
    // As the binary does, before any thread starts; `open_engine` tunes
    // again for its budget.
    kappa_engine::memory::tune_allocator(kappa_engine::EngineOptions::default().memory_budget);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    // RUST_LOG=kappa_engine=debug: where each catch-up's time went.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("memory") => {
            let keys = args.get(2).map_or(Ok(10_000_000), |s| s.parse())?;
            let budget_mib = args.get(3).map_or(Ok(256), |s| s.parse())?;
            // `memory KEYS BUDGET DIR` only appends into DIR, for
            // `replay-in-child DIR BUDGET KEYS` (on a copy) under a heap
            // profiler.
            return memory(keys, budget_mib, args.get(4).map(std::path::PathBuf::from)).await;
        }
        Some("prepare") => {
            // For profiling replay alone: `prepare N DIR`, then
            // `replay-in-child DIR BUDGET 100000` under a profiler.
            let n = args[2].parse()?;
            let dir = std::path::Path::new(&args[3]);
            let engine = open_engine(dir, 1 << 30)?;
            // `prepare N DIR ACCOUNTS`: over that many accounts.
            let accounts = args.get(4).map_or(Ok(100_000), |s| s.parse())?;
            let records = kappa_log_bench::workload::generate(n, accounts, 42);
            append_workload(&engine, &records).await?;
            return Ok(());
        }
        Some("read") => {
            // `read DIR`: the log alone, as a replay reads it (merged in
            // log-time order, records as columns, not decoded): the floor
            // under a replay's reading, on one thread.
            // `read DIR decode`: and decoded as the benchmark's view reads
            // them (account and amount, and the log time): all a replay's
            // producer thread does.
            let decode = args.get(3).map(String::as_str) == Some("decode");
            return read_log(std::path::Path::new(&args[2]), decode).await;
        }
        Some("points") => {
            // For profiling point queries alone: `points DIR` over a
            // directory made by `prepare`.
            let engine = open_engine(std::path::Path::new(&args[2]), 1 << 30)?;
            engine
                .execute(&format!("CREATE VIEW balances AS {VIEW}"))
                .await?;
            engine.catch_up().await?;
            let mut times = Vec::new();
            for i in 0..20_000u64 {
                let sql = format!(
                    "SELECT balance, n FROM balances WHERE account = 'acc-{:05}'",
                    i * 7919 % 100_000
                );
                let started = Instant::now();
                engine.execute(&sql).await?;
                times.push(started.elapsed());
            }
            report("point query", &mut times);
            return Ok(());
        }
        Some("workers") => {
            // `workers N [wide]`: first-time replays of N records with 1
            // and 2 workers, alternating, three times each: the scaling
            // ratio (`wide`: the view with MIN and MAX too).
            let n = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
            let view = if args.get(3).map(String::as_str) == Some("wide") {
                WIDE
            } else {
                VIEW
            };
            return workers(n, view).await;
        }
        Some("replay-in-child") => {
            // A fifth argument is the view's WITH options, e.g.
            // "history = '0s'" (what history costs the replay).
            let with = args
                .get(5)
                .map(|o| format!(" WITH ({o})"))
                .unwrap_or_default();
            return replay_in_child(&args[2], args[3].parse()?, args[4].parse()?, &with).await;
        }
        _ => {}
    }
    let n: usize = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let accounts = 100_000;
    let dir = tempfile::tempdir()?;
    let records = kappa_log_bench::workload::generate(n, accounts, 42);
    let file = dir.path().join("transactions.ndjson");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for (_, v) in records.iter() {
            f.write_all(v)?;
            f.write_all(b"\n")?;
        }
    }
    println!("{n} records, {accounts} accounts");

    // Floor 1: parse and fold with serde_json.
    let started = Instant::now();
    let text = std::fs::read_to_string(&file)?;
    let mut fold: HashMap<&str, (f64, i64)> = HashMap::new();
    for line in text.lines() {
        let tx: Tx = serde_json::from_str(line)?;
        let e = fold.entry(tx.account).or_default();
        e.0 += tx.amount;
        e.1 += 1;
    }
    let fold_rate = n as f64 / started.elapsed().as_secs_f64();
    println!("serde_json parse-and-fold:     {fold_rate:>10.0} records/s");

    // Floor 2: DuckDB over the same file, three times in one connection,
    // the median (one run's figure moved 2x between runs; the first of
    // three is mostly the slowest).
    let duck = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import duckdb,time\nc=duckdb.connect()\n\
             for _ in range(3):\n\
             \x20t=time.time()\n\
             \x20r=c.execute(\"SELECT account, SUM(amount), COUNT(*) FROM read_json_auto('{}') GROUP BY account\").fetchall()\n\
             \x20print(time.time()-t, len(r))",
            file.display()
        ))
        .output();
    let duck_rate = match duck {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            let mut rates = Vec::new();
            for line in out.lines() {
                let mut words = line.split_whitespace();
                let secs: f64 = words.next().unwrap_or("0").parse()?;
                let groups: usize = words.next().unwrap_or("0").parse()?;
                anyhow::ensure!(
                    groups == fold.len(),
                    "DuckDB found {groups} accounts, the fold {}",
                    fold.len()
                );
                rates.push(n as f64 / secs);
            }
            anyhow::ensure!(rates.len() == 3, "DuckDB printed {out}");
            let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            rates.sort_by(f64::total_cmp);
            let rate = rates[1];
            println!(
                "DuckDB GROUP BY over the file: {rate:>10.0} records/s (median of {})",
                runs.join(", ")
            );
            Some(rate)
        }
        _ => {
            println!("DuckDB: not available (pip install duckdb)");
            None
        }
    };

    // Kappa: append durably, then replay the log into the view.
    let log = EmbeddedLog::open(
        dir.path().join("log"),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )?;
    let store = RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default())?;
    let engine = Engine::open(Arc::new(log), Arc::new(store))?;
    // AS OF queries read the view as it was half way through.
    let mid_token = append_workload(&engine, &records).await?;
    engine
        .execute(&format!("CREATE VIEW balances AS {VIEW}"))
        .await?;
    let started = Instant::now();
    engine.catch_up().await?;
    let replay_rate = n as f64 / started.elapsed().as_secs_f64();
    println!("Kappa replay into the view:    {replay_rate:>10.0} records/s");

    // The answer must be right, or the figure means nothing.
    let Output::Rows(batches) = engine
        .execute("SELECT account, balance, n FROM balances")
        .await?
    else {
        anyhow::bail!("no rows");
    };
    let mut checked = 0;
    for b in &batches {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Float64Type, Int64Type};
        let acc = b.column(0).as_string::<i32>();
        let bal = b.column(1).as_primitive::<Float64Type>();
        let cnt = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let (sum, count) = fold[acc.value(i)];
            anyhow::ensure!(cnt.value(i) == count, "count of {} differs", acc.value(i));
            anyhow::ensure!(
                (bal.value(i) - sum).abs() < 1e-6,
                "balance of {} differs",
                acc.value(i)
            );
            checked += 1;
        }
    }
    anyhow::ensure!(
        checked == fold.len(),
        "{checked} rows, expected {}",
        fold.len()
    );
    println!("checked {checked} balances against the fold");
    println!(
        "replay / parse-and-fold: {:.2}; replay / DuckDB: {}",
        replay_rate / fold_rate,
        duck_rate.map_or("n/a".into(), |d| format!("{:.2}", replay_rate / d))
    );

    // Point queries by key, through SQL, now and AS OF a point in history.
    let engine = Arc::new(engine);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_account = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        format!("acc-{:05}", rng % accounts as u64)
    };
    for (label, suffix) in [
        ("point query", String::new()),
        ("AS OF point query", format!(" AS OF TOKEN '{mid_token}'")),
    ] {
        let mut times = Vec::new();
        for i in 0..3_000 {
            let sql = format!(
                "SELECT balance, n FROM balances WHERE account = '{}'{suffix}",
                next_account()
            );
            let started = Instant::now();
            let Output::Rows(b) = engine.execute(&sql).await? else {
                anyhow::bail!("no rows");
            };
            let took = started.elapsed();
            anyhow::ensure!(b.iter().map(|b| b.num_rows()).sum::<usize>() <= 1);
            if i >= 100 {
                times.push(took);
            }
        }
        report(label, &mut times);
    }

    // Live: append at 10,000 records/s (a batch of 10 every millisecond)
    // while the maintenance task keeps the view current; latency from the
    // start of an append to the view's frontier covering it.
    let maintenance = engine.maintain();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let producer = {
        let engine = engine.clone();
        let records = records.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for (n, chunk) in records.chunks(10).take(5_000).enumerate() {
                tick.tick().await;
                let values: Vec<&[u8]> = chunk.iter().map(|(_, v)| v.as_ref()).collect();
                let started = Instant::now();
                let token = engine.append_json("transactions", &values).await?;
                let _ = sent_tx.send((n, started, token.token.log_time().0));
            }
            anyhow::Ok(())
        })
    };
    let mut waiting = std::collections::VecDeque::new();
    let mut times = Vec::new();
    let mut progress = engine.progress_watch();
    let mut producing = true;
    while producing || !waiting.is_empty() {
        tokio::select! {
            sent = sent_rx.recv() => match sent {
                Some(s) => waiting.push_back(s),
                None => producing = false,
            },
            _ = progress.changed() => {}
        }
        let frontier = engine.frontier("balances").await?.0;
        while waiting.front().is_some_and(|(_, _, t)| *t <= frontier) {
            let (n, started, _) = waiting.pop_front().expect("checked");
            if n >= 200 {
                times.push(started.elapsed());
            }
        }
    }
    producer.await??;
    maintenance.stop().await;
    report("live, append to visible at 10,000 rec/s", &mut times);
    Ok(())
}

fn report(label: &str, times: &mut [std::time::Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{label}: n={} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

async fn read_log(dir: &std::path::Path, decode: bool) -> anyhow::Result<()> {
    use kappa_engine::schema::{Column, ColumnType, TopicDef};
    use kappa_log::Log;
    let log = open_log(dir)?;
    let column = |name: &str, ty, not_null| Column {
        name: name.into(),
        ty,
        not_null,
    };
    let topic = TopicDef {
        name: "transactions".into(),
        columns: Some(vec![
            column("account", ColumnType::Text, true),
            column("amount", ColumnType::Double, false),
            column("kind", ColumnType::Text, false),
            column("ts", ColumnType::Timestamp, false),
        ]),
        key: Some("account".into()),
        event_time: Some("ts".into()),
    };
    // The view's columns, then `_partition`, `_offset`, `_log_time`, `_key`.
    let reads = [true, true, false, false, false, false, true, false];
    for _ in 0..3 {
        let (started, cpu) = (Instant::now(), cpu_secs());
        let mut reader = log
            .merged_reader(&["transactions"], kappa_log::LogTime(0))
            .await?;
        let (mut records, mut bytes, mut rows) = (0usize, 0usize, 0usize);
        let limits = kappa_log::ReadLimits {
            max_records: 50_000,
            max_bytes: 32 << 20,
        };
        loop {
            let batch = reader.next_columns(limits).await?;
            if batch.is_empty() {
                break;
            }
            records += batch.len();
            if decode {
                let (decoded, rejected) = topic.to_batch_reading(&batch, Some(&reads));
                anyhow::ensure!(rejected.is_empty(), "rejected: {rejected:?}");
                rows += decoded.num_rows();
            }
            bytes += batch
                .entries()
                .iter()
                .map(|e| batch.value(e).map_or(0, <[u8]>::len))
                .sum::<usize>();
        }
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            !decode || rows == records,
            "{rows} rows from {records} records"
        );
        println!(
            "read {}{records} records ({} MB of values) in {secs:.3} s ({:.0} records/s), CPU {:.3} s",
            if decode { "and decoded " } else { "" },
            bytes / 1_000_000,
            records as f64 / secs,
            cpu_secs() - cpu
        );
    }
    Ok(())
}

/// The embedded log in `dir` (no cleaner: nothing is removed mid-run).
fn open_log(dir: &std::path::Path) -> anyhow::Result<EmbeddedLog> {
    Ok(EmbeddedLog::open(
        dir.join("log"),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )?)
}

fn open_engine(dir: &std::path::Path, budget: usize) -> anyhow::Result<Engine> {
    kappa_engine::memory::tune_allocator(budget);
    let log = open_log(dir)?;
    let store = RedbStore::open(&dir.join("state.redb"), &StoreOptions::default())?;
    Ok(Engine::open_with(
        Arc::new(log),
        Arc::new(store),
        kappa_engine::EngineOptions {
            memory_budget: budget,
            ..Default::default()
        },
    )?)
}

/// Creates the topic and appends the records, 10,000 per batch. Returns
/// the token of the batch half way through.
async fn append_workload(
    engine: &Engine,
    records: &[(bytes::Bytes, bytes::Bytes)],
) -> anyhow::Result<kappa_log::Token> {
    engine
        .execute(
            "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
             WITH (partitions = 4, key = 'account', event_time = 'ts')",
        )
        .await?;
    let mut middle = None;
    let chunks = records.len().div_ceil(10_000);
    for (i, chunk) in records.chunks(10_000).enumerate() {
        let values: Vec<&[u8]> = chunk.iter().map(|(_, v)| v.as_ref()).collect();
        let token = engine.append_json("transactions", &values).await?.token;
        if i == chunks / 2 || middle.is_none() {
            middle = Some(token);
        }
    }
    middle.ok_or_else(|| anyhow::anyhow!("no records"))
}

/// Appends one record per key, then replays them into the view in a
/// child process and reports its peak memory.
async fn memory(
    keys: usize,
    budget_mib: usize,
    keep: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = keep.as_deref().unwrap_or(temp.path());
    {
        let engine = open_engine(dir, 1 << 30)?;
        engine
            .execute(
                "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
                 WITH (partitions = 4, key = 'account', event_time = 'ts')",
            )
            .await?;
        let mut values = Vec::with_capacity(10_000);
        for start in (0..keys).step_by(10_000) {
            values.clear();
            for i in start..(start + 10_000).min(keys) {
                values.push(format!(
                    r#"{{"account":"acc-{i:08}","amount":{}.25,"kind":"credit","ts":"2026-01-01T00:00:00Z"}}"#,
                    i % 1000
                ));
            }
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            engine.append_json("transactions", &refs).await?;
        }
    }
    if keep.is_some() {
        println!(
            "{keys} records with distinct keys appended into {}",
            dir.display()
        );
        return Ok(());
    }
    println!(
        "{keys} records with distinct keys appended; replaying with a {budget_mib} MiB budget"
    );
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "replay-in-child",
            &dir.display().to_string(),
            &(budget_mib << 20).to_string(),
            &keys.to_string(),
        ])
        .status()?;
    anyhow::ensure!(out.success(), "the replay failed");
    Ok(())
}

async fn replay_in_child(dir: &str, budget: usize, keys: usize, with: &str) -> anyhow::Result<()> {
    let engine = open_engine(std::path::Path::new(dir), budget)?;
    let before = peak_rss_mib();
    // Anonymous memory only: the executable's own pages (file-backed,
    // ~30 MiB of code first run after the open, by planning the view)
    // are not memory the program allocates.
    let anon_before = status_mib("RssAnon:");
    let sampler = Sampler::start();
    engine
        .execute(&format!("CREATE VIEW balances{with} AS {VIEW}"))
        .await?;
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let progress = engine.catch_up().await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let anon_peak = sampler.report();
    let allowed = (budget >> 20) as u64 + (StoreOptions::default().cache_bytes >> 20) as u64;
    println!(
        "anonymous memory (RssAnon, sampled every 50 ms): {anon_before} MiB at open, peak {anon_peak} MiB: \
         growth {} MiB (view state budget + store page cache: {allowed} MiB)",
        anon_peak.saturating_sub(anon_before)
    );
    println!(
        "replay CPU {cpu:.2} s (user and system, all threads): {:.2} cores busy on average",
        cpu / secs
    );
    let records: u64 = progress.iter().map(|(_, p)| p.records).sum();
    let peak = peak_rss_mib();
    println!(
        "replayed {records} records in {secs:.2} s ({:.0} records/s); peak RSS {peak} MiB (at open: {before} MiB); \
         view state budget {} MiB, store page cache {} MiB",
        records as f64 / secs,
        budget >> 20,
        StoreOptions::default().cache_bytes >> 20
    );
    let Output::Rows(b) = engine.execute("SELECT COUNT(*) FROM balances").await? else {
        anyhow::bail!("no rows");
    };
    use datafusion::arrow::array::AsArray;
    let count = b[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    anyhow::ensure!(count as usize == keys, "{count} rows, expected {keys}");
    println!("checked: {count} rows");
    Ok(())
}

/// Samples resident memory and the allocator's bytes in use every 50 ms
/// during a replay, to tell memory the program holds from memory the
/// allocator keeps.
struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64, u64, u64)>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // (peak RSS, heap in use at that moment, peak heap in use,
            // peak anonymous RSS), MiB.
            let mut peak = (0, 0, 0, 0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = status_mib("VmRSS:");
                let heap = heap_in_use_mib();
                if rss > peak.0 {
                    peak.0 = rss;
                    peak.1 = heap;
                }
                peak.2 = peak.2.max(heap);
                peak.3 = peak.3.max(status_mib("RssAnon:"));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        });
        Sampler { stop, thread }
    }

    /// Prints what was sampled; returns the peak anonymous RSS (MiB).
    fn report(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.join() {
            Ok((rss, heap_then, heap, anon)) => {
                println!(
                    "sampled: peak RSS {rss} MiB with {heap_then} MiB of heap in use then; peak heap in use {heap} MiB"
                );
                anon
            }
            Err(_) => 0,
        }
    }
}

/// Bytes malloc has handed out and not had back (glibc's `mallinfo2`).
fn heap_in_use_mib() -> u64 {
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { mallinfo2() };
    ((info.uordblks + info.hblkhd) >> 20) as u64
}

fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// CPU time the process has used so far (user and system, all threads).
fn cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// First-time replays of the same log with 1 and 2 workers, alternating.
async fn workers(n: usize, view: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = open_engine(dir.path(), 1 << 30)?;
    let mut appended = 0;
    let mut first = true;
    while appended < n {
        let chunk = (n - appended).min(1_000_000);
        let records = kappa_log_bench::workload::generate(chunk, 100_000, 42 + appended as u64);
        if first {
            append_workload(&engine, &records).await?;
            first = false;
        } else {
            for batch in records.chunks(10_000) {
                let values: Vec<&[u8]> = batch.iter().map(|(_, v)| v.as_ref()).collect();
                engine.append_json("transactions", &values).await?;
            }
        }
        appended += chunk;
    }
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for workers in [1, 2] {
            engine.set_workers(workers);
            let started = Instant::now();
            engine
                .execute(&format!("CREATE VIEW balances AS {view}"))
                .await?;
            engine.catch_up().await?;
            let rate = n as f64 / started.elapsed().as_secs_f64();
            println!("round {round}: first-time replay, {workers} worker(s): {rate:.0} records/s");
            rates[workers - 1].push(rate);
            engine.execute("DROP VIEW balances").await?;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median: 1 worker {one:.0} records/s, 2 workers {two:.0} records/s: {:.2}x",
        two / one
    );
    Ok(())
}
