//! `kappa bench --quick`, end to end: every step runs on a fresh embedded
//! instance, the answers are checked, and the JSON and HTML reports are
//! complete; bad parameters get a clear error.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn bench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("bench")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("KAPPA_SERVER")
        .output()
        .expect("run kappa bench")
}

#[test]
fn quick_bench_runs_every_step_and_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let out = bench(
        dir.path(),
        &["--quick", "--json", "--report", report.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kappa bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_every_step(&v);
    for s in v["steps"].as_array().unwrap() {
        let figures = s["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{s}");
        for f in figures {
            let value = f["value"].as_f64().unwrap();
            assert!(value.is_finite() && value > 0.0, "{}: {f}", s["step"]);
        }
    }
    // Ratios to the floors, measured in the same run.
    assert!(v["floors"]["disk_write_mb_s"].as_f64().unwrap() > 0.0);
    assert!(v["floors"]["json_fold_records_s"].as_f64().unwrap() > 0.0);
    let ratios = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["figures"].as_array().unwrap())
        .filter(|f| f["ratio"]["value"].as_f64().is_some_and(|r| r > 0.0))
        .count();
    assert!(ratios >= 4, "{ratios} figures with a ratio");
    // The answers were checked after the replay and after every step; the
    // last check saw every record, the live and subscribe steps' too.
    let checks = v["check"].as_array().unwrap();
    assert_eq!(checks.len(), 5, "{checks:?}");
    let records = checks.last().unwrap()["records"].as_u64().unwrap();
    assert!(records > 20_000, "{records}");
    assert_eq!(v["settings"]["records"], 20_000);
    // The rebuild ran with 1 worker and with N.
    let rebuild = &v["steps"][5]["figures"];
    assert!(
        rebuild[0]["name"].as_str().unwrap().starts_with("1 worker"),
        "{rebuild}"
    );
    // The live step tells the append's own latency and the log's longest
    // fsync around it (never less after than before) from the view's.
    let live = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "live")
        .unwrap();
    let figure = |name: &str| {
        live["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["value"].as_f64())
            .unwrap_or_else(|| panic!("no {name} in {live}"))
    };
    assert!(figure("append (durable) p50") > 0.0);
    assert!(figure("append (durable) p99") <= figure("append to visible max"));
    let (before, after) = (
        figure("longest log fsync before the step"),
        figure("longest log fsync after the step"),
    );
    assert!(after >= before, "{before} {after}");
    // The reports on disk: the same JSON, and a page with a chart per
    // timeline and per latency distribution.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["steps"], v["steps"]);
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let charts: usize = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timeline"].as_array().unwrap().len() + s["latency"].as_array().unwrap().len())
        .sum();
    assert!(charts >= 8, "{charts}");
    assert_eq!(html.matches("<svg").count(), charts);
    assert!(html.contains("append to visible"));
    assert!(
        !html.contains("http://") || !html.contains("<script"),
        "nothing fetched"
    );
    // The temporary instance is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("kappa-bench-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn one_step_alone_sets_up_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(
        dir.path(),
        &[
            "--quick",
            "--steps",
            "query",
            "--records",
            "3000",
            "--keys",
            "300",
            "--zipf",
            "1.2",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("point query p50"), "{stdout}");
    assert!(!stdout.contains("\ningest "), "{stdout}");
    assert!(stdout.contains("zipf 1.2"), "{stdout}");
    assert!(stdout.contains("all equal"), "{stdout}");
}

#[test]
fn bad_parameters_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--records", "0"][..], "--records must be at least 1"),
        (
            &["--zipf=-1"][..],
            "Zipf exponent must be a positive number",
        ),
        (&["--keys", "0"][..], "at least one account"),
        (&["--steps", "nope"][..], "invalid value 'nope'"),
        (
            &["--duration", "0"][..],
            "--duration and --rate must be positive",
        ),
    ] {
        let out = bench(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn quick_bench_against_a_running_server_leaves_its_data_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = support::Served::start(&data, &[]);
    // A user's topic and view, which the bench must not touch.
    served.sql_ok("CREATE TOPIC mine (account TEXT, amount DOUBLE)");
    served.sql_ok("CREATE VIEW mine_v AS SELECT account, COUNT(*) AS n FROM mine GROUP BY account");
    let out = bench(
        dir.path(),
        &[
            "--quick",
            "--json",
            "--records",
            "5000",
            "--server",
            &served.url,
        ],
    );
    assert!(
        out.status.success(),
        "{}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        served.stderr()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["target"]
            .as_str()
            .unwrap()
            .starts_with("server at http://127.0.0.1:")
    );
    assert_every_step(&v);
    // One rebuild, with the server's own workers.
    assert!(
        v["steps"][5]["figures"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("server's workers"),
        "{}",
        v["steps"][5]
    );
    assert_eq!(v["check"].as_array().unwrap().len(), 5);
    // Its own topic and view are dropped; the user's are as they were.
    for (path, mine) in [("/v1/views", "mine_v"), ("/v1/topics", "mine")] {
        let (status, names) = served.curl("GET", path, &[], None);
        assert_eq!(status, 200, "{names}");
        assert!(names.contains(mine), "{names}");
        assert!(!names.contains("bench_"), "{names}");
    }
    served.stop();
}

/// The report names every step, in order.
fn assert_every_step(v: &serde_json::Value) {
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["ingest", "replay", "query", "live", "subscribe", "rebuild"]
    );
}
