//! The CLI as a client: `kappa sql`, `view`, `status` and `subscribe`,
//! on a data directory without a server (opened embedded), through the
//! server that holds it, and against a server that is not there.

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
