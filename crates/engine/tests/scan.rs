//! Full scans stream: a view or topic bigger than one scan batch (8,192
//! rows) answers whole, now and AS OF a point between which rows appeared,
//! changed and disappeared, and a LIMIT stops early. Expected answers are
//! computed here from the appended records, not by the engine.

mod common;

use common::{open, rows};
use std::collections::BTreeMap;

const KEYS: i64 = 20_000;

/// Appends `records` (key, amount) to `tx` and catches the views up;
/// returns the token of the append.
async fn append(engine: &kappa_engine::Engine, records: &[(i64, i64)]) -> String {
    let mut token = String::new();
    for chunk in records.chunks(5_000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(k, a)| format!(r#"{{"account":"k{k:06}","amount":{a}}}"#))
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        token = engine
            .append_json("tx", &refs)
            .await
            .unwrap()
            .token
            .to_string();
    }
    engine.catch_up().await.unwrap();
    token
}

/// The rows the view `positive` has over these records: (count, sum of
/// balances, sum of n), for keys whose balance is above 0.
fn expected(records: &[(i64, i64)]) -> (i64, i64, i64) {
    let mut by_key: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (k, a) in records {
        let e = by_key.entry(*k).or_default();
        e.0 += a;
        e.1 += 1;
    }
    by_key
        .values()
        .filter(|(sum, _)| *sum > 0)
        .fold((0, 0, 0), |(c, s, n), (sum, count)| {
            (c + 1, s + sum, n + count)
        })
}

fn totals(r: &[Vec<String>]) -> (i64, i64, i64) {
    let v: Vec<i64> = r[0].iter().map(|c| c.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[tokio::test]
async fn full_scans_of_large_views_and_topics_stream_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for sql in [
        "CREATE TOPIC tx (account TEXT, amount BIGINT) WITH (partitions = 2, key = 'account')",
        "CREATE VIEW positive AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n \
         FROM tx GROUP BY account HAVING SUM(amount) > 0",
    ] {
        engine.execute(sql).await.unwrap();
    }
    // Every key once, positive: all 20,000 rows exist at the first point.
    let mut history: Vec<(i64, i64)> = (0..KEYS).map(|k| (k, 1 + k % 7)).collect();
    let first = append(&engine, &history).await;
    // Then a third of the keys go negative (their rows disappear), some
    // grow, and new keys appear beyond the old range.
    let later: Vec<(i64, i64)> = (0..KEYS)
        .filter(|k| k % 3 == 0)
        .map(|k| (k, -100))
        .chain((0..KEYS).filter(|k| k % 5 == 1).map(|k| (k, 10)))
        .chain((KEYS..KEYS + 9_000).map(|k| (k, 2)))
        .collect();
    let at_first = expected(&history);
    history.extend_from_slice(&later);
    append(&engine, &later).await;
    let now = expected(&history);
    assert_eq!(at_first.0, KEYS);
    assert!(now.0 > 8_192 && now.0 != at_first.0, "{now:?}");

    let sql = "SELECT COUNT(*), SUM(balance), SUM(n) FROM positive";
    assert_eq!(totals(&rows(&engine, sql).await), now);
    let sql = format!("SELECT COUNT(*), SUM(balance), SUM(n) FROM positive AS OF TOKEN '{first}'");
    assert_eq!(totals(&rows(&engine, &sql).await), at_first);

    // Every row once, in key order, whole.
    let all = rows(&engine, "SELECT account FROM positive").await;
    assert_eq!(all.len() as i64, now.0);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "keys out of order or repeated"
    );

    // A LIMIT answers from the first batch.
    let some = rows(&engine, "SELECT account, balance FROM positive LIMIT 10").await;
    assert_eq!(some.len(), 10);
    assert_eq!(some[0][0], all[0][0]);

    // A topic reads as a table of every record, across log batches.
    let sql = "SELECT COUNT(*), SUM(amount), COUNT(DISTINCT account) FROM tx";
    let r = rows(&engine, sql).await;
    let sum: i64 = history.iter().map(|(_, a)| a).sum();
    assert_eq!(
        r[0],
        vec![
            history.len().to_string(),
            sum.to_string(),
            (KEYS + 9_000).to_string()
        ]
    );
    let r = rows(&engine, "SELECT amount FROM tx LIMIT 3").await;
    assert_eq!(r.len(), 3);
}
