//! A view's groups split into shards, one per worker, each folding its
//! rows of a batch on its own thread: the result is the same as with one
//! worker and as the batch evaluation of the definition, AS OF earlier
//! points too (the shards' history merged in log-time order), with the
//! same dead letters, across restarts (groups read back from the store
//! into the shards). Batches are large enough for the shards to run on
//! their own threads. The seed is printed; KAPPA_SHARDS_SEED replays one.

mod common;

use common::{rows, table};
use kappa_engine::{Engine, EngineOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Each view's name and definition. A record whose amount does not cast
/// is a dead letter of `totals`: its batch evaluation leaves those out.
const VIEWS: &[(&str, &str)] = &[
    (
        "totals",
        "SELECT payload->>'account' AS account, SUM(CAST(payload->>'amount' AS DOUBLE)) AS total, \
         COUNT(*) AS n, MIN(CAST(payload->>'amount' AS DOUBLE)) AS low, \
         MAX(CAST(payload->>'amount' AS DOUBLE)) AS high FROM raw GROUP BY payload->>'account'",
    ),
    // A filter before the aggregate, two group columns, HAVING after it.
    (
        "busy",
        "SELECT payload->>'kind' AS kind, payload->>'account' AS account, COUNT(*) AS n, \
         COUNT(DISTINCT payload->>'day') AS days FROM raw WHERE (payload->>'kind') <> 'fee' \
         GROUP BY payload->>'kind', payload->>'account' HAVING COUNT(*) > 20",
    ),
    // Not split: one group.
    ("everything", "SELECT COUNT(*) AS n FROM raw"),
    // Not split: no aggregate.
    (
        "fees",
        "SELECT payload->>'account' AS account, payload->>'amount' AS amount FROM raw \
         WHERE (payload->>'kind') = 'fee' AND (payload->>'day') = '3'",
    ),
];

/// The batch evaluation a view must equal.
fn oracle_sql(sql: &str) -> String {
    if !sql.contains("CAST(") {
        return sql.to_string();
    }
    sql.replace("CAST(", "TRY_CAST(").replace(
        "FROM raw GROUP BY",
        "FROM raw WHERE TRY_CAST(payload->>'amount' AS DOUBLE) IS NOT NULL GROUP BY",
    )
}

fn open(dir: &std::path::Path, workers: usize) -> Engine {
    common::open_tuned(
        dir,
        EngineOptions {
            workers,
            batch_records: 20_000,
            ..Default::default()
        },
        None,
    )
}

fn record(rng: &mut StdRng) -> String {
    let kind = ["debit", "credit", "fee"][rng.random_range(0..3)];
    let amount = if rng.random_bool(0.002) {
        "\"lots\"".to_string()
    } else {
        (rng.random_range(-400..1000) as f64 / 4.0).to_string()
    };
    format!(
        r#"{{"account":"acc-{}","amount":{amount},"kind":"{kind}","day":"{}"}}"#,
        rng.random_range(0..700),
        rng.random_range(0..7)
    )
}

async fn create(engine: &Engine) {
    engine
        .execute("CREATE TOPIC raw WITH (partitions = 3)")
        .await
        .unwrap();
    for (name, sql) in VIEWS {
        engine
            .execute(&format!("CREATE VIEW {name} AS {sql}"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_equal_one_worker_and_the_batch_evaluation() {
    let seed = std::env::var("KAPPA_SHARDS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("KAPPA_SHARDS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (split_dir, one_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut split = open(split_dir.path(), 3);
    let one = open(one_dir.path(), 1);
    create(&split).await;
    create(&one).await;
    let mut tokens = Vec::new();
    for round in 0..4 {
        let values: Vec<String> = (0..rng.random_range(8_000..16_000))
            .map(|_| record(&mut rng))
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        for chunk in refs.chunks(5_000) {
            tokens.push(split.append_json("raw", chunk).await.unwrap().token);
            one.append_json("raw", chunk).await.unwrap();
        }
        split.catch_up().await.unwrap();
        one.catch_up().await.unwrap();
        for (name, sql) in VIEWS {
            let frontier = split.frontier(name).await.unwrap().0;
            let got = rows(&split, &format!("SELECT * FROM {name}")).await;
            let oracle = table(
                &split
                    .evaluate_batch(&oracle_sql(sql), frontier)
                    .await
                    .unwrap(),
            );
            same(
                &got,
                &oracle,
                &format!("seed {seed}, round {round}: {name} against its batch evaluation"),
            );
            let single = rows(&one, &format!("SELECT * FROM {name}")).await;
            same(
                &got,
                &single,
                &format!("seed {seed}, round {round}: {name} against one worker"),
            );
            let (a, b) = (
                split.dead_letters(name).await.unwrap().len(),
                one.dead_letters(name).await.unwrap().len(),
            );
            assert_eq!(a, b, "seed {seed}: {name}'s dead letters");
        }
        if round == 1 {
            // Groups come back from the store, into the shards.
            drop(split);
            split = open(split_dir.path(), 3);
        }
    }
    assert!(
        !split.dead_letters("totals").await.unwrap().is_empty(),
        "seed {seed}: the workload has records that do not cast"
    );
    let status = split.view_status("totals").await.unwrap();
    assert_eq!(status.lag_micros, 0, "{status:?}");
    // History: the shards' changes, merged in log-time order.
    for token in tokens.iter().step_by(3) {
        for (name, sql) in VIEWS {
            let past = rows(
                &split,
                &format!("SELECT * FROM {name} AS OF TOKEN '{token}'"),
            )
            .await;
            let oracle = table(
                &split
                    .evaluate_batch(&oracle_sql(sql), token.log_time().0)
                    .await
                    .unwrap(),
            );
            same(
                &past,
                &oracle,
                &format!("seed {seed}: {name} AS OF {token}"),
            );
        }
    }
}

/// Fails with the row counts and the first row that differs (the views
/// have hundreds of rows).
fn same(got: &[Vec<String>], want: &[Vec<String>], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} rows, expected {}; first difference at row {first}: {:?}, expected {:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    );
}
