//! Snapshots: a rebuild that starts from one replays only what follows
//! it; a damaged snapshot is refused whole; truncating a topic waits for
//! every reader's snapshot; a new state store over the same log is
//! seeded from one; an in-place rebuild drops the live version first.

mod common;

use common::{open, open_tuned, rows, table};
use kappa_engine::{Engine, EngineError, EngineOptions, FromSnapshot, Output, RebuildOptions};
use std::path::Path;
use std::sync::Arc;

const V1: &str = "SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a";

async fn append(engine: &Engine, from: i64, n: i64) {
    let lines: Vec<String> = (from..from + n)
        .map(|i| format!("{{\"a\":\"k{}\",\"x\":{i}}}", i % 50))
        .collect();
    let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    engine.append_json("t", &refs).await.unwrap();
}

fn engine_in(dir: &Path) -> Arc<Engine> {
    Arc::new(open_tuned(
        dir,
        EngineOptions {
            snapshot_dir: Some(dir.join("snapshots")),
            ..EngineOptions::default()
        },
        None,
    ))
}

async fn setup(dir: &Path) -> Arc<Engine> {
    let engine = engine_in(dir);
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')")
        .await
        .unwrap();
    engine
        .execute(&format!("CREATE VIEW v AS {V1}"))
        .await
        .unwrap();
    engine
}

/// The view equals its definition evaluated as one batch at its frontier.
async fn assert_matches_batch(engine: &Engine) {
    let frontier = engine.frontier("v").await.unwrap().0;
    assert_eq!(
        rows(engine, "SELECT * FROM v ORDER BY a").await,
        table(
            &engine
                .evaluate_batch(&format!("{V1} ORDER BY a"), frontier)
                .await
                .unwrap()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_a_snapshot_replays_only_what_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    for b in 0..10 {
        append(&engine, b * 1000, 1000).await;
    }
    engine.catch_up().await.unwrap();
    let info = engine.snapshot_view("v", None).await.unwrap();
    assert!(info.path.starts_with(dir.path().join("snapshots")));
    assert_eq!(info.rows, 50);
    assert_eq!(info.version, 1);
    assert_eq!(engine.snapshots("v").await.unwrap(), vec![info.clone()]);
    append(&engine, 10_000, 700).await;
    let out = engine
        .rebuild_view_with(
            "v",
            &RebuildOptions {
                from_snapshot: Some(FromSnapshot::Latest),
                in_place: false,
            },
        )
        .await
        .unwrap();
    let Output::Done(message) = out else { panic!() };
    assert!(message.contains("replays only what follows"), "{message}");
    engine.catch_up().await.unwrap();
    let status = engine.view_status("v").await.unwrap();
    assert_eq!((status.version, status.replacing), (2, None));
    // Version 2 applied the 700 records after the snapshot, not 10,700.
    assert_eq!(status.records_applied, 700);
    assert_eq!(status.history_start.0, info.frontier);
    assert_matches_batch(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_foreign_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    append(&engine, 0, 3000).await;
    engine.catch_up().await.unwrap();
    let info = engine.snapshot_view("v", None).await.unwrap();
    let good = std::fs::read(&info.path).unwrap();
    let rebuild = |p: &Path| RebuildOptions {
        from_snapshot: Some(FromSnapshot::Path(p.to_path_buf())),
        in_place: false,
    };
    // One flipped bit in a block, a cut file, a stranger's file.
    let flipped = dir.path().join("flipped.ksnap");
    let mut bytes = good.clone();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x10;
    std::fs::write(&flipped, &bytes).unwrap();
    let cut = dir.path().join("cut.ksnap");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let stranger = dir.path().join("stranger.ksnap");
    std::fs::write(&stranger, b"hello, world").unwrap();
    for (path, says) in [
        (&flipped, "damaged"),
        (&cut, "cut short"),
        (&stranger, "not a Kappa snapshot"),
    ] {
        let err = engine
            .rebuild_view_with("v", &rebuild(path))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::Snapshot { reason, .. } if reason.contains(says)),
            "{}: {err}",
            path.display()
        );
    }
    // A snapshot of another definition.
    engine
        .execute("CREATE VIEW w AS SELECT a, MAX(x) AS m FROM t GROUP BY a")
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    let other = engine.snapshot_view("w", None).await.unwrap();
    let err = engine
        .rebuild_view_with("v", &rebuild(&other.path))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another definition"), "{err}");
    let status = engine.view_status("v").await.unwrap();
    assert_eq!((status.version, status.replacing), (1, None));
    assert_matches_batch(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_waits_for_every_readers_snapshot_then_rebuilds_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    engine
        .execute("CREATE VIEW w AS SELECT a, MAX(x) AS m FROM t GROUP BY a")
        .await
        .unwrap();
    for b in 0..6 {
        append(&engine, b * 1000, 1000).await;
    }
    engine.catch_up().await.unwrap();
    let v_snap = engine.snapshot_view("v", None).await.unwrap();
    let point = kappa_log::Token::at(kappa_log::LogTime(v_snap.frontier)).to_string();
    // w has no snapshot: refused, naming it, nothing dropped.
    let err = engine.truncate_topic("t", &point).await.unwrap_err();
    assert!(err.to_string().contains("view w"), "{err}");
    assert!(!err.to_string().contains("view v "), "{err}");
    let head = engine.log().describe_topic("t").await.unwrap();
    assert!(head.partitions.iter().all(|p| p.start_offset == 0));
    append(&engine, 6000, 500).await;
    engine.catch_up().await.unwrap();
    engine.snapshot_view("w", None).await.unwrap();
    let out = engine.truncate_topic("t", &point).await.unwrap();
    let Output::Done(message) = out else { panic!() };
    assert!(message.contains("truncated topic t"), "{message}");
    let described = engine.log().describe_topic("t").await.unwrap();
    let kept: u64 = described
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    assert_eq!(kept, 500, "exactly the records after the snapshot are kept");
    // A new definition cannot be built from what is left.
    let err = engine
        .execute("CREATE OR REPLACE VIEW v AS SELECT a, COUNT(*) AS n FROM t GROUP BY a")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // A rebuild of the same definition starts from the snapshot.
    let before = rows(&engine, "SELECT * FROM v ORDER BY a").await;
    let Output::Done(message) = engine.rebuild_view("v").await.unwrap() else {
        panic!()
    };
    assert!(message.contains("snapshot"), "{message}");
    engine.catch_up().await.unwrap();
    assert_eq!(engine.view_status("v").await.unwrap().version, 2);
    assert_eq!(rows(&engine, "SELECT * FROM v ORDER BY a").await, before);
    assert_eq!(engine.view_status("v").await.unwrap().records_applied, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_state_store_over_the_same_log_is_seeded_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = {
        let engine = setup(dir.path()).await;
        append(&engine, 0, 4000).await;
        engine.catch_up().await.unwrap();
        let info = engine.snapshot_view("v", None).await.unwrap();
        append(&engine, 4000, 300).await;
        engine.catch_up().await.unwrap();
        (info.path, rows(&engine, "SELECT * FROM v ORDER BY a").await)
    };
    // The view store is lost; the log and the snapshot are not.
    std::fs::remove_file(dir.path().join("state.redb")).unwrap();
    let engine = engine_in(dir.path());
    let (name, out) = engine.restore_view(&path, None).await.unwrap();
    assert_eq!(name, "v");
    let Output::Done(message) = out else { panic!() };
    assert!(message.contains("restoring view v"), "{message}");
    // Restoring twice is refused.
    assert!(engine.restore_view(&path, None).await.is_err());
    engine.catch_up().await.unwrap();
    let status = engine.view_status("v").await.unwrap();
    assert_eq!(status.records_applied, 300);
    assert_eq!(rows(&engine, "SELECT * FROM v ORDER BY a").await, expected);
    append(&engine, 4300, 10).await;
    engine.catch_up().await.unwrap();
    assert_matches_batch(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rebuild_drops_the_live_version_and_answers_when_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    append(&engine, 0, 5000).await;
    engine.catch_up().await.unwrap();
    let Output::Done(message) = engine
        .rebuild_view_with(
            "v",
            &RebuildOptions {
                from_snapshot: None,
                in_place: true,
            },
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(message.contains("downtime"), "{message}");
    // Until it has caught up, the view answers no query (and says so).
    let err = engine.execute("SELECT * FROM v").await.unwrap_err();
    assert!(err.to_string().contains("rebuilt"), "{err}");
    let status = engine.view_status("v").await.unwrap();
    assert_eq!(status.replacing.map(|r| r.version), Some(2));
    engine.catch_up().await.unwrap();
    let status = engine.view_status("v").await.unwrap();
    assert_eq!(
        (status.version, status.previous_version, status.replacing),
        (2, None, None)
    );
    assert_matches_batch(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_a_snapshot_loads_loads_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let engine = setup(dir.path()).await;
        append(&engine, 0, 2000).await;
        engine.catch_up().await.unwrap();
        let info = engine.snapshot_view("v", None).await.unwrap();
        // The rebuild is recorded, not loaded (no maintenance runs): as if
        // the process died before the load committed.
        engine
            .rebuild_view_with(
                "v",
                &RebuildOptions {
                    from_snapshot: Some(FromSnapshot::Latest),
                    in_place: false,
                },
            )
            .await
            .unwrap();
        info.path
    };
    assert!(path.exists());
    let engine = Arc::new(open(dir.path()));
    append(&engine, 2000, 100).await;
    engine.catch_up().await.unwrap();
    let status = engine.view_status("v").await.unwrap();
    assert_eq!((status.version, status.records_applied), (2, 100));
    assert_matches_batch(&engine).await;
}
