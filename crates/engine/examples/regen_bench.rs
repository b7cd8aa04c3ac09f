//! The regeneration benchmark (release build):
//!
//! ```text
//! cargo run --release -p kappa-engine --example regen_bench -- 10000000
//! ```
//!
//! The bank workload (N records, 100,000 accounts) is appended, then:
//! 1. first-time replay: `CREATE VIEW balances` caught up from offset 0;
//! 2. with the maintenance task running, 4 tasks of point queries and
//!    appends at 10,000 records/s, `CREATE OR REPLACE VIEW balances`
//!    (the same GROUP BY plus MIN and MAX): how fast the next version is
//!    built beside the live one (the baseline: the first-time replay of
//!    the same log), and the query latency before the replace, during the
//!    backfill, and around the swap (the worst query that overlapped it);
//! 3. rebuilds from the log with 1 and with 2 workers, alternating, three
//!    of each, alone: the scaling;
//! 4. a snapshot, N/10 more records, then a rebuild from the log and one
//!    from the snapshot (which replays only the N/10).

use kappa_engine::Engine;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use kappa_store::{RedbStore, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const VIEW: &str =
    "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM transactions GROUP BY account";
const NEXT: &str = "SELECT account, SUM(amount) AS balance, COUNT(*) AS n, MIN(amount) AS low, \
     MAX(amount) AS high FROM transactions GROUP BY account";

fn main() -> anyhow::Result<()> {
    // As the binary does, before any thread starts.
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
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(10_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let log = EmbeddedLog::open(
        dir.path().join("log"),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )?;
    let store = RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default())?;
    let engine = Arc::new(Engine::open_with(
        Arc::new(log),
        Arc::new(store),
        kappa_engine::EngineOptions::default(),
    )?);
    engine
        .execute(
            "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
             WITH (partitions = 4, key = 'account', event_time = 'ts')",
        )
        .await?;
    // Generated in chunks: 10,000,000 records at once would hold ~1.5 GB.
    let started = Instant::now();
    let mut appended = 0;
    while appended < n {
        let chunk = (n - appended).min(1_000_000);
        let records = kappa_log_bench::workload::generate(chunk, 100_000, 42 + appended as u64);
        for batch in records.chunks(10_000) {
            let values: Vec<&[u8]> = batch.iter().map(|(_, v)| v.as_ref()).collect();
            engine.append_json("transactions", &values).await?;
        }
        appended += chunk;
    }
    println!(
        "appended {n} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    engine
        .execute(&format!("CREATE VIEW balances AS {VIEW}"))
        .await?;
    engine.catch_up().await?;
    let replay = started.elapsed().as_secs_f64();
    println!(
        "first-time replay: {n} records in {replay:.1} s ({:.0} records/s)",
        n as f64 / replay
    );

    let maintenance = engine.maintain();
    let stop = Arc::new(AtomicBool::new(false));
    // Appends at about 10,000 records/s: 100 records every 10 ms.
    let writer = {
        let (engine, stop) = (engine.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<String> = (0..100)
                    .map(|j| {
                        format!(
                            r#"{{"account":"acc-{:05}","amount":1.0,"kind":"credit","ts":"2026-01-01T00:00:00Z"}}"#,
                            (i * 100 + j) % 100_000
                        )
                    })
                    .collect();
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                engine.append_json("transactions", &refs).await.unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Point queries: (start, duration) of each, from 4 tasks.
    let mut readers = Vec::new();
    for t in 0..4u64 {
        let (engine, stop) = (engine.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let sql = format!(
                    "SELECT * FROM balances WHERE account = 'acc-{:05}'",
                    i * 7919 % 100_000
                );
                let at = Instant::now();
                engine.execute(&sql).await.unwrap();
                times.push((at, at.elapsed()));
                i += 4;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replace_at = Instant::now();
    engine
        .execute(&format!("CREATE OR REPLACE VIEW balances AS {NEXT}"))
        .await?;
    // The swap is seen as the version changing; its moment is bracketed
    // by the last poll that saw version 1 and the first that saw 2.
    let mut last_old = Instant::now();
    loop {
        let status = engine.view_status("balances").await?;
        if status.version == 2 {
            break;
        }
        last_old = Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let swapped = Instant::now();
    let backfill = (last_old - replace_at).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    let mut times = Vec::new();
    for r in readers {
        times.extend(r.await?);
    }
    maintenance.stop().await;
    let applied = engine.view_status("balances").await?.records_applied;
    // The same work as the backfill, alone: version 2's definition
    // replayed first-time with nothing else running.
    let started = Instant::now();
    engine
        .execute(&format!("CREATE VIEW alone AS {NEXT}"))
        .await?;
    engine.catch_up().await?;
    let alone = started.elapsed().as_secs_f64();
    println!(
        "first-time replay of version 2's definition, alone: {alone:.1} s ({:.0} records/s)",
        n as f64 / alone
    );
    println!(
        "backfill of version 2 (2 workers) beside version 1, queries and appends: {:.1} s ({:.0} records/s, {:.2}x the same definition replayed alone, {:.2}x version 1's first-time replay)",
        backfill,
        n as f64 / backfill,
        alone / backfill,
        replay / backfill
    );
    let window = |from: Instant, to: Instant| -> Vec<Duration> {
        let mut v: Vec<Duration> = times
            .iter()
            .filter(|(at, d)| *at + *d >= from && *at <= to)
            .map(|(_, d)| *d)
            .collect();
        v.sort();
        v
    };
    let describe = |label: &str, v: &[Duration]| {
        if v.is_empty() {
            return println!("{label}: no queries");
        }
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "{label}: {} queries, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            v.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        );
    };
    let before = window(replace_at - Duration::from_secs(3), replace_at);
    let during = window(replace_at, last_old);
    let around = window(last_old, swapped);
    let after = window(swapped, swapped + Duration::from_secs(3));
    describe("queries before the replace", &before);
    describe("queries during the backfill", &during);
    describe("queries overlapping the swap", &around);
    describe("queries after the swap", &after);
    let worst_before = before.last().copied().unwrap_or_default();
    let worst_swap = around.last().copied().unwrap_or_default();
    println!(
        "the swap added at most {:.3} ms to a query (worst overlapping it {:.3} ms, worst before {:.3} ms)",
        worst_swap.saturating_sub(worst_before).as_secs_f64() * 1e3,
        worst_swap.as_secs_f64() * 1e3,
        worst_before.as_secs_f64() * 1e3
    );
    println!("(records applied to version 2, backfill and live: {applied})");
    workers(&engine).await?;
    snapshot(&engine, dir.path(), n).await
}

/// Rebuilds of the view from the log with 1 and 2 workers, alternating,
/// three of each, nothing else running: the scaling ratio (of the medians,
/// and of each pair run one after the other).
async fn workers(engine: &Arc<Engine>) -> anyhow::Result<()> {
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for workers in [1, 2] {
            engine.set_workers(workers);
            let started = Instant::now();
            engine.rebuild_view("balances").await?;
            engine.catch_up().await?;
            let took = started.elapsed().as_secs_f64();
            let applied = engine.view_status("balances").await?.records_applied;
            let rate = applied as f64 / took;
            println!(
                "round {round}: rebuild from the log with {workers} worker(s): {applied} records in {took:.1} s ({rate:.0} records/s)"
            );
            rates[workers - 1].push(rate);
        }
    }
    let pairs: Vec<String> = rates[0]
        .iter()
        .zip(&rates[1])
        .map(|(one, two)| format!("{:.2}x", two / one))
        .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(&rates[0]), median(&rates[1]));
    println!(
        "2 workers / 1 worker: {:.2}x (medians {one:.0} and {two:.0} records/s; by round {})",
        two / one,
        pairs.join(", ")
    );
    engine.set_workers(2);
    Ok(())
}

/// A snapshot of the view, 10% more records, then rebuilds from the log
/// and from the snapshot: the latter replays only what follows it.
async fn snapshot(engine: &Arc<Engine>, dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let info = engine
        .snapshot_view("balances", Some(dir.join("balances.ksnap")))
        .await?;
    println!(
        "snapshot: {} rows, {} state entries, {:.1} MB in {:.2} s",
        info.rows,
        info.state_entries,
        info.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let more = (n / 10).max(1);
    let records = kappa_log_bench::workload::generate(more, 100_000, 7);
    for batch in records.chunks(10_000) {
        let values: Vec<&[u8]> = batch.iter().map(|(_, v)| v.as_ref()).collect();
        engine.append_json("transactions", &values).await?;
    }
    let mut took = Vec::new();
    for from_snapshot in [None, Some(kappa_engine::FromSnapshot::Latest)] {
        let label = if from_snapshot.is_some() {
            "from the snapshot"
        } else {
            "from the log"
        };
        let started = Instant::now();
        engine
            .rebuild_view_with(
                "balances",
                &kappa_engine::RebuildOptions {
                    from_snapshot,
                    in_place: false,
                },
            )
            .await?;
        engine.catch_up().await?;
        let t = started.elapsed().as_secs_f64();
        let applied = engine.view_status("balances").await?.records_applied;
        println!(
            "rebuild {label} after {more} more records: {applied} records replayed in {t:.1} s"
        );
        took.push(t);
    }
    println!(
        "the rebuild from the snapshot took {:.2}x the time of the one from the log",
        took[1] / took[0]
    );
    Ok(())
}
