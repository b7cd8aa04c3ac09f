//! kill -9 while views are being maintained: after each kill the views
//! resume from their committed frontier and equal their batch evaluation,
//! so no record was counted twice or missed.
//!
//! The test re-runs its own binary as the worker (the ignored test
//! `worker`), which appends records and catches views up in a loop until it
//! is killed. KAPPA_VIEW_KILLS sets the number of kills (5 by default).

mod common;

use common::{open, table};
use kappa_engine::Output;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const VIEWS: &[(&str, &str)] = &[
    (
        "balances",
        "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
    ),
    (
        "spread",
        "SELECT n, COUNT(*) AS accounts FROM balances GROUP BY n",
    ),
];

/// The worker: run only as a child of the test below.
#[tokio::test]
#[ignore]
async fn worker() {
    let Ok(dir) = std::env::var("KAPPA_WORKER_DIR") else {
        return;
    };
    // History staged ahead of the commits every few changes, so that
    // kills land between stagings and the commits that reach them.
    let engine = common::open_tuned(
        Path::new(&dir),
        kappa_engine::EngineOptions {
            stage_bytes: 64,
            workers: 2,
            ..Default::default()
        },
        None,
    );
    if engine.view("balances").await.is_none() {
        engine
            .execute("CREATE TOPIC tx (account TEXT NOT NULL, amount BIGINT) WITH (partitions = 3, key = 'account')")
            .await
            .unwrap();
        for (name, sql) in VIEWS {
            engine
                .execute(&format!("CREATE VIEW {name} AS {sql}"))
                .await
                .unwrap();
        }
    }
    let mut i = 0u64;
    loop {
        let values: Vec<String> = (0..50)
            .map(|j| {
                let n = i * 50 + j;
                format!(r#"{{"account":"a{}","amount":{}}}"#, n % 37, n % 11)
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        engine.append_json("tx", &refs).await.unwrap();
        engine.catch_up().await.unwrap();
        println!("round {i}");
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_maintaining_views_loses_and_repeats_nothing() {
    let kills: u32 = std::env::var("KAPPA_VIEW_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    // Each view's frontier after the first kill: later, AS OF it checks
    // the history written since (staged ahead of commits, across kills).
    let mut earlier: Vec<u64> = Vec::new();
    for k in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "worker", "--ignored", "--nocapture"])
            .env("KAPPA_WORKER_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Let it get some rounds in, then kill it at a point that varies.
        let rounds = 2 + (k as usize * 3) % 7;
        let mut seen = 0;
        let mut line = String::new();
        while seen < rounds {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "worker stopped early"
            );
            if line.starts_with("round") {
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(3 * k as u64));
        child.kill().unwrap();
        child.wait().unwrap();

        let engine = open(dir.path());
        // As recovered (the last whole commit), then caught up again.
        for caught_up in [false, true] {
            if caught_up {
                engine.catch_up().await.unwrap();
            }
            for (v, (name, sql)) in VIEWS.iter().enumerate() {
                let frontier = engine.frontier(name).await.unwrap().0;
                if earlier.len() == v {
                    earlier.push(frontier);
                }
                for at in [frontier, earlier[v]] {
                    let Output::Rows(live) = engine
                        .execute(&format!("SELECT * FROM {name} AS OF TOKEN 'kt1-{at:x}'"))
                        .await
                        .unwrap()
                    else {
                        panic!()
                    };
                    let oracle = engine.evaluate_batch(sql, at).await.unwrap();
                    println!(
                        "after kill {k} (caught up: {caught_up}): {name} at {at}, {} rows",
                        table(&oracle).len()
                    );
                    assert_eq!(
                        table(&live),
                        table(&oracle),
                        "after kill {k} (caught up: {caught_up}): view {name} AS OF {at}"
                    );
                }
            }
        }
    }
}
