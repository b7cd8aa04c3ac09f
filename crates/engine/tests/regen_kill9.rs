//! kill -9 while views are being replaced (during the backfill of the next
//! version, or its swap): after each kill exactly one version is live and
//! equals its definition evaluated as a batch; a version left half-built
//! resumes and, once swapped in, equals its own definition.
//!
//! The test re-runs its own binary as the worker (the ignored test
//! `worker`). KAPPA_REGEN_KILLS sets the number of kills (4 by default).

mod common;

use common::table;
use kappa_engine::{Engine, EngineOptions, Output};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DEFINITIONS: [&str; 2] = [
    "SELECT account, SUM(amount) AS balance FROM tx GROUP BY account",
    "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
];

fn open(dir: &Path) -> Engine {
    // Small batches: a backfill is many steps and commits to land in.
    let options = EngineOptions {
        batch_records: 700,
        ..Default::default()
    };
    common::open_tuned(dir, options, None)
}

async fn append(engine: &Engine, round: u64, n: u64) {
    let values: Vec<String> = (0..n)
        .map(|j| {
            let i = round * n + j;
            format!(r#"{{"account":"a{}","amount":{}}}"#, i % 41, i % 13)
        })
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    engine.append_json("tx", &refs).await.unwrap();
}

/// The worker: run only as a child of the test below.
#[tokio::test]
#[ignore]
async fn worker() {
    let Ok(dir) = std::env::var("KAPPA_WORKER_DIR") else {
        return;
    };
    let engine = open(Path::new(&dir));
    if engine.view("v").await.is_none() {
        engine
            .execute("CREATE TOPIC tx (account TEXT NOT NULL, amount BIGINT) WITH (partitions = 3, key = 'account')")
            .await
            .unwrap();
        engine
            .execute(&format!("CREATE VIEW v AS {}", DEFINITIONS[0]))
            .await
            .unwrap();
        for r in 0..20 {
            append(&engine, r, 2000).await;
        }
    }
    let mut round = 1_000;
    loop {
        let next = DEFINITIONS[(round % 2) as usize];
        engine
            .execute(&format!("CREATE OR REPLACE VIEW v AS {next}"))
            .await
            .unwrap();
        println!("replacing {round}");
        append(&engine, round, 100).await;
        // Builds the next version and swaps it in.
        engine.catch_up().await.unwrap();
        println!("round {round}");
        round += 1;
    }
}

async fn check(engine: &Engine, when: &str) {
    let def = engine.view("v").await.expect("one version is live");
    let frontier = engine.frontier("v").await.unwrap().0;
    let Output::Rows(live) = engine
        .execute(&format!(
            "SELECT * FROM v ORDER BY account AS OF TOKEN 'kt1-{frontier:x}'"
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    let oracle = engine
        .evaluate_batch(&format!("{} ORDER BY account", def.sql), frontier)
        .await
        .unwrap();
    assert_eq!(
        table(&live),
        table(&oracle),
        "{when}: version {}",
        def.version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backfill_and_swap_leaves_one_good_version() {
    let kills: u32 = std::env::var("KAPPA_REGEN_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let mut pending_seen = 0;
    for k in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "worker", "--ignored", "--nocapture"])
            .env("KAPPA_WORKER_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Wait for a replace to start, then kill at a point that varies:
        // early in its backfill, later, or around the swap.
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "worker stopped early"
            );
            if line.starts_with("replacing") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis([5, 60, 150, 400][k as usize % 4]));
        child.kill().unwrap();
        child.wait().unwrap();

        let engine = open(dir.path());
        let status = engine.view_status("v").await.unwrap();
        if status.replacing.is_some() {
            pending_seen += 1;
        }
        println!(
            "after kill {k}: version {} live, {:?} being built",
            status.version,
            status.replacing.map(|r| r.version)
        );
        check(&engine, &format!("after kill {k}, as recovered")).await;
        // The half-built version resumes, swaps in, and is right too.
        engine.catch_up().await.unwrap();
        assert!(engine.view_status("v").await.unwrap().replacing.is_none());
        check(&engine, &format!("after kill {k}, built and swapped")).await;
    }
    println!("{pending_seen} of {kills} kills landed during a backfill");
}
