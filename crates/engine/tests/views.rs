//! Views against the built-in oracle: every incrementally maintained view
//! equals its definition evaluated as one batch query over the records up
//! to its frontier, and AS OF T equals that query over records up to T,
//! across batches, restarts and views over views. The seed is printed;
//! KAPPA_VIEWS_SEED replays one.

mod common;

use common::{open, open_with, rows, table};
use kappa_engine::{Engine, EngineError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VIEWS: &[(&str, &str)] = &[
    (
        "balances",
        "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM transactions GROUP BY account",
    ),
    (
        "by_kind",
        "SELECT kind, MIN(amount) AS lo, MAX(amount) AS hi, AVG(amount) AS mean, \
         COUNT(DISTINCT account) AS accounts, COUNT(ts) AS timed FROM transactions \
         GROUP BY kind HAVING COUNT(*) > 2",
    ),
    (
        "big",
        "SELECT account, amount * 2 AS doubled, upper(kind) AS k, \
         CASE WHEN amount > 90 THEN 'huge' ELSE 'big' END AS size \
         FROM transactions WHERE amount > 50",
    ),
    (
        "total",
        "SELECT COUNT(*) AS n, SUM(amount) AS s FROM transactions",
    ),
    (
        "rich",
        "SELECT n > 3 AS active, COUNT(*) AS accounts, MAX(balance) AS top, MIN(balance) AS bottom \
         FROM balances WHERE balance > 20 GROUP BY n > 3",
    ),
];

fn record(rng: &mut StdRng) -> String {
    let kind = ["debit", "credit", "fee"][rng.random_range(0..3)];
    let ts = if rng.random_bool(0.8) {
        format!("\"2026-01-0{}T10:00:00Z\"", rng.random_range(1..10))
    } else {
        "null".into()
    };
    format!(
        r#"{{"account":"acc-{:02}","amount":{},"kind":"{kind}","ts":{ts}}}"#,
        rng.random_range(0..12),
        rng.random_range(-40..100) as f64 / 2.0
    )
}

async fn check_against_oracle(engine: &Engine, seed: u64) {
    for (name, sql) in VIEWS {
        let frontier = engine.frontier(name).await.unwrap().0;
        let live = rows(engine, &format!("SELECT * FROM {name}")).await;
        let oracle = table(&engine.evaluate_batch(sql, frontier).await.unwrap());
        assert_eq!(
            live, oracle,
            "seed {seed}: view {name} differs from its batch evaluation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_batch_evaluation_now_and_as_of() {
    oracle(kappa_engine::EngineOptions::default().memory_budget).await;
}

/// The same with a budget so small that every step commits and every
/// commit drops the groups from memory: state comes back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_batch_evaluation_with_state_evicted() {
    oracle(64).await;
}

async fn oracle(budget: usize) {
    let seed = std::env::var("KAPPA_VIEWS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("KAPPA_VIEWS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open_with(dir.path(), budget);
    engine
        .execute(
            "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
             WITH (partitions = 4, key = 'account', event_time = 'ts')",
        )
        .await
        .unwrap();
    for (name, sql) in VIEWS {
        engine
            .execute(&format!("CREATE VIEW {name} AS {sql}"))
            .await
            .unwrap();
    }
    let mut tokens = Vec::new();
    for round in 0..12 {
        let n = rng.random_range(1..60);
        let values: Vec<String> = (0..n).map(|_| record(&mut rng)).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let r = engine.append_json("transactions", &refs).await.unwrap();
        tokens.push(r.token);
        if rng.random_bool(0.5) {
            engine.catch_up().await.unwrap();
            check_against_oracle(&engine, seed).await;
        }
        if round == 6 {
            // Restart: state and frontier come back from the store.
            drop(engine);
            engine = open_with(dir.path(), budget);
        }
    }
    engine.catch_up().await.unwrap();
    check_against_oracle(&engine, seed).await;
    // AS OF every token: the view as it was then.
    for token in &tokens {
        for (name, sql) in VIEWS {
            let past = rows(
                &engine,
                &format!("SELECT * FROM {name} AS OF TOKEN '{token}'"),
            )
            .await;
            let oracle = table(
                &engine
                    .evaluate_batch(sql, token.log_time().0)
                    .await
                    .unwrap(),
            );
            assert_eq!(past, oracle, "seed {seed}: {name} AS OF {token}");
        }
    }
    // Joins and aggregates over views in a pull query.
    let joined = rows(
        &engine,
        "SELECT b.account, b.balance, count(*) FROM balances b JOIN transactions t \
         ON b.account = t.account GROUP BY b.account, b.balance ORDER BY 1",
    )
    .await;
    assert!(!joined.is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_with_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .execute("CREATE TOPIC t (a TEXT NOT NULL, x DOUBLE) WITH (key = 'a')")
        .await
        .unwrap();
    let head = engine.log().head().await.unwrap();
    let batch: Vec<&[u8]> = vec![
        br#"{"a":"k","x":1}"#,
        br#"{"a":"k","x":2.5}"#,
        br#"{"a":"k","x":"three"}"#,
    ];
    let err = engine.append_json("t", &batch).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, EngineError::RecordRejected { index: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("\"x\"") && msg.contains("DOUBLE") && msg.contains("three"),
        "{msg}"
    );
    assert_eq!(engine.log().head().await.unwrap(), head, "nothing appended");
    for (bad, what) in [
        (&br#"{"x":1}"#[..], "NOT NULL"),
        (br#"{"a":"k","y":1}"#, "no column \"y\""),
        (br#"[1,2]"#, "JSON object"),
        (br#"{"a":"#, "not valid JSON"),
    ] {
        let msg = engine
            .append_json("t", &[bad])
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(what), "{msg}");
    }
    for (sql, construct) in [
        ("CREATE VIEW v AS SELECT a FROM t ORDER BY a", "ORDER BY"),
        ("CREATE VIEW v AS SELECT a, x FROM t LIMIT 3", "LIMIT"),
        (
            "CREATE VIEW v AS SELECT a, row_number() OVER () FROM t",
            "window",
        ),
        (
            "CREATE VIEW v AS SELECT t1.a FROM t t1 JOIN t t2 ON t1.a = t2.a",
            "JOIN",
        ),
        (
            "CREATE VIEW v AS SELECT a, stddev(x) FROM t GROUP BY a",
            "STDDEV",
        ),
    ] {
        let msg = engine.execute(sql).await.unwrap_err().to_string();
        assert!(msg.contains(construct), "{sql}: {msg}");
    }
    let msg = engine
        .execute("CREATE VIEW v AS SELECT nope FROM t")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope"), "{msg}");
    let msg = engine
        .execute("SELECT * FROM missing")
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing"), "{msg}");
}

/// A topic without a schema holds raw JSON, read with `->>`; a record a view
/// cannot evaluate goes to its dead letters with the reason and position,
/// and the view goes on.
#[tokio::test]
async fn raw_json_topics_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .execute("CREATE TOPIC raw WITH (partitions = 2)")
        .await
        .unwrap();
    engine
        .execute(
            "CREATE VIEW totals AS SELECT payload->>'account' AS account, \
             SUM(CAST(payload->>'amount' AS DOUBLE)) AS total, COUNT(*) AS n \
             FROM raw GROUP BY payload->>'account'",
        )
        .await
        .unwrap();
    let batch: Vec<&[u8]> = vec![
        br#"{"account":"a","amount":"1.5"}"#,
        br#"{"account":"a","amount":"lots"}"#,
        br#"{"account":"b","amount":2}"#,
        br#"{"account":"a","amount":3}"#,
    ];
    let r = engine.append_json("raw", &batch).await.unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, "SELECT account, total, n FROM totals").await,
        vec![
            vec!["a".to_string(), "4.50000000e0".into(), "2".into()],
            vec!["b".to_string(), "2.00000000e0".into(), "1".into()],
        ]
    );
    let letters = engine.dead_letters("totals").await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let status = engine.view_status("totals").await.unwrap();
    assert_eq!(status.dead_letters, 1);
    assert_eq!(status.lag_micros, 0, "caught up: {status:?}");
    assert_eq!(
        status.frontier,
        engine.log().head().await.unwrap().log_time()
    );
    let bad = &r.positions[1];
    assert_eq!(letters[0]["log_time"], bad.log_time.0);
    assert_eq!(letters[0]["offset"], bad.offset);
    assert_eq!(letters[0]["partition"], bad.partition);
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("lots"),
        "{letters:?}"
    );
    // The view goes on with later records.
    engine
        .append_json("raw", &[br#"{"account":"b","amount":"0.5"}"#])
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, "SELECT total FROM totals WHERE account = 'b'").await,
        vec![vec!["2.50000000e0".to_string()]]
    );
}

/// History is kept for the view's retention; AS OF before it is an error
/// naming the earliest point.
#[tokio::test]
async fn as_of_outside_history_names_the_earliest_point() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (key = 'a')")
        .await
        .unwrap();
    engine
        .execute("CREATE VIEW v WITH (history = '1 us') AS SELECT a, SUM(x) AS s FROM t GROUP BY a")
        .await
        .unwrap();
    let first = engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = engine
        .append_json("t", &[br#"{"a":"k","x":2}"#])
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(
            &engine,
            &format!("SELECT s FROM v AS OF TOKEN '{}'", second.token)
        )
        .await,
        vec![vec!["3".to_string()]]
    );
    let early = first.token.log_time().0 - 1;
    let err = engine
        .execute(&format!("SELECT s FROM v AS OF TOKEN 'kt1-{early:x}'"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("earliest point") && err.contains("view v"),
        "{err}"
    );
    // Past the frontier is an error too.
    let late = second.token.log_time().0 + 10_000_000;
    let err = engine
        .execute(&format!("SELECT s FROM v AS OF TOKEN 'kt1-{late:x}'"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only applied the log up to"), "{err}");
}

/// A view created over old records replays them but keeps only the history
/// its retention covers: AS OF before it is refused (not answered from a
/// partial history), AS OF inside it is exact.
#[tokio::test]
async fn a_replay_writes_only_the_history_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (key = 'a')")
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for x in 1..=3 {
        let value = format!(r#"{{"a":"k","x":{x}}}"#);
        tokens.push(
            engine
                .append_json("t", &[value.as_bytes()])
                .await
                .unwrap()
                .token,
        );
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let last = engine
        .append_json("t", &[br#"{"a":"k","x":10}"#])
        .await
        .unwrap()
        .token;
    engine
        .execute(
            "CREATE VIEW v WITH (history = '20 ms') AS SELECT a, SUM(x) AS s FROM t GROUP BY a",
        )
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, &format!("SELECT s FROM v AS OF TOKEN '{last}'")).await,
        vec![vec!["16".to_string()]]
    );
    for early in &tokens {
        let err = engine
            .execute(&format!("SELECT s FROM v AS OF TOKEN '{early}'"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("earliest point"), "{err}");
    }
}
