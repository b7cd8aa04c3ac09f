//! The CLI as a client: `kappa sql`, `view`, `status`, `subscribe`,
//! `topic`, `produce` and `consume`, on a data directory without a server
//! (opened embedded), through the server that holds it, and against a
//! server that is not there.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::Served;

fn kappa(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("KAPPA_SERVER")
        .output()
        .unwrap()
}

/// `kappa` with `input` on stdin.
fn kappa_in(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("KAPPA_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = kappa(dir, args);
    assert!(
        out.status.success(),
        "kappa {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sql_view_and_status_embedded_then_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &[
            "sql",
            "CREATE TOPIC tx (account TEXT, amount DOUBLE) WITH (key = 'account')",
        ],
    );
    ok(
        &dir,
        &[
            "sql",
            "CREATE VIEW bal AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
        ],
    );
    let inserted = ok(
        &dir,
        &[
            "sql",
            "INSERT INTO tx VALUES ('a', 5), ('bb', 7.5), ('a', 1)",
        ],
    );
    assert!(inserted.starts_with("INSERT 0 3 (token kt1-"), "{inserted}");
    // Embedded: the views are caught up before the answer.
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "SELECT account, balance, n FROM bal ORDER BY account"
            ]
        ),
        " account | balance | n\n---------+---------+---\n a       | 6.0     | 2\n bb      | 7.5     | 1\n(2 rows)\n"
    );
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT account, n FROM bal ORDER BY account"
            ]
        ),
        "account,n\na,2\nbb,1\n"
    );
    let status = ok(&dir, &["status"]);
    assert!(
        status.contains("no server running") && status.contains("bal"),
        "{status}"
    );
    let described: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["view", "describe", "bal"])).unwrap();
    assert_eq!(described["name"], "bal");
    let bad = kappa(&dir, &["sql", "SELEC 1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Line: 1, Column: 1"));

    // With a server on the directory, the same commands go through it.
    let s = Served::start(&dir, &[]);
    let status = ok(&dir, &["status"]);
    assert!(status.contains(&format!("server {}", s.url)), "{status}");
    ok(&dir, &["sql", "INSERT INTO tx VALUES ('c', 1)"]);
    let listed = ok(&dir, &["view", "list"]);
    assert!(listed.contains("bal"), "{listed}");

    // subscribe (not a terminal: JSON lines): the snapshot, then changes.
    let mut sub = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["subscribe", "bal"])
        .env_remove("KAPPA_SERVER")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "snapshot");
    ok(&dir, &["sql", "INSERT INTO tx VALUES ('zz', 2)"]);
    let mut saw_zz = false;
    for line in lines.by_ref().take(10) {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "change" && v["after"]["account"] == "zz" {
            saw_zz = true;
            break;
        }
    }
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(saw_zz, "the change reached the subscriber");
    drop(s);
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--server", "http://127.0.0.1:9", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kappa server answers at http://127.0.0.1:9")
            && err.contains("kappa serve"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn topic_produce_and_consume_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    // Every command below goes through the server: it holds the directory.
    let created = ok(
        &dir,
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "2",
            "--retention",
            "7d",
        ],
    );
    assert!(
        created.contains("created topic events with 2 partition(s)"),
        "{created}"
    );
    ok(&dir, &["topic", "create", "latest", "--compact"]);
    ok(
        &dir,
        &[
            "sql",
            "CREATE TOPIC tx (account TEXT, amount DOUBLE) WITH (key = 'account')",
        ],
    );
    let listed = ok(&dir, &["topic", "list"]);
    assert!(
        listed.contains("events\t2 partition(s)\tretention 604800000 ms\traw JSON"),
        "{listed}"
    );
    assert!(
        listed.contains("compacted (tombstones kept 86400000 ms)"),
        "{listed}"
    );
    assert!(listed.contains("(account TEXT, amount DOUBLE)"), "{listed}");
    let dup = kappa(&dir, &["topic", "create", "events"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    // produce: keyed by a field; a record that does not fit the schema
    // stops it at its line, with the records before it appended.
    let input: String = (0..25)
        .map(|i| format!("{{\"user\":\"u{}\",\"n\":{i}}}\n", i % 5))
        .collect();
    let out = kappa_in(
        &dir,
        &[
            "produce",
            "events",
            "--key-field",
            "user",
            "--batch-size",
            "10",
        ],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("token kt1-"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appended 25 records to events"));
    let bad = kappa_in(
        &dir,
        &["produce", "tx"],
        "{\"account\":\"a\",\"amount\":1}\n\n{\"account\":\"b\",\"amount\":2}\n{\"account\":\"c\",\"amount\":\"lots\"}\n{\"account\":\"d\",\"amount\":4}\n",
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("line 4:")
            && err.contains("\"amount\"")
            && err.contains("the 2 records before it were appended"),
        "{err}"
    );
    assert_eq!(s.record_count("tx"), 2);
    let missing = kappa_in(&dir, &["produce", "nope"], "{}\n");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));

    // consume: to the end of the topic, every partition in log-time order.
    let all = ok(&dir, &["consume", "events"]);
    let records: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 25);
    let ns: Vec<i64> = records
        .iter()
        .map(|r| r["value"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (0..25).collect::<Vec<_>>(),
        "log-time order is input order"
    );
    assert!(
        records
            .iter()
            .all(|r| r["key"] == format!("u{}", r["value"]["n"].as_i64().unwrap() % 5))
    );
    let from = ok(&dir, &["consume", "events", "--from-offset", "10"]);
    let offsets: Vec<u64> = from
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        !offsets.is_empty() && offsets.iter().all(|o| *o >= 10),
        "{offsets:?}"
    );
    assert_eq!(
        ok(&dir, &["consume", "events", "--limit", "3"])
            .lines()
            .count(),
        3
    );
    let out_of_range = kappa(&dir, &["consume", "latest", "--from-offset", "0"]);
    assert!(
        out_of_range.status.success(),
        "an empty topic from offset 0 is empty"
    );

    // follow: waits for records appended after it started.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["consume", "events", "--follow"])
        .env_remove("KAPPA_SERVER")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.by_ref().take(25).count(), 25, "what was there first");
    let out = kappa_in(&dir, &["produce", "events"], "{\"late\":true}\n");
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(got["value"]["late"], true);

    let described = ok(&dir, &["topic", "describe", "events"]);
    assert!(
        described.contains("partitions 2") && described.contains("raw JSON"),
        "{described}"
    );
    let deleted = ok(&dir, &["topic", "delete", "latest"]);
    assert!(deleted.contains("latest"), "{deleted}");
    assert!(!ok(&dir, &["topic", "list"]).contains("latest"));
    drop(s);

    // Without the server, the same commands open the directory.
    assert_eq!(ok(&dir, &["consume", "events"]).lines().count(), 26);
    assert!(ok(&dir, &["topic", "list"]).contains("(account TEXT, amount DOUBLE)"));
}

#[test]
fn quickstart_runs_embedded_then_again_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = ok(&dir, &["quickstart"]);
    assert!(first.contains("no server running"), "{first}");
    // acc-000: records 0, 100, ..., 900; every third one a debit of 12.5.
    assert!(first.contains(" acc-000 | 70.0    | 10"), "{first}");
    let s = Served::start(&dir, &[]);
    let second = ok(&dir, &["quickstart"]);
    assert!(
        second.contains(&format!("through the server at {}", s.url)),
        "{second}"
    );
    assert!(second.contains("already there"), "{second}");
    assert!(second.contains(" acc-000 | 140.0   | 20"), "{second}");
    assert!(second.contains("psql -h 127.0.0.1"), "{second}");
}

#[test]
fn view_replace_rollback_and_rebuild_through_the_server_and_embedded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &[
            "sql",
            "CREATE TOPIC tx (account TEXT, amount DOUBLE) WITH (key = 'account')",
        ],
    );
    ok(
        &dir,
        &[
            "sql",
            "CREATE VIEW bal AS SELECT account, SUM(amount) AS balance FROM tx GROUP BY account",
        ],
    );
    ok(
        &dir,
        &[
            "sql",
            "INSERT INTO tx VALUES ('a', 5), ('b', 7.5), ('a', 1)",
        ],
    );
    let s = Served::start(&dir, &[]);
    let out = kappa(
        &dir,
        &[
            "view",
            "replace",
            "bal",
            "SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("version 2 is being built") && err.contains("now serves version 2"),
        "{err}"
    );
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT * FROM bal ORDER BY account"
            ]
        ),
        "account,balance,n\na,6.0,2\nb,7.5,1\n"
    );
    let out = kappa(&dir, &["view", "rollback", "bal"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("now serves version 1"));
    let status = ok(&dir, &["status"]);
    assert!(status.contains("bal"), "{status}");
    let bad = kappa(&dir, &["view", "replace", "bal", "SELECT nope FROM tx"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    drop(s);
    // Embedded: this process builds the new version, then it serves.
    let out = kappa(&dir, &["view", "rebuild", "bal"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("rebuilding view bal: version 3") && err.contains("now serves version 3"),
        "{err}"
    );
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT * FROM bal ORDER BY account"
            ]
        ),
        "account,balance\na,6.0\nb,7.5\n"
    );
    let none = kappa(&dir, &["view", "rollback", "nope"]);
    assert!(!none.status.success());
    let verified = ok(&dir, &["view", "verify", "bal"]);
    assert!(
        verified.starts_with("identical: view bal version 3 (2 rows"),
        "{verified}"
    );
}

#[test]
fn snapshot_truncate_and_rebuild_from_the_snapshot_through_the_server_and_embedded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ok(
        &dir,
        &[
            "sql",
            "CREATE TOPIC tx (account TEXT, amount DOUBLE) WITH (key = 'account')",
        ],
    );
    ok(
        &dir,
        &[
            "sql",
            "CREATE VIEW bal AS SELECT account, SUM(amount) AS balance FROM tx GROUP BY account",
        ],
    );
    ok(
        &dir,
        &[
            "sql",
            "INSERT INTO tx VALUES ('a', 5), ('b', 7.5), ('a', 1)",
        ],
    );
    let s = Served::start(&dir, &[]);
    // Refused while the view has no snapshot, naming it.
    let now = "2200-01-01 00:00:00";
    let refused = kappa(&dir, &["topic", "truncate", "tx", "--before", now]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("view bal has no snapshot"), "{err}");
    let wrote = ok(&dir, &["view", "snapshot", "bal"]);
    assert!(
        wrote.contains("wrote snapshot") && wrote.contains("2 rows"),
        "{wrote}"
    );
    let token = wrote.rsplit(' ').next().unwrap().trim().to_string();
    assert!(token.starts_with("kt1-"), "{wrote}");
    let truncated = ok(&dir, &["topic", "truncate", "tx", "--before", &token]);
    assert!(truncated.contains("truncated topic tx"), "{truncated}");
    ok(&dir, &["sql", "INSERT INTO tx VALUES ('b', 0.5)"]);
    // The rebuild starts from the snapshot on its own.
    let out = kappa(&dir, &["view", "rebuild", "bal"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("starts from snapshot"), "{err}");
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT * FROM bal ORDER BY account"
            ]
        ),
        "account,balance\na,6.0\nb,8.0\n"
    );
    let described = ok(&dir, &["view", "describe", "bal"]);
    assert!(described.contains("\"snapshots\""), "{described}");
    drop(s);
    // Embedded: a damaged file is refused; an in-place rebuild from the
    // latest snapshot works without a server.
    let bad = tmp.path().join("bad.ksnap");
    std::fs::write(&bad, b"KSNP\x01\x00\x00\x00garbage").unwrap();
    let out = kappa(
        &dir,
        &[
            "view",
            "rebuild",
            "bal",
            "--from-snapshot",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    let out = kappa(&dir, &["view", "rebuild", "bal", "--in-place"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("downtime") && err.contains("now serves version 3"),
        "{err}"
    );
    assert_eq!(
        ok(
            &dir,
            &[
                "sql",
                "--format",
                "csv",
                "SELECT * FROM bal ORDER BY account"
            ]
        ),
        "account,balance\na,6.0\nb,8.0\n"
    );
}
