//! The redb state store: atomic view steps, history, reopen, the lock.

use kappa_store::{
    Change, ChangeBlocks, RedbStore, StateStore, StoreError, StoreOptions, ViewCommit, ViewMeta,
};

fn open(dir: &std::path::Path) -> RedbStore {
    RedbStore::open(&dir.join("state.redb"), &StoreOptions::default()).unwrap()
}

fn change(t: u64, key: &str, before: Option<&str>, after: Option<&str>) -> Change {
    Change {
        log_time: t,
        key: key.as_bytes().to_vec(),
        before: before.map(|b| b.as_bytes().to_vec()),
        after: after.map(|a| a.as_bytes().to_vec()),
    }
}

fn step(
    view: u64,
    frontier: u64,
    rows: &[(&str, Option<&str>)],
    changes: Vec<Change>,
) -> ViewCommit {
    ViewCommit {
        view,
        rows: rows
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect::<Vec<_>>()
            .into(),
        state: vec![(b"acc".to_vec(), Some(frontier.to_le_bytes().to_vec()))].into(),
        changes: ChangeBlocks::from_changes(&changes),
        frontier,
        history_start: 0,
    }
}

fn rows(store: &RedbStore, view: u64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    store
        .read()
        .unwrap()
        .rows(view, &mut |k, v| {
            out.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
            true
        })
        .unwrap();
    out
}

#[test]
fn steps_commit_rows_state_changes_and_frontier_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.write().unwrap();
    w.apply(&mut step(
        1,
        10,
        &[("a", Some("1")), ("b", Some("2"))],
        vec![
            change(5, "a", None, Some("1")),
            change(10, "b", None, Some("2")),
        ],
    ))
    .unwrap();
    w.apply(&mut step(2, 10, &[("a", Some("other view"))], vec![]))
        .unwrap();
    // Not visible before commit.
    assert_eq!(store.read().unwrap().meta(1).unwrap(), None);
    w.commit().unwrap();

    let mut w = store.write().unwrap();
    w.apply(&mut step(
        1,
        20,
        &[("a", None), ("b", Some("3"))],
        vec![
            change(15, "a", Some("1"), None),
            change(20, "b", Some("2"), Some("3")),
        ],
    ))
    .unwrap();
    w.commit().unwrap();
    // An uncommitted (dropped) transaction leaves nothing behind.
    let mut w = store.write().unwrap();
    w.apply(&mut step(
        1,
        30,
        &[("z", Some("9"))],
        vec![change(30, "z", None, Some("9"))],
    ))
    .unwrap();
    drop(w);

    drop(store);
    let store = open(dir.path());
    let r = store.read().unwrap();
    assert_eq!(
        r.meta(1).unwrap(),
        Some(ViewMeta {
            frontier: 20,
            history_start: 0
        })
    );
    assert_eq!(
        r.state(1, b"acc").unwrap(),
        Some(20u64.to_le_bytes().to_vec())
    );
    drop(r);
    assert_eq!(rows(&store, 1), vec![("b".into(), "3".into())]);
    assert_eq!(rows(&store, 2), vec![("a".into(), "other view".into())]);

    let mut after_10 = Vec::new();
    store
        .read()
        .unwrap()
        .changes(1, 10, &mut |c| {
            after_10.push(c.clone());
            true
        })
        .unwrap();
    assert_eq!(
        after_10,
        vec![
            change(15, "a", Some("1"), None),
            change(20, "b", Some("2"), Some("3"))
        ]
    );
    let mut after_5 = 0;
    store
        .read()
        .unwrap()
        .changes(1, 5, &mut |_| {
            after_5 += 1;
            true
        })
        .unwrap();
    assert_eq!(after_5, 3, "changes after 5: 10, 15 and 20");
}

#[test]
fn history_is_trimmed_by_whole_blocks_and_views_drop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for t in 1..=5u64 {
        let mut w = store.write().unwrap();
        w.apply(&mut step(
            7,
            t * 10,
            &[("k", Some(&t.to_string()))],
            vec![change(t * 10, "k", None, Some(&t.to_string()))],
        ))
        .unwrap();
        w.commit().unwrap();
    }
    let mut w = store.write().unwrap();
    w.trim_history(7, 25).unwrap();
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(r.meta(7).unwrap().unwrap().history_start, 20);
    let mut times = Vec::new();
    r.changes(7, 0, &mut |c| {
        times.push(c.log_time);
        true
    })
    .unwrap();
    assert_eq!(times, vec![30, 40, 50]);
    drop(r);

    let mut w = store.write().unwrap();
    w.put_catalog("view:v", b"{}").unwrap();
    w.drop_view(7).unwrap();
    w.commit().unwrap();
    let r = store.read().unwrap();
    assert_eq!(r.meta(7).unwrap(), None);
    assert_eq!(r.state(7, b"acc").unwrap(), None);
    assert_eq!(
        r.catalog().unwrap(),
        vec![("view:v".to_string(), b"{}".to_vec())]
    );
    drop(r);
    assert!(rows(&store, 7).is_empty());
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = RedbStore::open(&dir.path().join("state.redb"), &StoreOptions::default())
        .err()
        .expect("second open fails");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
}

/// A point lookup of history (the earliest change to a key after a time)
/// equals a scan of every change, across many blocks, in commits that
/// each hold several blocks, and after the oldest blocks are trimmed.
#[test]
fn change_for_key_equals_a_scan_of_history() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("KAPPA_STORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("KAPPA_STORE_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let keys = 300;
    let mut current: Vec<Option<String>> = vec![None; keys];
    let mut t = 0;
    let row = "x".repeat(400);
    for frontier in 1..=4u64 {
        let mut changes = Vec::new();
        for _ in 0..3000 {
            t += rng.random_range(1..3);
            let k = rng.random_range(0..keys);
            let after = (!rng.random_bool(0.1)).then(|| format!("{t}{row}"));
            changes.push(change(
                t,
                &format!("k{k}"),
                current[k].as_deref(),
                after.as_deref(),
            ));
            current[k] = after;
        }
        let mut w = store.write().unwrap();
        w.apply(&mut step(1, frontier * 1_000_000, &[], changes))
            .unwrap();
        if frontier == 4 {
            w.trim_history(1, t / 4).unwrap();
        }
        w.commit().unwrap();
    }
    let read = store.read().unwrap();
    let mut all = Vec::new();
    read.changes(1, 0, &mut |c| {
        all.push(c.clone());
        true
    })
    .unwrap();
    assert!(all.len() > 5000, "{} changes kept", all.len());
    for _ in 0..500 {
        let key = format!("k{}", rng.random_range(0..keys + 5)).into_bytes();
        let after = rng.random_range(0..t + 10);
        let expected = all
            .iter()
            .find(|c| c.log_time > after && c.key == key)
            .cloned();
        let got = read.change_for_key(1, &key, after).unwrap();
        assert_eq!(got, expected, "seed {seed}: key {key:?} after {after}");
    }
}

/// The child half of `relaxed_commits_become_durable_in_the_background`:
/// relaxed commits, a pause, then a crash (abort: no destructor runs, so
/// nothing but the background syncer can have made them durable).
#[test]
fn relaxed_commit_child() {
    let Ok(dir) = std::env::var("KAPPA_STORE_CHILD_DIR") else {
        return;
    };
    let within_ms: u64 = std::env::var("KAPPA_STORE_CHILD_WITHIN_MS")
        .unwrap()
        .parse()
        .unwrap();
    let store = open(std::path::Path::new(&dir));
    for frontier in 1..=3u64 {
        let mut w = store.write().unwrap();
        w.apply(&mut step(7, frontier, &[("k", Some("v"))], vec![]))
            .unwrap();
        w.commit_soon(std::time::Duration::from_millis(within_ms))
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::process::abort();
}

/// A live step's relaxed commit is visible at once and reaches the disk
/// within its interval, without a later commit to carry it: after a
/// crash 300 ms on, a 20 ms interval kept all three steps, and an interval
/// of an hour (so no sync yet) lost them.
#[test]
fn relaxed_commits_become_durable_in_the_background() {
    for (within_ms, kept) in [(20u64, true), (3_600_000, false)] {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "relaxed_commit_child", "--nocapture"])
            .env("KAPPA_STORE_CHILD_DIR", dir.path())
            .env("KAPPA_STORE_CHILD_WITHIN_MS", within_ms.to_string())
            .status()
            .unwrap();
        assert!(!status.success(), "the child crashes");
        let store = open(dir.path());
        let frontier = store.read().unwrap().meta(7).unwrap().map(|m| m.frontier);
        if kept {
            assert_eq!(frontier, Some(3), "within {within_ms} ms");
            assert_eq!(rows(&store, 7), vec![("k".into(), "v".into())]);
        } else {
            assert_eq!(frontier, None, "within {within_ms} ms");
        }
    }
}

/// Every change `read` sees after `after`, as log times and keys.
fn history(store: &RedbStore, view: u64, after: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    store
        .read()
        .unwrap()
        .changes(view, after, &mut |c| {
            out.push((c.log_time, String::from_utf8(c.key.clone()).unwrap()));
            true
        })
        .unwrap();
    out
}

#[test]
fn staged_changes_are_seen_only_with_the_frontier_that_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.write().unwrap();
    w.apply(&mut step(
        3,
        10,
        &[("a", Some("1"))],
        vec![change(10, "a", None, Some("1"))],
    ))
    .unwrap();
    w.commit().unwrap();

    // Two blocks staged past the frontier, in transactions of their own.
    let staged = |changes: Vec<Change>| ChangeBlocks::from_changes(&changes).into_blocks();
    for (t, v) in [(20u64, "2"), (30, "3")] {
        let mut w = store.write().unwrap();
        w.stage_changes(3, &staged(vec![change(t, "a", Some("1"), Some(v))]))
            .unwrap();
        w.commit().unwrap();
    }
    // Not there for reads: not in the feed, not for AS OF a key.
    assert_eq!(history(&store, 3, 0), vec![(10, "a".to_string())]);
    let r = store.read().unwrap();
    assert_eq!(r.change_for_key(3, b"a", 10).unwrap(), None);
    drop(r);

    // A view without a frontier gets nothing staged.
    let mut w = store.write().unwrap();
    w.stage_changes(4, &staged(vec![change(5, "b", None, Some("1"))]))
        .unwrap();
    w.commit().unwrap();
    assert!(history(&store, 4, 0).is_empty());
    let mut w = store.write().unwrap();
    assert!(
        !w.discard_staged(4).unwrap(),
        "nothing was staged for view 4"
    );
    drop(w);

    // They survive a reopen, still unseen, and a discard removes them.
    drop(store);
    let store = open(dir.path());
    assert_eq!(history(&store, 3, 0).len(), 1);
    let mut w = store.write().unwrap();
    assert!(w.discard_staged(3).unwrap());
    w.commit().unwrap();
    let mut w = store.write().unwrap();
    assert!(
        !w.discard_staged(3).unwrap(),
        "the discard removed them all"
    );
    drop(w);

    // Staged again, then reached by a commit: seen with it, in order,
    // with the commit's own block after them.
    let mut w = store.write().unwrap();
    w.stage_changes(3, &staged(vec![change(20, "a", Some("1"), Some("2"))]))
        .unwrap();
    w.commit().unwrap();
    let mut w = store.write().unwrap();
    w.apply(&mut step(
        3,
        40,
        &[("a", Some("4"))],
        vec![change(40, "a", Some("2"), Some("4"))],
    ))
    .unwrap();
    w.commit().unwrap();
    assert_eq!(
        history(&store, 3, 0),
        vec![
            (10, "a".to_string()),
            (20, "a".to_string()),
            (40, "a".to_string())
        ]
    );
    let r = store.read().unwrap();
    let c = r.change_for_key(3, b"a", 10).unwrap().unwrap();
    assert_eq!((c.log_time, c.before.as_deref()), (20, Some(&b"1"[..])));
    drop(r);
    let mut w = store.write().unwrap();
    assert!(
        !w.discard_staged(3).unwrap(),
        "reached blocks are not staged"
    );
}

#[test]
fn rows_put_by_reference_and_state_upsert_and_delete_like_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.write().unwrap();
    w.apply(&mut step(
        3,
        10,
        &[("a", Some("1")), ("b", Some("2"))],
        vec![],
    ))
    .unwrap();
    w.commit().unwrap();
    // Out of key order, with a delete, an upsert and a new row; another
    // view's row of the same key is left alone. Small and big steps: the
    // big one's rows and state are written on two threads.
    for n in [3u32, 30_000] {
        let mut w = store.write().unwrap();
        let puts: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"c", Some(b"3")), (b"a", None), (b"b", Some(b"20"))];
        let mut state = kappa_store::Puts::default();
        for i in (0..n).rev() {
            state.push(&i.to_be_bytes(), Some(&(i + n).to_le_bytes()));
        }
        state.push(b"acc", None);
        w.put_rows_and_state(3, &mut puts.into_iter(), &mut state)
            .unwrap();
        let mut none = kappa_store::Puts::default();
        w.put_rows_and_state(
            4,
            &mut std::iter::once((&b"a"[..], Some(&b"x"[..]))),
            &mut none,
        )
        .unwrap();
        w.apply(&mut ViewCommit {
            view: 3,
            frontier: 10 + n as u64,
            ..ViewCommit::default()
        })
        .unwrap();
        w.commit().unwrap();
        assert_eq!(
            rows(&store, 3),
            [("b".into(), "20".into()), ("c".into(), "3".into())]
        );
        assert_eq!(rows(&store, 4), [("a".into(), "x".into())]);
        let r = store.read().unwrap();
        assert_eq!(r.meta(3).unwrap().unwrap().frontier, 10 + n as u64);
        assert_eq!(r.state(3, b"acc").unwrap(), None, "deleted");
        for i in [0, n / 2, n - 1] {
            assert_eq!(
                r.state(3, &i.to_be_bytes()).unwrap(),
                Some((i + n).to_le_bytes().to_vec())
            );
        }
        let mut count = 0;
        r.state_prefix(3, &[], &mut |_, _| {
            count += 1;
            true
        })
        .unwrap();
        assert_eq!(count, n as usize);
    }
}

/// Entries per step in the kill test: enough for the two-thread write.
const KILL_ENTRIES: u32 = 12_000;

/// The child half of `kill_9_during_big_steps_keeps_each_step_whole`:
/// steps whose rows and state (every entry valued the step's number) are
/// written on two threads, committed one after another until it is
/// killed. It prints each step it has begun.
#[test]
fn big_steps_child() {
    let Ok(dir) = std::env::var("KAPPA_STORE_KILL_DIR") else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    let start = store
        .read()
        .unwrap()
        .meta(9)
        .unwrap()
        .map_or(0, |m| m.frontier);
    for step in start + 1.. {
        println!("step {step}");
        let value = step.to_le_bytes();
        let keys: Vec<[u8; 4]> = (0..KILL_ENTRIES).map(u32::to_be_bytes).collect();
        let mut state = kappa_store::Puts::default();
        for k in keys.iter().rev() {
            state.push(k, Some(&value));
        }
        let mut w = store.write().unwrap();
        w.put_rows_and_state(
            9,
            &mut keys.iter().map(|k| (&k[..], Some(&value[..]))),
            &mut state,
        )
        .unwrap();
        w.apply(&mut ViewCommit {
            view: 9,
            frontier: step,
            ..ViewCommit::default()
        })
        .unwrap();
        w.commit().unwrap();
    }
}

/// kill -9 at random points of big steps (rows and state written on two
/// threads of one transaction): after each, the store holds the last
/// committed step whole, every row and state entry of it and nothing of
/// the step cut off. KAPPA_STORE_KILLS sets the number of kills (3).
#[test]
fn kill_9_during_big_steps_keeps_each_step_whole() {
    use std::io::{BufRead, BufReader};
    let kills: u32 = std::env::var("KAPPA_STORE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed = std::env::var("KAPPA_STORE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("KAPPA_STORE_KILL_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for kill in 0..kills {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "big_steps_child", "--nocapture"])
            .env("KAPPA_STORE_KILL_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for a few steps to begin, then kill at a pseudo-random
        // moment within the next one.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut begun = 0;
        while begun < 3 {
            let line = lines.next().expect("the child runs").unwrap();
            if line.starts_with("step ") {
                begun += 1;
            }
        }
        let wait = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(u64::from(kill))
            >> 33)
            % 40;
        std::thread::sleep(std::time::Duration::from_millis(wait));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = open(dir.path());
        let r = store.read().unwrap();
        let frontier = r.meta(9).unwrap().expect("a step committed").frontier;
        assert!(frontier >= last, "kill {kill}: frontier went back");
        last = frontier;
        let value = frontier.to_le_bytes().to_vec();
        let mut states = 0;
        r.state_prefix(9, &[], &mut |_, v| {
            assert_eq!(v, value, "kill {kill}: a state entry of another step");
            states += 1;
            true
        })
        .unwrap();
        let mut rows = 0;
        r.rows(9, &mut |_, v| {
            assert_eq!(v, value, "kill {kill}: a row of another step");
            rows += 1;
            true
        })
        .unwrap();
        assert_eq!((states, rows), (KILL_ENTRIES, KILL_ENTRIES), "kill {kill}");
    }
}

#[test]
fn a_store_with_one_entry_per_key_is_moved_into_blocks_when_opened() {
    // The layout before packed blocks: `rows` and `state`, keyed by the
    // view id (big-endian) and the key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        for (name, n) in [("rows", 70_000u32), ("state", 3u32)] {
            let mut t = txn
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))
                .unwrap();
            for view in [1u64, 2] {
                for i in 0..n {
                    let mut k = view.to_be_bytes().to_vec();
                    k.extend_from_slice(format!("k{i:06}").as_bytes());
                    t.insert(k.as_slice(), format!("{name}{view}-{i}").as_bytes())
                        .unwrap();
                }
            }
        }
        drop(
            txn.open_table(redb::TableDefinition::<u64, (u64, u64)>::new("meta"))
                .unwrap(),
        );
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    for view in [1u64, 2] {
        let got = rows(&store, view);
        assert_eq!(got.len(), 70_000);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (k, v))| *k == format!("k{i:06}") && *v == format!("rows{view}-{i}"))
        );
        let r = store.read().unwrap();
        assert_eq!(
            r.row(view, b"k012345").unwrap().unwrap(),
            format!("rows{view}-12345").as_bytes()
        );
        assert_eq!(
            r.state(view, b"k000002").unwrap().unwrap(),
            format!("state{view}-2").as_bytes()
        );
        assert_eq!(r.state(view, b"k000003").unwrap(), None);
    }
    drop(store);
    // The old tables are gone: a second open has nothing to move.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|h| redb::TableHandle::name(&h).to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "rows" || n == "state"),
        "{names:?}"
    );
}
