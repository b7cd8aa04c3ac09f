//! Views kept current by the maintenance task; queries that carry a token
//! wait for it (bounded); several views are read at one point of the log.

mod common;

use common::{open, rows};
use kappa_engine::{Engine, EngineError, Output, QueryOptions};
use kappa_log::Token;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn setup(dir: &std::path::Path) -> Arc<Engine> {
    let engine = Arc::new(open(dir));
    for sql in [
        "CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')",
        "CREATE VIEW total AS SELECT COUNT(*) AS n, SUM(x) AS s FROM t",
        "CREATE VIEW by_a AS SELECT a, SUM(x) AS s FROM t GROUP BY a",
    ] {
        engine.execute(sql).await.unwrap();
    }
    engine
}

async fn rows_after(engine: &Engine, sql: &str, token: Token) -> Vec<Vec<String>> {
    let options = QueryOptions {
        after: Some(token),
        timeout: Duration::from_secs(10),
    };
    match engine.execute_with(sql, &options).await.unwrap() {
        Output::Rows(b) => common::table(&b),
        other => panic!("{sql}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintained_views_answer_a_token_with_the_append_in() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    let maintenance = engine.maintain();
    let mut sum = 0;
    for i in 1..=20 {
        sum += i;
        let value = format!(r#"{{"a":"k{}","x":{i}}}"#, i % 3);
        let token = engine
            .append_json("t", &[value.as_bytes()])
            .await
            .unwrap()
            .token;
        let started = Instant::now();
        let got = rows_after(&engine, "SELECT n, s FROM total", token).await;
        assert_eq!(
            got,
            vec![vec![i.to_string(), sum.to_string()]],
            "after append {i}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Views created while maintenance runs are brought up too.
    engine
        .execute("CREATE VIEW big AS SELECT a, COUNT(*) AS n FROM t WHERE x > 10 GROUP BY a")
        .await
        .unwrap();
    let token = engine.log().head().await.unwrap();
    assert_eq!(
        rows_after(&engine, "SELECT SUM(n) FROM big", token).await,
        vec![vec!["10".to_string()]]
    );
    maintenance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_views_do_not_reach_in_time_is_a_timeout_naming_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    let maintenance = engine.maintain();
    let head = engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap()
        .token;
    // A point the log has not reached: nothing can satisfy it.
    let future: Token = format!("kt1-{:x}", head.log_time().0 + 60_000_000)
        .parse()
        .unwrap();
    let options = QueryOptions {
        after: Some(future),
        timeout: Duration::from_millis(300),
    };
    let started = Instant::now();
    let err = engine
        .execute_with("SELECT n FROM total", &options)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, EngineError::Timeout { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("timed out") && text.contains("total"),
        "{text}"
    );
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3));
    maintenance.stop().await;
    // Without maintenance the query catches the views up itself; a token
    // past the log's head is refused at once.
    let err = engine
        .execute_with("SELECT n FROM total", &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has not reached this token"), "{err}");
    assert_eq!(
        rows_after(&engine, "SELECT n FROM total", head).await,
        vec![vec!["1".to_string()]]
    );
}

#[tokio::test]
async fn views_at_different_frontiers_are_read_at_one_point() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    engine
        .append_json("t", &[br#"{"a":"k","x":2}"#, br#"{"a":"j","x":4}"#])
        .await
        .unwrap();
    // Only `total` moves on.
    engine.catch_up_view("total").await.unwrap();
    assert_eq!(engine.view_status("total").await.unwrap().lag_micros, 0);
    let behind = engine.view_status("by_a").await.unwrap();
    assert!(behind.lag_micros > 0, "{behind:?}");
    assert_eq!(
        rows(&engine, "SELECT n FROM total").await,
        vec![vec!["3".to_string()]]
    );
    // Together, both are read where `by_a` is: one record in.
    assert_eq!(
        rows(&engine, "SELECT t.n, b.s FROM total t, by_a b").await,
        vec![vec!["1".to_string(), "1".to_string()]]
    );
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, "SELECT t.n, b.a, b.s FROM total t, by_a b").await,
        vec![
            vec!["3".to_string(), "j".to_string(), "4".to_string()],
            vec!["3".to_string(), "k".to_string(), "3".to_string()],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_without_views_waits_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT)")
        .await
        .unwrap();
    engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap();
    let maintenance = engine.maintain();
    let mut progress = engine.progress_watch();
    // With nothing to do, the task sleeps in the log's wait: CPU time over
    // half a second of wall time stays small.
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = cpu() - before;
    assert!(ticks < 20, "{ticks} clock ticks of CPU in 0.5 s idle");
    // And a view created now is still brought up.
    engine
        .execute("CREATE VIEW c AS SELECT COUNT(*) AS n FROM t")
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), progress.changed()).await;
    let head = engine.log().head().await.unwrap();
    assert_eq!(
        rows_after(&engine, "SELECT n FROM c", head).await,
        vec![vec!["1".to_string()]]
    );
    maintenance.stop().await;
}
