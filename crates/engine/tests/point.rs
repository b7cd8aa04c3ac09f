//! Point queries: a query that fixes a view's key columns with `=` reads
//! one row from the store; its answer must equal the same query answered
//! by scanning the whole view (an expression the lookup cannot use), now
//! and AS OF every token. The seed is printed; KAPPA_POINT_SEED replays one.

mod common;

use common::{open, rows};
use kappa_engine::Output;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn key_lookups_equal_full_scans_now_and_as_of() {
    let seed: u64 = std::env::var("KAPPA_POINT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("KAPPA_POINT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for sql in [
        "CREATE TOPIC tx (account TEXT, kind TEXT, amount BIGINT) WITH (partitions = 2, key = 'account')",
        "CREATE VIEW balances AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
        // Two key columns, listed after a value column.
        "CREATE VIEW by_kind AS SELECT COUNT(*) AS n, kind, account FROM tx GROUP BY account, kind",
        // A computed key: no lookup, still right.
        "CREATE VIEW upper_acc AS SELECT upper(account) AS acc, COUNT(*) AS n FROM tx GROUP BY upper(account)",
        // An integer key.
        "CREATE VIEW by_amount AS SELECT amount, COUNT(*) AS n FROM tx GROUP BY amount",
    ] {
        engine.execute(sql).await.unwrap();
    }
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let batch: Vec<String> = (0..rng.random_range(1..15))
            .map(|_| {
                format!(
                    r#"{{"account":"a{}","kind":"{}","amount":{}}}"#,
                    rng.random_range(0..5),
                    ["debit", "credit"][rng.random_range(0..2)],
                    rng.random_range(-50..50)
                )
            })
            .collect();
        let values: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
        tokens.push(engine.append_json("tx", &values).await.unwrap().token);
        engine.catch_up().await.unwrap();
    }
    let mut points = vec![String::new()];
    points.extend(tokens.iter().map(|t| format!(" AS OF TOKEN '{t}'")));
    let mut found = 0;
    for at in &points {
        for a in 0..6 {
            let acc = format!("a{a}");
            for kind in ["debit", "credit", "other"] {
                let pairs = [
                    (
                        format!("SELECT * FROM balances WHERE account = '{acc}'{at}"),
                        format!("SELECT * FROM balances WHERE account || '' = '{acc}'{at}"),
                    ),
                    (
                        format!(
                            "SELECT * FROM by_kind WHERE kind = '{kind}' AND account = '{acc}'{at}"
                        ),
                        format!(
                            "SELECT * FROM by_kind WHERE kind || '' = '{kind}' AND account || '' = '{acc}'{at}"
                        ),
                    ),
                    (
                        format!("SELECT n, account FROM balances WHERE account = '{acc}'{at}"),
                        format!(
                            "SELECT n, account FROM balances WHERE account || '' = '{acc}'{at}"
                        ),
                    ),
                    (
                        format!("SELECT * FROM by_amount WHERE amount = {}{at}", a * 7 - 20),
                        format!(
                            "SELECT * FROM by_amount WHERE amount + 0 = {}{at}",
                            a * 7 - 20
                        ),
                    ),
                    (
                        format!(
                            "SELECT * FROM upper_acc WHERE acc = '{}'{at}",
                            acc.to_uppercase()
                        ),
                        format!(
                            "SELECT * FROM upper_acc WHERE acc || '' = '{}'{at}",
                            acc.to_uppercase()
                        ),
                    ),
                ];
                for (lookup, scan) in pairs {
                    let got = rows(&engine, &lookup).await;
                    assert_eq!(got, rows(&engine, &scan).await, "{lookup}");
                    // The same columns, by name and type.
                    if !got.is_empty() {
                        let shape = |sql: String| {
                            let engine = &engine;
                            async move {
                                let Output::Rows(b) = engine.execute(&sql).await.unwrap() else {
                                    panic!("rows")
                                };
                                let schema = b[0].schema();
                                schema
                                    .fields()
                                    .iter()
                                    .map(|f| (f.name().clone(), f.data_type().clone()))
                                    .collect::<Vec<_>>()
                            }
                        };
                        assert_eq!(shape(lookup.clone()).await, shape(scan).await, "{lookup}");
                    }
                    found += got.len();
                }
            }
        }
    }
    assert!(found > 0, "some lookups find rows");
}
