//! Change feeds: a snapshot, then every change in log-time order with
//! progress marks; folding the changes into the snapshot gives the view at
//! every later point; a feed resumed from a position repeats and skips
//! nothing. The seed is printed; KAPPA_FEED_SEED replays one.

mod common;

use common::open;
use datafusion::common::ScalarValue;
use kappa_engine::feed::{FeedEvent, FeedStart};
use kappa_engine::{Engine, EngineError, Output};
use kappa_log::{LogTime, Token};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

type Rows = BTreeMap<Vec<u8>, Vec<ScalarValue>>;

/// A keyed topic `t` and view `v` of its sums by key.
const KEYED_SUMS: [&str; 2] = [
    "CREATE TOPIC t (a TEXT, x BIGINT) WITH (key = 'a')",
    "CREATE VIEW v AS SELECT a, SUM(x) AS s FROM t GROUP BY a",
];

/// An engine in `dir` with `statements` executed.
async fn engine_with(dir: &std::path::Path, statements: &[&str]) -> Arc<Engine> {
    let engine = Arc::new(open(dir));
    for sql in statements {
        engine.execute(sql).await.unwrap();
    }
    engine
}

/// The (before, after) of each change `feed` delivers until a progress
/// mark at or past `until`.
async fn changes_until(
    feed: &mut kappa_engine::feed::Feed,
    until: LogTime,
) -> Vec<(Option<Vec<ScalarValue>>, Option<Vec<ScalarValue>>)> {
    let mut changes = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the feed moves on")
            .expect("the feed goes on")
        {
            FeedEvent::Change { before, after, .. } => changes.push((before, after)),
            FeedEvent::Progress { frontier } if frontier >= until => return changes,
            _ => {}
        }
    }
}

/// The view's rows by key, read through a snapshot feed at `at`.
async fn snapshot_rows(engine: &Arc<Engine>, view: &str, at: LogTime) -> Vec<String> {
    let mut feed = engine
        .subscribe(view, FeedStart::SnapshotAt(at))
        .await
        .unwrap();
    match feed.next().await.unwrap() {
        FeedEvent::Snapshot { rows, .. } => common::table(&[rows])
            .into_iter()
            .map(|r| r.join("|"))
            .collect(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A snapshot's rows by key (the view's first column is its key).
fn keyed(snapshot: &datafusion::arrow::array::RecordBatch) -> Rows {
    let mut rows = Rows::new();
    for i in 0..snapshot.num_rows() {
        let mut key = Vec::new();
        kappa_engine::value::encode_cell(&mut key, snapshot.column(0), i);
        let row = snapshot
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, i).unwrap())
            .collect();
        rows.insert(key, row);
    }
    rows
}

fn render(rows: &Rows) -> Vec<String> {
    let mut out: Vec<String> = rows
        .values()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    ScalarValue::Float64(Some(f)) => format!("{f:.8e}"),
                    v if v.is_null() => "NULL".into(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

/// Reads events until a progress mark at or past `until`; folds changes
/// into `rows` (checking each change's `before` against it) and returns
/// the changes' log times and the progress marks seen.
async fn follow(
    feed: &mut kappa_engine::feed::Feed,
    rows: &mut Rows,
    until: u64,
) -> (Vec<u64>, Vec<u64>) {
    let mut times = Vec::new();
    let mut marks = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("the feed moves")
            .unwrap();
        match event {
            FeedEvent::Change {
                log_time,
                key,
                before,
                after,
            } => {
                assert!(
                    times.last().is_none_or(|t| *t <= log_time.0),
                    "log-time order"
                );
                assert!(
                    marks.last().is_none_or(|m| *m < log_time.0),
                    "after its mark"
                );
                assert_eq!(
                    rows.get(&key),
                    before.as_ref(),
                    "before is the row the feed had"
                );
                match after {
                    Some(a) => rows.insert(key, a),
                    None => rows.remove(&key),
                };
                times.push(log_time.0);
            }
            FeedEvent::Progress { frontier } => {
                marks.push(frontier.0);
                if frontier.0 >= until {
                    return (times, marks);
                }
            }
            FeedEvent::Snapshot { .. } => panic!("one snapshot only"),
            FeedEvent::Replaced { .. } => panic!("nothing replaces the view here"),
        }
    }
}

#[tokio::test]
async fn folding_a_feed_into_its_snapshot_gives_the_view_at_every_mark() {
    let seed: u64 = std::env::var("KAPPA_FEED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("KAPPA_FEED_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(
        dir.path(),
        &[
            "CREATE TOPIC t (a TEXT, x BIGINT) WITH (partitions = 3, key = 'a')",
            "CREATE VIEW v AS SELECT a, SUM(x) AS s, COUNT(*) AS n FROM t GROUP BY a HAVING SUM(x) > 0",
        ],
    )
    .await;
    let mut tokens: Vec<Token> = Vec::new();
    for _ in 0..12 {
        let batch: Vec<String> = (0..rng.random_range(1..20))
            .map(|_| {
                format!(
                    r#"{{"a":"k{}","x":{}}}"#,
                    rng.random_range(0..6),
                    rng.random_range(-5..8)
                )
            })
            .collect();
        let values: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
        tokens.push(engine.append_json("t", &values).await.unwrap().token);
        if rng.random_bool(0.5) {
            engine.catch_up().await.unwrap();
        }
    }
    engine.catch_up().await.unwrap();
    let head = tokens.last().unwrap().log_time().0;
    let start = tokens[2].log_time();
    let mut feed = engine
        .subscribe("v", FeedStart::SnapshotAt(start))
        .await
        .unwrap();
    let FeedEvent::Snapshot {
        at,
        rows: snapshot,
        last: true,
    } = feed.next().await.unwrap()
    else {
        panic!("a feed starts with its snapshot (a small one in one part)");
    };
    assert_eq!(at, start);
    let mut rows = keyed(&snapshot);
    let (times, marks) = follow(&mut feed, &mut rows, head).await;
    assert!(!times.is_empty(), "the stream changes the view");
    let now = match engine.execute("SELECT a, s, n FROM v").await.unwrap() {
        Output::Rows(b) => common::table(&b)
            .into_iter()
            .map(|r| r.join("|"))
            .collect::<Vec<_>>(),
        _ => unreachable!(),
    };
    assert_eq!(render(&rows), now, "snapshot + changes = the view now");
    // At every change's log time, the fold so far equals AS OF that time.
    let mut replay = Rows::new();
    let mut feed = engine
        .subscribe("v", FeedStart::After(start))
        .await
        .unwrap();
    for i in 0..snapshot.num_rows() {
        let mut key = Vec::new();
        kappa_engine::value::encode_cell(&mut key, snapshot.column(0), i);
        replay.insert(
            key,
            snapshot
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, i).unwrap())
                .collect(),
        );
    }
    let (times_again, _) = follow(&mut feed, &mut replay, head).await;
    assert_eq!(
        times, times_again,
        "a resumed feed repeats and skips nothing"
    );
    let middle = times[times.len() / 2];
    let mut feed = engine
        .subscribe("v", FeedStart::SnapshotAt(LogTime(middle)))
        .await
        .unwrap();
    let FeedEvent::Snapshot {
        rows: at_middle, ..
    } = feed.next().await.unwrap()
    else {
        panic!()
    };
    let mut partial = keyed(&at_middle);
    assert_eq!(
        render(&partial),
        snapshot_rows(&engine, "v", LogTime(middle)).await
    );
    follow(&mut feed, &mut partial, head).await;
    assert_eq!(render(&partial), now);
    assert!(marks.last() == Some(&head) || marks.last().is_some_and(|m| *m >= head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_feed_sees_appends_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), &KEYED_SUMS).await;
    engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap();
    let maintenance = engine.maintain();
    let first = engine.log().head().await.unwrap();
    engine
        .wait_for(&["v".to_string()], first, Duration::from_secs(10))
        .await
        .unwrap();
    let mut feed = engine.subscribe("v", FeedStart::Now).await.unwrap();
    let FeedEvent::Snapshot { rows, .. } = feed.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(rows.num_rows(), 1);
    let token = engine
        .append_json("t", &[br#"{"a":"k","x":2}"#, br#"{"a":"j","x":5}"#])
        .await
        .unwrap()
        .token;
    let changes = changes_until(&mut feed, token.log_time()).await;
    let s = |a: &str, x: i64| Some(vec![ScalarValue::from(a), ScalarValue::Int64(Some(x))]);
    assert_eq!(changes, vec![(s("k", 1), s("k", 3)), (None, s("j", 5))]);
    maintenance.stop().await;
}

#[tokio::test]
async fn a_feed_from_outside_history_names_the_earliest_point() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(
        dir.path(),
        &[
            "CREATE TOPIC t (a TEXT, x BIGINT)",
            "CREATE VIEW v WITH (history = '1 ms') AS SELECT a, SUM(x) AS s FROM t GROUP BY a",
        ],
    )
    .await;
    let old = engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap()
        .token;
    std::thread::sleep(Duration::from_millis(5));
    engine
        .append_json("t", &[br#"{"a":"k","x":1}"#])
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    for start in [
        FeedStart::After(old.log_time()),
        FeedStart::SnapshotAt(old.log_time()),
    ] {
        let err = match engine.subscribe("v", start).await {
            Err(e) => e,
            Ok(_) => panic!("{start:?} is outside history"),
        };
        assert!(matches!(err, EngineError::AsOf { .. }), "{err}");
        assert!(err.to_string().contains("keeps history from"), "{err}");
    }
    assert!(matches!(
        engine.subscribe("nope", FeedStart::Now).await.map(|_| ()),
        Err(EngineError::NotFound(_))
    ));
}

/// A feed that keeps up never falls out of history, however short the
/// retention and however long the view sits idle (a feed on an empty
/// view used to die at the first commit, whose window started after it).
#[tokio::test]
async fn a_feed_that_keeps_up_outlives_the_history_window() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(
        dir.path(),
        &[
            "CREATE TOPIC t (a TEXT, x BIGINT)",
            "CREATE VIEW v WITH (history = '1 ms') AS SELECT a, SUM(x) AS s FROM t GROUP BY a",
        ],
    )
    .await;
    let mut feed = engine.subscribe("v", FeedStart::Now).await.unwrap();
    assert!(matches!(
        feed.next().await.unwrap(),
        FeedEvent::Snapshot { .. }
    ));
    for round in 0..3i64 {
        // Idle for longer than the retention, then a change.
        std::thread::sleep(Duration::from_millis(5));
        let body = format!(r#"{{"a":"k","x":{}}}"#, round + 1);
        engine.append_json("t", &[body.as_bytes()]).await.unwrap();
        engine.catch_up().await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("a change within 10 s")
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        match event {
            FeedEvent::Change { after, .. } => {
                let total: i64 = (1..=round + 1).sum();
                assert_eq!(
                    after,
                    Some(vec![
                        ScalarValue::from("k"),
                        ScalarValue::Int64(Some(total))
                    ])
                );
            }
            other => panic!("round {round}: expected a change, got {other:?}"),
        }
        assert!(matches!(
            feed.next().await.unwrap(),
            FeedEvent::Progress { .. }
        ));
    }
}

#[tokio::test]
async fn a_big_snapshot_comes_in_parts_then_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), &KEYED_SUMS).await;
    let keys = 20_000;
    let values: Vec<String> = (0..keys)
        .map(|i| format!(r#"{{"a":"k{i:05}","x":{i}}}"#))
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    engine.append_json("t", &refs).await.unwrap();
    engine.catch_up().await.unwrap();
    let mut feed = engine.subscribe("v", FeedStart::Now).await.unwrap();
    let (mut parts, mut rows, mut sum) = (0, 0, 0i64);
    let mut previous_last = None;
    loop {
        match feed.next().await.unwrap() {
            FeedEvent::Snapshot {
                rows: batch, last, ..
            } => {
                parts += 1;
                rows += batch.num_rows();
                let table = common::table(&[batch]);
                // In key order, across parts too.
                assert!(table.windows(2).all(|w| w[0][0] < w[1][0]));
                if let Some(p) = &previous_last {
                    assert!(&table[0][0] > p, "parts out of key order");
                }
                previous_last = table.last().map(|r| r[0].clone());
                sum += table
                    .iter()
                    .map(|r| r[1].parse::<i64>().unwrap())
                    .sum::<i64>();
                if last {
                    break;
                }
            }
            other => panic!("the snapshot's parts come first, got {other:?}"),
        }
    }
    assert!(parts >= 3, "{parts} parts for {keys} rows");
    assert_eq!(rows, keys);
    assert_eq!(sum, (0..keys as i64).sum::<i64>());
    // Then what changes.
    engine
        .append_json("t", &[br#"{"a":"k00000","x":7}"#])
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let FeedEvent::Change { after, .. } = feed.next().await.unwrap() {
                return after;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        change,
        Some(vec![
            ScalarValue::Utf8(Some("k00000".into())),
            ScalarValue::Int64(Some(7))
        ])
    );
}

/// A feed may start on a view that has not committed anything yet (just
/// created; its first catch-up still to come): it waits for the view's
/// first commit instead of calling the view unknown.
#[tokio::test]
async fn a_feed_on_a_view_not_yet_committed_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), &KEYED_SUMS).await;
    let mut feed = engine.subscribe("v", FeedStart::Now).await.unwrap();
    let FeedEvent::Snapshot { rows, .. } = feed.next().await.unwrap() else {
        panic!("expected a snapshot first")
    };
    assert_eq!(rows.num_rows(), 0);
    let token = engine
        .append_json("t", &[br#"{"a":"k","x":2}"#])
        .await
        .unwrap()
        .token;
    let changes = changes_until(&mut feed, token.log_time()).await;
    let s = |a: &str, x: i64| Some(vec![ScalarValue::from(a), ScalarValue::Int64(Some(x))]);
    assert_eq!(changes, vec![(None, s("k", 2))]);
}
