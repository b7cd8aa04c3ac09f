//! `kappa serve` end to end over HTTP, with curl: the API, a bad-input
//! table (each row: its status, and nothing appended), limits, auth and
//! graceful shutdown.

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Served, curl, json};

const TX: &str = "CREATE TOPIC tx (account TEXT, amount DOUBLE, kind TEXT) WITH (partitions = 2, key = 'account')";

#[test]
fn api_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &[]);
    assert_eq!(s.curl("GET", "/healthz", &[], None).0, 200);
    s.sql_ok(TX);
    s.sql_ok("CREATE VIEW bal AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account");

    // NDJSON, then a JSON array.
    let (st, a) = s.append(
        "tx",
        "{\"account\":\"a\",\"amount\":5,\"kind\":\"dep\"}\n{\"account\":\"b\",\"amount\":7}\r\n\n",
    );
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["count"], 2);
    assert_eq!(a["positions"].as_array().unwrap().len(), 2);
    let (st, b) = s.curl(
        "POST",
        "/v1/topics/tx/records",
        &["Content-Type: application/json"],
        Some(br#"[{"account":"a","amount":1.5},{"account":"c","amount":-2}]"#),
    );
    assert_eq!(st, 200, "{b}");
    let token = json(&b)["token"].as_str().unwrap().to_string();

    // A query with the token sees every append before it.
    let (st, rows) = s.sql_after(
        "SELECT account, balance, n FROM bal ORDER BY account",
        &token,
    );
    assert_eq!(st, 200, "{rows}");
    assert_eq!(
        rows["rows"],
        json!([["a", 6.5, 2], ["b", 7.0, 1], ["c", -2.0, 1]])
    );
    assert_eq!(rows["columns"][2], json!({"name": "n", "type": "bigint"}));

    // CSV and NDJSON by Accept; an unknown format is 406.
    let (st, csv) = s.curl(
        "POST",
        "/v1/sql",
        &["Accept: text/csv"],
        Some(b"SELECT account, n FROM bal ORDER BY account"),
    );
    assert_eq!(st, 200);
    assert_eq!(csv, "account,n\na,2\nb,1\nc,1\n");
    let (st, nd) = s.curl(
        "POST",
        "/v1/sql",
        &["Accept: application/x-ndjson"],
        Some(b"SELECT account, n FROM bal WHERE account = 'b'"),
    );
    assert_eq!(st, 200);
    assert_eq!(json(nd.trim()), json!({"account": "b", "n": 1}));
    let (st, _) = s.curl("POST", "/v1/sql", &["Accept: image/png"], Some(b"SELECT 1"));
    assert_eq!(st, 406);
    // No rows still names the columns.
    let empty = s.sql_ok("SELECT account FROM bal WHERE account = 'zz'");
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["columns"][0]["name"], "account");

    // View status and list.
    let (st, v) = s.curl("GET", "/v1/views/bal", &[], None);
    assert_eq!(st, 200, "{v}");
    let v = json(&v);
    assert_eq!(v["name"], "bal");
    assert_eq!(v["dead_letters"], 0);
    assert!(v["frontier"].is_string(), "{v}");
    // The four records appended above, applied within the last seconds.
    assert_eq!(v["records_applied"], 4, "{v}");
    assert!(v["rate"].as_f64().unwrap() > 0.0, "{v}");
    let (_, list) = s.curl("GET", "/v1/views", &[], None);
    assert_eq!(json(&list)["views"][0]["name"], "bal");
    let (_, topics) = s.curl("GET", "/v1/topics", &[], None);
    assert_eq!(json(&topics)["topics"][0]["name"], "tx");

    // Reads: a range, then a long poll that an append ends.
    let (st, r) = s.curl(
        "GET",
        "/v1/topics/tx/records?partition=0&offset=0&limit=1",
        &[],
        None,
    );
    assert_eq!(st, 200, "{r}");
    let r = json(&r);
    assert_eq!(r["records"].as_array().unwrap().len(), 1);
    assert_eq!(r["next_offset"], 1);
    let p0_end = {
        let (_, d) = s.curl("GET", "/v1/topics/tx", &[], None);
        json(&d)["extents"][0]["end_offset"].as_u64().unwrap()
    };
    let url = format!(
        "{}/v1/topics/tx/records?partition=0&offset={p0_end}&wait_ms=20000",
        s.url
    );
    let started = Instant::now();
    let poll = std::thread::spawn(move || curl(&url, "GET", &[], None));
    std::thread::sleep(Duration::from_millis(300));
    // Keys go to partitions by murmur2; append until one lands in 0.
    let mut n = 0;
    while !poll.is_finished() && n < 50 {
        s.append("tx", &format!("{{\"account\":\"k{n}\",\"amount\":1}}"));
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, polled) = poll.join().unwrap();
    assert_eq!(st, 200, "{polled}");
    assert_eq!(json(&polled)["records"][0]["offset"], p0_end);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the long poll did not end at the append"
    );

    // The OpenAPI document and metrics.
    let (st, doc) = s.curl("GET", "/v1/openapi.json", &[], None);
    assert_eq!(st, 200);
    let doc = json(&doc);
    assert!(doc["paths"]["/v1/sql"].is_object(), "{doc}");
    let (st, metrics) = s.curl("GET", "/metrics", &[], None);
    assert_eq!(st, 200);
    assert!(
        metrics.contains("kappa_appended_records_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kappa_view_lag_seconds{view=\"bal\"}"),
        "{metrics}"
    );
    let fsyncs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kappa_log_fsync_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(fsyncs >= 1, "durable appends were synced: {metrics}");
    let applied: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kappa_view_records_applied_total{view=\"bal\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(applied >= 4, "{metrics}");
    assert_eq!(s.stop().code(), Some(0));
}

/// One row per kind of bad input: the status, the error code, and that
/// nothing was appended.
#[test]
fn bad_input_table() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(
        &tmp.path().join("data"),
        &["--max-body-bytes", "4096", "--max-batch-records", "10"],
    );
    s.sql_ok(TX);
    s.sql_ok("CREATE TOPIC raw");
    let (st, _) = s.append("tx", "{\"account\":\"a\",\"amount\":1}");
    assert_eq!(st, 200);
    let before = s.record_count("tx");

    let big = format!(
        "{{\"account\":\"a\",\"amount\":1,\"kind\":\"{}\"}}",
        "x".repeat(5000)
    );
    let eleven: String = (0..11)
        .map(|i| format!("{{\"account\":\"a{i}\",\"amount\":1}}\n"))
        .collect();
    let records = "/v1/topics/tx/records";
    type Row<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str, &'a str);
    let rows: Vec<Row> = vec![
        (
            "malformed JSON",
            "POST",
            records,
            b"{\"account\":\"a\",\"amount\":1}\n{\"account\":".to_vec(),
            400,
            "schema_mismatch",
            "record 1",
        ),
        (
            "malformed JSON array",
            "POST",
            records,
            b"[{\"account\":\"a\"},".to_vec(),
            400,
            "bad_request",
            "JSON array",
        ),
        (
            "invalid UTF-8",
            "POST",
            records,
            b"{\"account\":\"a\xff\"}".to_vec(),
            400,
            "bad_request",
            "UTF-8",
        ),
        (
            "oversized body",
            "POST",
            records,
            big.into_bytes(),
            413,
            "body_too_large",
            "4096 bytes",
        ),
        (
            "too many records",
            "POST",
            records,
            eleven.into_bytes(),
            413,
            "too_many_records",
            "limit is 10",
        ),
        (
            "empty body",
            "POST",
            records,
            b"\n\n".to_vec(),
            400,
            "bad_request",
            "no records",
        ),
        (
            "unknown topic",
            "POST",
            "/v1/topics/nope/records",
            b"{\"a\":1}".to_vec(),
            404,
            "not_found",
            "nope",
        ),
        (
            "schema mismatch",
            "POST",
            records,
            b"{\"account\":\"a\",\"amount\":1}\n{\"account\":\"b\",\"amount\":\"ten\"}".to_vec(),
            400,
            "schema_mismatch",
            "record 1",
        ),
        (
            "unknown column",
            "POST",
            records,
            b"{\"account\":\"a\",\"amont\":1}".to_vec(),
            400,
            "schema_mismatch",
            "amont",
        ),
        (
            "bad query parameter",
            "POST",
            "/v1/topics/tx/records?partiton=0",
            b"{\"account\":\"a\"}".to_vec(),
            400,
            "bad_request",
            "partiton",
        ),
        (
            "conditional append conflict",
            "POST",
            "/v1/topics/tx/records?partition=0&expect_last_offset=none",
            b"{\"account\":\"a\",\"amount\":1}".to_vec(),
            409,
            "conflict",
            "",
        ),
        (
            "SQL syntax error",
            "POST",
            "/v1/sql",
            b"SELEC * FROM tx".to_vec(),
            400,
            "syntax_error",
            "Line: 1, Column: 1",
        ),
        (
            "SQL syntax error mid-way",
            "POST",
            "/v1/sql",
            b"SELECT account FROM tx WHERE".to_vec(),
            400,
            "syntax_error",
            "Column",
        ),
        (
            "unknown table",
            "POST",
            "/v1/sql",
            b"SELECT * FROM nope".to_vec(),
            400,
            "invalid_sql",
            "nope",
        ),
        (
            "INSERT that does not fit",
            "POST",
            "/v1/sql",
            b"INSERT INTO tx (account, amount) VALUES ('a', 'ten')".to_vec(),
            400,
            "schema_mismatch",
            "amount",
        ),
        (
            "bad SQL request JSON",
            "POST",
            "/v1/sql",
            b"{\"sql\": 5}".to_vec(),
            400,
            "bad_request",
            "expected",
        ),
        (
            "bad token",
            "POST",
            "/v1/sql",
            br#"{"sql":"SELECT 1","token":"nope"}"#.to_vec(),
            400,
            "bad_request",
            "token",
        ),
        (
            "unknown view",
            "GET",
            "/v1/views/nope",
            Vec::new(),
            404,
            "not_found",
            "nope",
        ),
        (
            "unknown endpoint",
            "GET",
            "/v1/nothing",
            Vec::new(),
            404,
            "not_found",
            "openapi",
        ),
        (
            "read past the end of a partition",
            "GET",
            "/v1/topics/tx/records?partition=9",
            Vec::new(),
            400,
            "bad_request",
            "partition",
        ),
    ];
    for (what, method, path, body, status, code, says) in rows {
        let json_body = path == "/v1/sql" && body.first() == Some(&b'{');
        let headers: &[&str] = if json_body {
            &["Content-Type: application/json"]
        } else {
            &[]
        };
        let body = (method == "POST").then_some(body.as_slice());
        let (got, text) = s.curl(method, path, headers, body);
        assert_eq!(got, status, "{what}: {text}");
        let err = json(&text);
        assert_eq!(err["error"]["code"], code, "{what}: {text}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{what}: {message:?} should say {says:?}"
        );
        if code == "conflict" {
            assert!(
                err["error"].get("current").is_some(),
                "{what}: a conflict names the current value: {text}"
            );
        }
        assert_eq!(
            s.record_count("tx"),
            before,
            "{what}: nothing may be appended"
        );
    }
    assert_eq!(s.record_count("raw"), 0);
    // The server is still healthy after all of it.
    assert_eq!(s.curl("GET", "/healthz", &[], None).0, 200);
}

#[test]
fn connection_limit_answers_503() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &["--max-connections", "2"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    // Two idle connections take the two slots.
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (st, body) = s.curl("GET", "/healthz", &[], None);
    assert_eq!(st, 503, "{body}");
    assert_eq!(json(&body)["error"]["code"], "too_many_connections");
    drop(held);
    // Slots free up when the connections close.
    let started = Instant::now();
    loop {
        let (st, _) = s.curl("GET", "/healthz", &[], None);
        if st == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "slots never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn header_timeout_closes_a_silent_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &["--header-timeout-secs", "1"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap(); // never finished
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn auth_and_remote_listening() {
    let tmp = tempfile::tempdir().unwrap();
    // No auth on a non-loopback address: refused, with what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(tmp.path().join("refused"))
        .args(["serve", "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--auth-token") && err.contains("--allow-insecure-remote"),
        "{err}"
    );

    let s = Served::start(&tmp.path().join("data"), &["--auth-token", "s3cret"]);
    let (st, body) = s.curl("GET", "/v1/topics", &[], None);
    assert_eq!(st, 401, "{body}");
    assert_eq!(json(&body)["error"]["code"], "unauthorized");
    let (st, _) = s.curl("GET", "/v1/topics", &["Authorization: Bearer wrong"], None);
    assert_eq!(st, 401);
    let (st, _) = s.curl("GET", "/v1/topics", &["Authorization: Bearer s3cret"], None);
    assert_eq!(st, 200);
    // Health checks need no token.
    assert_eq!(s.curl("GET", "/healthz", &[], None).0, 200);
}

/// SIGTERM stops the server cleanly; what it acknowledged is there after a
/// restart, and the views carry on from their checkpoint.
#[test]
fn sigterm_then_restart_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Served::start(&dir, &[]);
    s.sql_ok(TX);
    s.sql_ok("CREATE VIEW bal AS SELECT account, SUM(amount) AS balance FROM tx GROUP BY account");
    let lines: String = (0..500)
        .map(|i| format!("{{\"account\":\"a{}\",\"amount\":{i}}}\n", i % 7))
        .collect();
    let (st, _) = s.append("tx", &lines);
    assert_eq!(st, 200);
    assert!(dir.join("server.json").exists());

    // While it runs, client commands on the directory go through it, and
    // a second server on it is refused with where the first one is.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["topic", "list"])
        .env_remove("KAPPA_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("tx\t"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--http", "127.0.0.1:0", "--pg", "none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&s.url) && err.contains("--server"), "{err}");

    let status = s.stop();
    assert_eq!(status.code(), Some(0));
    assert!(
        !dir.join("server.json").exists(),
        "the marker is removed at shutdown"
    );

    let s = Served::start(&dir, &[]);
    assert_eq!(s.record_count("tx"), 500);
    let (st, body) = s.curl(
        "POST",
        "/v1/sql",
        &["Content-Type: application/json"],
        Some(br#"{"sql":"SELECT SUM(balance) AS total FROM bal"}"#),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        json(&body)["rows"][0][0],
        json!((0..500).sum::<i32>() as f64)
    );
}

#[test]
fn memory_flags_set_the_budgets_and_bad_sizes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--view-memory", "1MB", "too small"),
        ("--view-memory", "lots", "not a size"),
        ("--store-cache", "512KiB", "too small"),
        ("--store-cache", "2XB", "unknown unit"),
    ] {
        let err = support::serve_refused(
            &tmp.path().join("refused"),
            &[flag.as_ref(), value.as_ref()],
        );
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
        assert!(
            !tmp.path().join("refused").exists(),
            "nothing is created for a refused command line"
        );
    }
    // A small budget works: views spill groups to the store and commit
    // sooner, with the same answers.
    let s = Served::start(
        &tmp.path().join("data"),
        &["--view-memory", "16MiB", "--store-cache", "4MiB"],
    );
    s.sql_ok(TX);
    s.sql_ok("CREATE VIEW n AS SELECT account, COUNT(*) AS n FROM tx GROUP BY account");
    let ndjson: String = (0..20_000)
        .map(|i| format!("{{\"account\":\"acc-{}\",\"amount\":1}}\n", i % 5000))
        .collect();
    let (st, a) = s.append("tx", &ndjson);
    assert_eq!(st, 200, "{a}");
    let token = a["token"].as_str().unwrap().to_string();
    let (st, rows) = s.sql_after("SELECT COUNT(*), MIN(n), MAX(n) FROM n", &token);
    assert_eq!(st, 200, "{rows}");
    assert_eq!(rows["rows"], json!([[5000, 4, 4]]));
}
