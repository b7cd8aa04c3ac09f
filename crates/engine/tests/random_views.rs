//! Property test: random view definitions from the supported class (event-
//! time windows included), random record streams (event times out of
//! order) and random restarts and crashes (a catch-up cut off at a random
//! point), each view checked against its batch
//! evaluation at its frontier and AS OF earlier tokens. Amounts are whole
//! numbers, so sums are exact in any order. The seed is printed;
//! KAPPA_RANDOM_VIEWS_SEED replays one, KAPPA_RANDOM_VIEWS_CASES sets how
//! many cases run (default 4).

mod common;

use common::table;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const GROUPS: &[&str] = &["account", "kind", "qty % 3"];
const AGGS: &[&str] = &[
    "COUNT(amount)",
    "SUM(qty)",
    "SUM(amount)",
    "AVG(qty)",
    "MIN(amount)",
    "MAX(qty)",
    "COUNT(DISTINCT kind)",
    "last_value(amount ORDER BY _log_time)",
];
const FILTERS: &[&str] = &[
    "amount > 0",
    "kind = 'debit'",
    "qty IS NOT NULL",
    "qty % 2 = 0",
    "account <> 'a1'",
];

/// The topic itself, or its records in event-time windows (tumbling or
/// hopping, with or without a lateness bound).
fn random_source(rng: &mut StdRng) -> (String, bool) {
    let lateness = if rng.random_bool(0.5) {
        format!(", INTERVAL '{} seconds'", rng.random_range(0..30))
    } else {
        String::new()
    };
    let size = rng.random_range(5..40);
    match rng.random_range(0..5) {
        0 => (
            format!("TUMBLE(t, ts, INTERVAL '{size} seconds'{lateness})"),
            true,
        ),
        1 => {
            let slide = rng.random_range(2..=size);
            (
                format!(
                    "HOP(t, ts, INTERVAL '{slide} seconds', INTERVAL '{size} seconds'{lateness})"
                ),
                true,
            )
        }
        _ => ("t".into(), false),
    }
}

/// A random view over the topic; its first aggregate is always COUNT(*)
/// (named a0), so views over it can count on an integer column.
fn random_view(rng: &mut StdRng) -> String {
    let (source, windowed) = random_source(rng);
    if rng.random_bool(0.15) {
        let f = FILTERS.choose(rng).unwrap();
        let window = if windowed { ", window_start" } else { "" };
        return format!("SELECT account, amount * 2 AS a1, qty{window} FROM {source} WHERE {f}");
    }
    let mut groups: Vec<&str> = GROUPS
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.5))
        .collect();
    if windowed && rng.random_bool(0.8) {
        groups.push("window_start");
    }
    groups.dedup();
    let mut select: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{g} AS g{i}"))
        .collect();
    select.push("COUNT(*) AS a0".into());
    for i in 1..rng.random_range(1..4) {
        select.push(format!("{} AS a{i}", AGGS.choose(rng).unwrap()));
    }
    let mut sql = format!("SELECT {} FROM {source}", select.join(", "));
    if rng.random_bool(0.5) {
        sql += &format!(" WHERE {}", FILTERS.choose(rng).unwrap());
    }
    if !groups.is_empty() {
        sql += &format!(" GROUP BY {}", groups.join(", "));
        if rng.random_bool(0.3) {
            sql += " HAVING COUNT(*) > 1";
        }
    }
    sql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_views_equal_their_batch_evaluation() {
    let cases: u64 = std::env::var("KAPPA_RANDOM_VIEWS_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let first: u64 = std::env::var("KAPPA_RANDOM_VIEWS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    for case in 0..cases {
        let seed = first.wrapping_add(case);
        println!("KAPPA_RANDOM_VIEWS_SEED={seed}");
        run(seed).await;
    }
}

async fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // Sometimes a budget so small that state is evicted at every commit;
    // sometimes one that commits during a catch-up, in the background,
    // while the next records are applied (and now and then evicts).
    let budget = match rng.random_range(0..10) {
        0..3 => 64,
        3..6 => 16 << 10,
        _ => 1 << 30,
    };
    // Small batches make a catch-up many steps; a slow disk keeps a
    // background commit in flight while the next steps run.
    // With more than one worker, grouped views split their groups into
    // shards (one per worker).
    let options = kappa_engine::EngineOptions {
        memory_budget: budget,
        batch_records: *[1, 4, 50_000].choose(&mut rng).unwrap(),
        workers: rng.random_range(1..=3),
        // History written ahead of the commits: every few changes, or
        // (the default) rarely at this size.
        stage_bytes: *[1, 300, 2 << 20].choose(&mut rng).unwrap(),
        ..Default::default()
    };
    let slow = rng
        .random_bool(0.5)
        .then(|| std::time::Duration::from_micros(rng.random_range(100..3000)));
    let open_with =
        |dir: &std::path::Path, _: usize| common::open_tuned(dir, options.clone(), slow);
    let mut engine = open_with(dir.path(), budget);
    engine
        .execute("CREATE TOPIC t (account TEXT NOT NULL, amount DOUBLE, kind TEXT, qty BIGINT, ts TIMESTAMP) WITH (partitions = 3, key = 'account')")
        .await
        .unwrap();
    // (name, SELECT, keeps history): some views keep almost none, so
    // that the records a catch-up finds are older than their history and
    // are applied without their changes.
    let mut views: Vec<(String, String, bool)> = Vec::new();
    for i in 0..rng.random_range(2..6) {
        let sql = random_view(&mut rng);
        let name = format!("v{i}");
        let history = rng.random_bool(0.7);
        let with = if history {
            ""
        } else {
            " WITH (history = '1 us')"
        };
        engine
            .execute(&format!("CREATE VIEW {name}{with} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {sql}: {e}"));
        views.push((name, sql, history));
    }
    // A view over the first aggregate view, if any.
    if let Some((base, _, _)) = views
        .iter()
        .find(|(_, sql, _)| sql.contains("COUNT(*) AS a0"))
    {
        let sql = format!(
            "SELECT a0 % 3 AS g0, COUNT(*) AS a0, SUM(a0) AS a1 FROM {base} GROUP BY a0 % 3"
        );
        // Its groups empty and fill as the base's counts move on: rows
        // are retracted alone, within its history or past it.
        let history = rng.random_bool(0.5);
        let with = if history {
            ""
        } else {
            " WITH (history = '1 us')"
        };
        engine
            .execute(&format!("CREATE VIEW over{with} AS {sql}"))
            .await
            .unwrap();
        views.push(("over".into(), sql, history));
    }
    let mut tokens = Vec::new();
    // Event times move forward with jitter, so some arrive out of order
    // and some too late for their window.
    let mut clock: u64 = 0;
    for _ in 0..rng.random_range(4..12) {
        let batch: Vec<String> = (0..rng.random_range(1..25))
            .map(|_| {
                let kind = match rng.random_range(0..3) {
                    0 => "\"debit\"".to_string(),
                    1 => "\"credit\"".to_string(),
                    _ => "null".to_string(),
                };
                let qty = if rng.random_bool(0.2) {
                    "null".to_string()
                } else {
                    rng.random_range(-5..10).to_string()
                };
                clock += rng.random_range(0..4);
                let ts = if rng.random_bool(0.1) {
                    "null".to_string()
                } else {
                    let t = clock.saturating_sub(rng.random_range(0..40));
                    format!(
                        "\"2026-01-01T{:02}:{:02}:{:02}Z\"",
                        t / 3600,
                        t / 60 % 60,
                        t % 60
                    )
                };
                format!(
                    r#"{{"account":"a{}","amount":{},"kind":{kind},"qty":{qty},"ts":{ts}}}"#,
                    rng.random_range(0..6),
                    rng.random_range(-20..30)
                )
            })
            .collect();
        let values: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
        tokens.push(engine.append_json("t", &values).await.unwrap().token);
        match rng.random_range(0..5) {
            0 => {
                engine.catch_up().await.unwrap();
            }
            1 => {
                engine.catch_up().await.unwrap();
                drop(engine);
                engine = open_with(dir.path(), budget);
            }
            2 => {
                // A crash at a random point of a catch-up: whatever was
                // not committed is gone, and the views resume from the
                // store.
                let after = std::time::Duration::from_micros(rng.random_range(0..3000));
                let _ = tokio::time::timeout(after, engine.catch_up()).await;
                drop(engine);
                engine = open_with(dir.path(), budget);
            }
            3 => {
                // A catch-up cut off and started again in the same
                // process: what it left in memory and in the store past
                // the frontier is thrown away first.
                let after = std::time::Duration::from_micros(rng.random_range(0..3000));
                let _ = tokio::time::timeout(after, engine.catch_up()).await;
                engine.catch_up().await.unwrap();
            }
            _ => {}
        }
    }
    engine.catch_up().await.unwrap();
    let engine = std::sync::Arc::new(engine);
    for (name, sql, history) in &views {
        let frontier = engine.frontier(name).await.unwrap().0;
        let live = common::rows(&engine, &format!("SELECT * FROM {name}")).await;
        let oracle = table(&engine.evaluate_batch(sql, frontier).await.unwrap());
        assert_eq!(live, oracle, "seed {seed}: view {name} = {sql}");
        let at = tokens.choose(&mut rng).unwrap();
        let past = format!("SELECT * FROM {name} AS OF TOKEN '{at}'");
        let oracle = table(&engine.evaluate_batch(sql, at.log_time().0).await.unwrap());
        if !history {
            // Past its history AS OF is refused, never answered wrong.
            match engine.execute(&past).await {
                Ok(kappa_engine::Output::Rows(b)) => assert_eq!(
                    table(&b),
                    oracle,
                    "seed {seed}: view {name} AS OF {at} = {sql}"
                ),
                Ok(other) => panic!("seed {seed}: {past}: {other:?}"),
                Err(e) => assert!(e.to_string().contains("earliest point"), "seed {seed}: {e}"),
            }
            continue;
        }
        let past = common::rows(&engine, &past).await;
        assert_eq!(past, oracle, "seed {seed}: view {name} AS OF {at} = {sql}");
        // Its feed holds each change once and misses none.
        let changes = common::feed_changes(&engine, name, tokens[0].log_time().0).await;
        common::assert_chain(&changes, &format!("seed {seed}: view {name}"));
    }
}
