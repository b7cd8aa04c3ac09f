//! History written ahead of the commits that reach it (`history.rs`): a
//! catch-up stages its change blocks past the view's frontier as it goes;
//! blocks left there by a catch-up that never reached them are thrown
//! away before the view goes on, so feeds and AS OF never see them.

mod common;

use kappa_engine::{EngineOptions, ViewDef};
use kappa_store::{ChangeBlocks, RedbStore, StateStore, StoreOptions};
use std::sync::Arc;

fn options() -> EngineOptions {
    EngineOptions {
        workers: 2,
        batch_records: 7,
        // A block (and a staging) every few changes.
        stage_bytes: 64,
        ..Default::default()
    }
}

async fn append(engine: &kappa_engine::Engine, from: u32, n: u32) {
    let values: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"a":"k{}","x":{}}}"#, i % 5, i % 7))
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    engine.append_json("t", &refs).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_staged_past_the_frontier_are_discarded_before_the_view_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::open_tuned(dir.path(), options(), None);
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')")
        .await
        .unwrap();
    engine
        .execute("CREATE VIEW v AS SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a")
        .await
        .unwrap();
    append(&engine, 0, 100).await;
    engine.catch_up().await.unwrap();
    let frontier = engine.frontier("v").await.unwrap().0;
    let engine = Arc::new(engine);
    let before = common::feed_changes(&engine, "v", frontier - 1).await;
    assert_eq!(before.len(), 1, "the last record's change");
    drop(engine);

    // What a catch-up cut off by a crash leaves: a block staged past the
    // frontier (a real change, moved to a log time no record has).
    let leftover = frontier + 2;
    {
        let store =
            RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default()).unwrap();
        let read = store.read().unwrap();
        let def = read
            .catalog()
            .unwrap()
            .into_iter()
            .find(|(name, _)| name == "view:v")
            .map(|(_, def)| serde_json::from_slice::<ViewDef>(&def).unwrap())
            .unwrap();
        let mut last = None;
        read.changes(def.id, frontier - 1, &mut |c| {
            last = Some(c.clone());
            true
        })
        .unwrap();
        drop(read);
        let mut c = last.unwrap();
        c.log_time = leftover;
        let mut w = store.write().unwrap();
        w.stage_changes(def.id, &ChangeBlocks::from_changes(&[c]).into_blocks())
            .unwrap();
        w.commit().unwrap();
    }

    let engine = common::open_tuned(dir.path(), options(), None);
    append(&engine, 100, 100).await;
    engine.catch_up().await.unwrap();
    let engine = Arc::new(engine);
    let after = common::feed_changes(&engine, "v", frontier - 1).await;
    assert_eq!(
        after.len(),
        101,
        "the last record's change, then 100 new ones"
    );
    assert!(
        after.iter().all(|(t, ..)| *t != leftover),
        "the block left past the frontier was not discarded"
    );
    common::assert_chain(&after, "after the discard");
    // And the view equals its batch evaluation, now and AS OF before.
    for at in [frontier, engine.frontier("v").await.unwrap().0] {
        let live = common::rows(
            &engine,
            &format!("SELECT * FROM v AS OF TOKEN 'kt1-{at:x}'"),
        )
        .await;
        let oracle = common::table(
            &engine
                .evaluate_batch("SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a", at)
                .await
                .unwrap(),
        );
        assert_eq!(live, oracle, "AS OF {at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_staging_fails_the_catch_up_and_the_next_one_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let engine = Arc::new(common::open_failing_stages(
        dir.path(),
        options(),
        failing.clone(),
    ));
    engine
        .execute("CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 2, key = 'a')")
        .await
        .unwrap();
    let sql = "SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a";
    engine
        .execute(&format!("CREATE VIEW v AS {sql}"))
        .await
        .unwrap();
    append(&engine, 0, 50).await;
    engine.catch_up().await.unwrap();
    let start = engine.frontier("v").await.unwrap().0;
    append(&engine, 50, 200).await;
    // The first staging of this catch-up fails: so does the catch-up,
    // and the view stays where it was committed.
    failing.store(1, std::sync::atomic::Ordering::Relaxed);
    let err = engine.catch_up().await.unwrap_err();
    assert!(err.to_string().contains("a staging failed"), "{err}");
    assert_eq!(failing.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(engine.frontier("v").await.unwrap().0, start);
    // The next one starts again from the store and gets everything once.
    engine.catch_up().await.unwrap();
    let changes = common::feed_changes(&engine, "v", start).await;
    assert_eq!(changes.len(), 200);
    let at = engine.frontier("v").await.unwrap().0;
    let live = common::rows(
        &engine,
        &format!("SELECT * FROM v AS OF TOKEN 'kt1-{at:x}'"),
    )
    .await;
    let oracle = common::table(&engine.evaluate_batch(sql, at).await.unwrap());
    assert_eq!(live, oracle);
}
