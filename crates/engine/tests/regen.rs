//! Regeneration: CREATE OR REPLACE VIEW builds the next version beside
//! the live one while appends go on; the swap is atomic (every answer
//! comes wholly from one version); the new version equals a batch
//! evaluation of its definition; rollback brings the previous one back;
//! a restart mid-build resumes it.

mod common;

use common::{open, rows, table};
use kappa_engine::{Engine, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

const V1: &str = "SELECT a, SUM(x) AS s FROM t GROUP BY a";
const V2: &str = "SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a";

async fn append(engine: &Engine, from: i64, n: i64) {
    let lines: Vec<String> = (from..from + n)
        .map(|i| format!("{{\"a\":\"k{}\",\"x\":{i}}}", i % 50))
        .collect();
    let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    engine.append_json("t", &refs).await.unwrap();
}

async fn setup(dir: &std::path::Path) -> Arc<Engine> {
    let engine = Arc::new(open(dir));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_while_appending_swaps_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    for b in 0..40 {
        append(&engine, b * 1000, 1000).await;
    }
    let maintenance = engine.maintain();
    let mut feed = engine
        .subscribe("v", kappa_engine::feed::FeedStart::Now)
        .await
        .unwrap();
    // Appends go on at a steady rate through the replace.
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for b in 40..80 {
                append(&engine, b * 1000, 200).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let out = engine
        .execute(&format!("CREATE OR REPLACE VIEW v AS {V2}"))
        .await
        .unwrap();
    let Output::Done(message) = out else { panic!() };
    assert!(message.contains("version 2"), "{message}");
    // Queries meanwhile: each answer is wholly version 1 (2 columns) or
    // wholly version 2 (3 columns), never failing, and never back to 1
    // once 2 has answered.
    let started = Instant::now();
    let mut seen_two = false;
    loop {
        let answer = engine.execute("SELECT * FROM v").await.unwrap();
        let Output::Rows(batches) = answer else {
            panic!()
        };
        let columns = batches.first().map_or(0, |b| b.num_columns());
        match columns {
            2 => assert!(!seen_two, "version 1 answered after version 2 had"),
            3 => seen_two = true,
            0 => {}
            other => panic!("an answer with {other} columns"),
        }
        if seen_two && writer.is_finished() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the swap never happened"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
    // A subscriber is told, then gets the new version's rows.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the feed moves")
            .unwrap();
        if let kappa_engine::feed::FeedEvent::Replaced { version } = event {
            assert_eq!(version, 2);
            break;
        }
    }
    match feed.next().await.unwrap() {
        kappa_engine::feed::FeedEvent::Snapshot { rows, .. } => assert_eq!(rows.num_columns(), 3),
        other => panic!("after Replaced: {other:?}"),
    }
    let status = engine.view_status("v").await.unwrap();
    assert_eq!(status.version, 2);
    assert_eq!(status.previous_version, Some(1));
    assert!(status.replacing.is_none());
    // Caught up, version 2 equals its definition evaluated as one batch.
    engine.catch_up().await.unwrap();
    let frontier = engine.frontier("v").await.unwrap().0;
    let live = rows(&engine, "SELECT * FROM v ORDER BY a").await;
    let oracle = table(
        &engine
            .evaluate_batch(&format!("{V2} ORDER BY a"), frontier)
            .await
            .unwrap(),
    );
    assert_eq!(live, oracle);
    assert_eq!(live.len(), 50);

    // Rollback: version 1 catches up from where it stopped, then serves.
    engine.rollback_view("v").await.unwrap();
    let started = Instant::now();
    while engine.view_status("v").await.unwrap().version != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rollback never swapped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    append(&engine, 1_000_000, 10).await;
    engine.catch_up().await.unwrap();
    let frontier = engine.frontier("v").await.unwrap().0;
    assert_eq!(
        rows(&engine, "SELECT * FROM v ORDER BY a").await,
        table(
            &engine
                .evaluate_batch(&format!("{V1} ORDER BY a"), frontier)
                .await
                .unwrap()
        )
    );
    assert_eq!(
        engine.view_status("v").await.unwrap().previous_version,
        Some(2)
    );
    maintenance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_interrupted_by_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = setup(dir.path()).await;
        for b in 0..20 {
            append(&engine, b * 1000, 1000).await;
        }
        engine.catch_up_view("v").await.unwrap();
        // Replaced, not built: no maintenance task runs.
        engine
            .execute(&format!("CREATE OR REPLACE VIEW v AS {V2}"))
            .await
            .unwrap();
        let status = engine.view_status("v").await.unwrap();
        assert_eq!(status.version, 1);
        assert_eq!(status.replacing.map(|r| r.version), Some(2));
    }
    let engine = Arc::new(open(dir.path()));
    // Version 1 still serves after the restart; version 2 is pending.
    let status = engine.view_status("v").await.unwrap();
    assert_eq!(
        (status.version, status.replacing.map(|r| r.version)),
        (1, Some(2))
    );
    assert_eq!(rows(&engine, "SELECT * FROM v LIMIT 1").await[0].len(), 2);
    engine.catch_up().await.unwrap();
    let status = engine.view_status("v").await.unwrap();
    assert_eq!((status.version, status.replacing), (2, None));
    let frontier = engine.frontier("v").await.unwrap().0;
    assert_eq!(
        rows(&engine, "SELECT * FROM v ORDER BY a").await,
        table(
            &engine
                .evaluate_batch(&format!("{V2} ORDER BY a"), frontier)
                .await
                .unwrap()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_refused_when_views_read_it_or_the_sql_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    engine
        .execute("CREATE VIEW w AS SELECT COUNT(*) AS n FROM v")
        .await
        .unwrap();
    let err = engine
        .execute(&format!("CREATE OR REPLACE VIEW v AS {V2}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("views read it (w)"), "{err}");
    engine.execute("DROP VIEW w").await.unwrap();
    let err = engine
        .execute("CREATE OR REPLACE VIEW v AS SELECT nope FROM t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let status = engine.view_status("v").await.unwrap();
    assert_eq!((status.version, status.replacing), (1, None));
    // Rebuild: the same definition, a new version.
    engine.rebuild_view("v").await.unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(engine.view_status("v").await.unwrap().version, 2);
    // CREATE OR REPLACE of a view that does not exist creates it.
    engine
        .execute("CREATE OR REPLACE VIEW fresh AS SELECT COUNT(*) AS n FROM t")
        .await
        .unwrap();
    assert_eq!(engine.view_status("fresh").await.unwrap().version, 1);
    // Dropping a view drops its versions too.
    engine.execute("DROP VIEW v").await.unwrap();
    let err = engine.rollback_view("v").await.unwrap_err();
    assert!(err.to_string().contains("\"v\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_identical_then_names_a_damaged_row() {
    let dir = tempfile::tempdir().unwrap();
    let engine = setup(dir.path()).await;
    for b in 0..10 {
        append(&engine, b * 1000, 1000).await;
    }
    engine.catch_up().await.unwrap();
    let report = engine.verify_view("v").await.unwrap();
    assert!(report.identical(), "{report:?}");
    assert_eq!(report.rows, 50);
    engine.damage_for_test("v").await.unwrap();
    let report = engine.verify_view("v").await.unwrap();
    assert!(!report.identical());
    assert_eq!(
        (report.differing, report.only_live, report.only_rebuilt),
        (2, 1, 1),
        "{report:?}"
    );
    let first = &report.first[0];
    let (live, rebuilt) = (first.live.clone().unwrap(), first.rebuilt.clone().unwrap());
    assert_ne!(live, rebuilt);
    // The rebuilt row is the true one: the batch evaluation agrees.
    let frontier = report.frontier.0;
    let oracle = table(&engine.evaluate_batch(V1, frontier).await.unwrap());
    assert!(oracle.contains(&rebuilt), "{rebuilt:?} in {oracle:?}");
    // The damaged row holds another key's values.
    assert_ne!(live[0], rebuilt[0]);
    // A rebuild repairs it.
    engine.rebuild_view("v").await.unwrap();
    engine.catch_up().await.unwrap();
    assert!(engine.verify_view("v").await.unwrap().identical());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_version_is_freed_after_keep_previous() {
    let dir = tempfile::tempdir().unwrap();
    let options = kappa_engine::EngineOptions {
        keep_previous: Duration::from_millis(50),
        ..Default::default()
    };
    let engine = common::open_tuned(dir.path(), options, None);
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')")
        .await
        .unwrap();
    engine
        .execute(&format!("CREATE VIEW v AS {V1}"))
        .await
        .unwrap();
    append(&engine, 0, 100).await;
    engine
        .execute(&format!("CREATE OR REPLACE VIEW v AS {V2}"))
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        engine.view_status("v").await.unwrap().previous_version,
        Some(1)
    );
    // Still within the period: kept.
    engine.advance_replacements().await.unwrap();
    assert_eq!(
        engine.view_status("v").await.unwrap().previous_version,
        Some(1)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.advance_replacements().await.unwrap();
    assert_eq!(
        engine.view_status("v").await.unwrap().previous_version,
        None
    );
    let err = engine.rollback_view("v").await.unwrap_err();
    assert!(err.to_string().contains("no previous version"), "{err}");
    // After a restart too.
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(
        engine.view_status("v").await.unwrap().previous_version,
        None
    );
    assert_eq!(engine.view_status("v").await.unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_a_schedule_keeps_its_outcome_in_status() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Arc::new(open(dir.path()));
        engine
            .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')")
            .await
            .unwrap();
        let err = engine
            .execute(&format!(
                "CREATE VIEW v WITH (verify_every = '5 s') AS {V1}"
            ))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at least '1 minute'"), "{err}");
        engine
            .execute(&format!(
                "CREATE VIEW v WITH (verify_every = '1 hour') AS {V1}"
            ))
            .await
            .unwrap();
        append(&engine, 0, 500).await;
        assert_eq!(engine.view_status("v").await.unwrap().last_verify, None);
        // Never verified: due at once (the maintenance task runs it).
        let maintenance = engine.maintain();
        let started = Instant::now();
        let outcome = loop {
            if let Some(o) = engine.view_status("v").await.unwrap().last_verify {
                break o;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never verified"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(outcome.identical);
        maintenance.stop().await;
        // Not due again within the hour; a verify by hand records its
        // outcome.
        engine.damage_for_test("v").await.unwrap();
        assert!(engine.verify_due().await.unwrap().is_empty());
        assert!(
            engine
                .view_status("v")
                .await
                .unwrap()
                .last_verify
                .unwrap()
                .identical
        );
        engine.verify_view("v").await.unwrap();
    }
    let engine = open(dir.path());
    let last = engine.view_status("v").await.unwrap().last_verify.unwrap();
    assert!(!last.identical && last.differing == 2, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_left_by_a_cut_short_verify_is_dropped_at_open() {
    use kappa_store::{RedbStore, StateStore, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    drop(setup(dir.path()).await);
    {
        // What a verify leaves when killed mid-build: the catalog entry and
        // some of the shadow's state.
        let store =
            RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default()).unwrap();
        let mut rows = kappa_store::Puts::default();
        rows.push(b"k", Some(b"v"));
        let mut commit = kappa_store::ViewCommit {
            view: 99,
            rows,
            frontier: 7,
            ..Default::default()
        };
        let mut w = store.write().unwrap();
        w.apply(&mut commit).unwrap();
        w.put_catalog("shadow:99", b"99").unwrap();
        w.commit().unwrap();
        assert!(store.read().unwrap().meta(99).unwrap().is_some());
    }
    drop(open(dir.path()));
    let store = RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default()).unwrap();
    let read = store.read().unwrap();
    assert!(
        read.meta(99).unwrap().is_none(),
        "the shadow's state is gone"
    );
    assert!(read.row(99, b"k").unwrap().is_none());
    assert!(
        !read
            .catalog()
            .unwrap()
            .iter()
            .any(|(n, _)| n.starts_with("shadow:"))
    );
}
