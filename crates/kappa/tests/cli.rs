//! The `kappa` binary on a data directory, end to end: topics, produce,
//! consume, the lock, `log check`, and bad input (a clear error, nothing
//! lost).

use kappa_log::partition_for_key;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kappa(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run kappa")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = kappa(dir, args);
    assert!(
        out.status.success(),
        "kappa {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = kappa(dir, args);
    assert!(!out.status.success(), "kappa {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn produce(dir: &Path, topic: &str, lines: &[String], extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(dir)
        .args(["produce", topic])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn consume(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["consume"];
    all.extend_from_slice(args);
    ok(dir, &all)
        .lines()
        .map(|l| serde_json::from_str(l).expect("consume prints JSON lines"))
        .collect()
}

fn tx(i: usize) -> String {
    format!(
        r#"{{"account":"acc-{:03}","amount":{i},"kind":"debit"}}"#,
        i % 7
    )
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(ok(d, &["topic", "list"]).contains("no topics"));
    ok(d, &["topic", "create", "orders", "--partitions", "3"]);
    ok(
        d,
        &[
            "topic",
            "create",
            "recent",
            "--retention",
            "7d",
            "--partitions",
            "2",
        ],
    );
    ok(d, &["topic", "create", "accounts", "--compact"]);
    let err = fails(d, &["topic", "create", "orders"]);
    assert!(err.contains("orders") && err.contains("exists"), "{err}");
    let err = fails(d, &["topic", "create", "bad", "--partitions", "0"]);
    assert!(err.contains("partitions"), "{err}");
    let err = fails(d, &["topic", "create", "x", "--retention", "seven days"]);
    assert!(err.contains("seven days"), "{err}");
    let err = fails(d, &["topic", "create", "bad/name"]);
    assert!(err.contains("bad/name") || err.contains("name"), "{err}");

    let list = ok(d, &["topic", "list"]);
    for name in ["orders", "recent", "accounts"] {
        assert!(list.contains(name), "{list}");
    }
    let described = ok(d, &["topic", "describe", "orders"]);
    assert!(described.contains("partitions 3"), "{described}");
    assert_eq!(
        described
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        3,
        "one line per partition: {described}"
    );
    assert!(ok(d, &["topic", "describe", "accounts"]).contains("compact"));

    ok(d, &["topic", "delete", "orders"]);
    assert!(!ok(d, &["topic", "list"]).contains("orders"));
    let err = fails(d, &["topic", "describe", "orders"]);
    assert!(err.contains("orders"), "{err}");
    let err = fails(d, &["topic", "delete", "orders"]);
    assert!(err.contains("orders"), "{err}");
}

#[test]
fn produce_then_consume_by_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "tx", "--partitions", "4"]);
    let lines: Vec<String> = (0..40).map(tx).collect();
    let out = produce(
        d,
        "tx",
        &lines,
        &["--key-field", "account", "--batch-size", "7"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.trim().starts_with("token kt1-"), "{stdout}");

    let records = consume(d, &["tx"]);
    assert_eq!(records.len(), 40);
    let mut next = [0u64; 4];
    let mut last_time = String::new();
    for (i, r) in records.iter().enumerate() {
        // One producer, so log-time order is input order.
        assert_eq!(r["value"]["amount"], i, "record {i}");
        let key = r["key"].as_str().unwrap();
        assert_eq!(r["value"]["account"], key);
        let p = r["partition"].as_u64().unwrap();
        assert_eq!(p, partition_for_key(key.as_bytes(), 4) as u64, "murmur2");
        assert_eq!(r["offset"].as_u64().unwrap(), next[p as usize], "dense");
        next[p as usize] += 1;
        let t = r["log_time"].as_str().unwrap().to_string();
        assert!(t > last_time, "log time increases: {t} after {last_time}");
        last_time = t;
    }

    // --from-offset applies to every partition.
    let from2 = consume(d, &["tx", "--from-offset", "2"]);
    let expected = next.iter().map(|n| n.saturating_sub(2)).sum::<u64>();
    assert_eq!(from2.len() as u64, expected);
    assert!(from2.iter().all(|r| r["offset"].as_u64().unwrap() >= 2));

    // --from-time starts at a log time (inclusive).
    let t = records[25]["log_time"].as_str().unwrap();
    let from_t = consume(d, &["tx", "--from-time", t]);
    assert_eq!(from_t.len(), 15, "from {t}");
    assert_eq!(from_t[0]["value"]["amount"], 25);

    let limited = consume(d, &["tx", "--limit", "5"]);
    assert_eq!(limited.len(), 5);

    // Past every partition's end: nothing yet (with --follow it would wait).
    assert!(consume(d, &["tx", "--from-offset", "1000000"]).is_empty());
    let err = fails(d, &["consume", "nope"]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_bad_line_stops_produce_with_its_number_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "tx"]);
    let mut lines: Vec<String> = (0..3).map(tx).collect();
    lines.push("{not json".into());
    lines.extend((3..6).map(tx));
    let out = produce(d, "tx", &lines, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("3 records before it were appended"), "{err}");
    assert_eq!(consume(d, &["tx"]).len(), 3, "nothing after the bad line");

    // A missing key field is named, and again nothing from it on.
    let lines = vec![tx(10), r#"{"amount":1}"#.to_string(), tx(11)];
    let out = produce(d, "tx", &lines, &["--key-field", "account"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 2") && err.contains("\"account\""),
        "{err}"
    );
    assert_eq!(consume(d, &["tx"]).len(), 4);

    let out = produce(d, "missing", &[tx(1)], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("missing"), "{err}");
    let err = fails(d, &["produce", "tx", "/no/such/file.ndjson"]);
    assert!(err.contains("/no/such/file.ndjson"), "{err}");
}

#[test]
fn follow_waits_for_more_and_a_second_process_gets_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "tx"]);
    let out = produce(d, "tx", &(0..3).map(tx).collect::<Vec<_>>(), &[]);
    assert!(out.status.success());
    let mut follower = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(d)
        .args(["consume", "tx", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(follower.stdout.take().unwrap());
    for i in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["value"]["amount"], i);
    }
    // Caught up, it keeps running (waiting for commits) and holds the lock.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        assert!(follower.try_wait().unwrap().is_none(), "--follow exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = fails(d, &["topic", "list"]);
    assert!(err.contains("in use by another process"), "{err}");
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(
        ok(d, &["topic", "list"]).contains("tx"),
        "the lock is released"
    );
}

#[test]
fn log_check_verifies_and_names_a_damaged_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topic", "create", "tx"]);
    let out = produce(
        d,
        "tx",
        &(0..20).map(tx).collect::<Vec<_>>(),
        &["--batch-size", "5"],
    );
    assert!(out.status.success());
    let report = ok(d, &["log", "check"]);
    assert!(report.contains("ok: every checksum verified"), "{report}");
    assert!(report.contains("20 record(s)"), "{report}");

    // Flip a byte inside the first frame's records: whole frames follow,
    // so this is corruption, not a torn tail.
    let segment = std::fs::read_dir(d.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "kseg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let out = kappa(d, &["log", "check"]);
    assert!(!out.status.success(), "a damaged log fails the check");
    let report = String::from_utf8(out.stdout).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        report.contains("CORRUPT") && report.contains(name) && report.contains("at byte"),
        "{report}"
    );
    // Reading it is an error naming the file, never wrong data.
    let err = fails(d, &["consume", "tx"]);
    assert!(err.contains(name), "{err}");
}
