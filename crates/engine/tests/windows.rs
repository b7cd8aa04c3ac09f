//! Event-time windows across restarts: the largest time seen and the late
//! count are committed with the view, so a window closed before a restart
//! stays closed after it, and the view's status counts late records.

mod common;

use common::{open, rows, table};

async fn append(engine: &kappa_engine::Engine, records: &[(&str, i64, &str)]) {
    let values: Vec<String> = records
        .iter()
        .map(|(a, x, ts)| format!(r#"{{"account":"{a}","amount":{x},"ts":"2026-01-01T10:{ts}Z"}}"#))
        .collect();
    let values: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
    engine.append_json("tx", &values).await.unwrap();
}

#[tokio::test]
async fn a_closed_window_stays_closed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let view = "SELECT window_start, SUM(amount) AS total FROM TUMBLE(tx, ts, INTERVAL '1 minute', INTERVAL '10 seconds') GROUP BY window_start";
    {
        let engine = open(dir.path());
        engine
            .execute("CREATE TOPIC tx (account TEXT NOT NULL, amount BIGINT, ts TIMESTAMP) WITH (partitions = 1)")
            .await
            .unwrap();
        engine
            .execute(&format!("CREATE VIEW w AS {view}"))
            .await
            .unwrap();
        // 01:15 closes the 10:00 window (its end, 01:00, plus 10 s).
        append(&engine, &[("a", 1, "00:30"), ("a", 2, "01:15")]).await;
        engine.catch_up().await.unwrap();
        assert_eq!(engine.view_status("w").await.unwrap().late_records, 0);
    }
    let engine = open(dir.path());
    // After the restart the view must still know 01:15 was seen.
    append(
        &engine,
        &[("a", 4, "00:59"), ("b", 8, "01:05"), ("a", 16, "00:01")],
    )
    .await;
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, "SELECT * FROM w").await,
        vec![
            vec!["2026-01-01T10:00:00".to_string(), "1".to_string()],
            vec!["2026-01-01T10:01:00".to_string(), "10".to_string()],
        ]
    );
    let frontier = engine.frontier("w").await.unwrap().0;
    assert_eq!(
        rows(&engine, "SELECT * FROM w").await,
        table(&engine.evaluate_batch(view, frontier).await.unwrap())
    );
    assert_eq!(engine.view_status("w").await.unwrap().late_records, 2);
}

/// A batch with a record the view cannot evaluate is redone record by
/// record from the window state before the batch: the failed record still
/// counts as seen (it has a time), the others are windowed as if alone.
#[tokio::test]
async fn a_dead_letter_in_a_batch_does_not_close_windows_early() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine
        .execute("CREATE TOPIC tx (code TEXT, ts TIMESTAMP) WITH (partitions = 1)")
        .await
        .unwrap();
    engine
        .execute("CREATE VIEW w AS SELECT window_start, SUM(CAST(code AS BIGINT)) AS total FROM TUMBLE(tx, ts, INTERVAL '1 minute', INTERVAL '0 seconds') GROUP BY window_start")
        .await
        .unwrap();
    let values = [
        r#"{"code":"1","ts":"2026-01-01T10:00:30Z"}"#,
        r#"{"code":"x","ts":"2026-01-01T10:01:30Z"}"#,
        r#"{"code":"2","ts":"2026-01-01T10:00:40Z"}"#,
    ];
    let values: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
    engine.append_json("tx", &values).await.unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        rows(&engine, "SELECT * FROM w").await,
        vec![vec!["2026-01-01T10:00:00".to_string(), "1".to_string()]]
    );
    let status = engine.view_status("w").await.unwrap();
    assert_eq!((status.dead_letters, status.late_records), (1, 1));
}
