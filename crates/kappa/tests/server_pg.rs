//! The PostgreSQL listener with real clients: psql (Debian's
//! postgresql-client) and psycopg (PyPI): DDL, INSERT, SELECT, AS OF,
//! SQLSTATEs, psql's `\d`, prepared statements, SUBSCRIBE, the connection
//! limit, and a message with a bogus length.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Served;

fn start() -> (tempfile::TempDir, Served) {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &[]);
    (tmp, s)
}

fn psql_ok(s: &Served, args: &[&str]) -> String {
    let (ok, out, err) = s.psql(args);
    assert!(ok, "psql {args:?} failed: {err}\n{out}");
    out
}

#[test]
fn psql_ddl_queries_catalog_and_errors() {
    let (_tmp, s) = start();
    let out = psql_ok(
        &s,
        &[
            "-c",
            "CREATE TOPIC tx (account TEXT, amount DOUBLE, ts TIMESTAMP) WITH (partitions = 2, key = 'account')",
            "-c",
            "CREATE VIEW bal AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM tx GROUP BY account",
            "-c",
            "INSERT INTO tx (account, amount, ts) VALUES ('a', 5, '2026-01-01 00:00:00'), ('b', 7, NULL), ('a', 1, NULL)",
            "-At",
            "-c",
            "SHOW kappa_token",
        ],
    );
    assert!(
        out.contains("CREATE TOPIC") && out.contains("CREATE VIEW"),
        "{out}"
    );
    assert!(out.contains("INSERT 0 3"), "{out}");
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("kt1-"), "{out}");

    // The view has caught up once a query AS OF the token answers.
    let query =
        format!("SELECT account, balance, n FROM bal ORDER BY account AS OF TOKEN '{token}'");
    let started = Instant::now();
    let rows = loop {
        let (ok, out, err) = s.psql(&["-At", "-F", ",", "-c", &query]);
        if ok {
            break out;
        }
        assert!(
            err.contains("22023") || err.contains("only applied"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rows, "a,6,2\nb,7,1\n");
    let ts = psql_ok(&s, &["-At", "-c", "SELECT ts FROM tx WHERE ts IS NOT NULL"]);
    assert_eq!(ts.trim(), "2026-01-01 00:00:00");

    // psql's catalog commands.
    let dt = psql_ok(&s, &["-c", "\\dt"]);
    assert!(
        dt.contains("tx") && dt.contains("table") && !dt.contains("bal"),
        "{dt}"
    );
    let d = psql_ok(&s, &["-c", "\\d"]);
    assert!(d.contains("bal") && d.contains("materialized view"), "{d}");
    let dtx = psql_ok(&s, &["-c", "\\d tx"]);
    assert!(dtx.contains("Table \"public.tx\""), "{dtx}");
    assert!(
        dtx.contains("amount") && dtx.contains("double precision"),
        "{dtx}"
    );
    assert!(dtx.contains("timestamp without time zone"), "{dtx}");
    let dbal = psql_ok(&s, &["-c", "\\d bal"]);
    assert!(
        dbal.contains("Materialized view \"public.bal\"") && dbal.contains("bigint"),
        "{dbal}"
    );

    // Errors carry SQLSTATEs (and a syntax error its position); a bad
    // INSERT appends nothing.
    for (sql, code, says) in [
        ("SELEC 1", "42601", "LINE 1: SELEC 1"),
        ("SELECT * FROM nope", "42P01", "nope"),
        (
            "INSERT INTO tx (account, amount) VALUES ('c', 'ten')",
            "22P02",
            "amount",
        ),
        ("INSERT INTO nope VALUES (1)", "42P01", "nope"),
        ("CREATE TOPIC tx (a TEXT)", "42P07", "tx"),
        (
            "CREATE VIEW w AS SELECT account FROM tx ORDER BY account LIMIT 1",
            "0A000",
            "LIMIT",
        ),
        ("SUBSCRIBE nope", "42P01", "nope"),
        ("SHOW nothing_here", "42704", "nothing_here"),
    ] {
        let (ok, _out, err) = s.psql(&["-v", "VERBOSITY=verbose", "-c", sql]);
        assert!(!ok, "{sql} should fail");
        assert!(err.contains(code), "{sql}: expected SQLSTATE {code}: {err}");
        assert!(err.contains(says), "{sql}: expected {says:?} in: {err}");
    }
    assert_eq!(s.record_count("tx"), 3);
}

/// The Python interpreter with psycopg (CI makes a venv with it).
fn python() -> String {
    if let Ok(p) = std::env::var("KAPPA_PYTHON") {
        return p;
    }
    let venv = std::path::Path::new(&std::env::var("HOME").unwrap_or_default())
        .join(".cache/kappa-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

fn run_python(s: &Served, script: &str) -> String {
    let (host, port) = s.pg.rsplit_once(':').unwrap();
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .env("PGHOST", host)
        .env("PGPORT", port)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'psycopg'"),
        "psycopg is missing: python3 -m venv ~/.cache/kappa-venv && ~/.cache/kappa-venv/bin/pip install 'psycopg[binary]' (or set KAPPA_PYTHON)"
    );
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PSYCOPG: &str = r#"
import os, sys, threading, time, psycopg
dsn = "host={} port={} user=kappa dbname=kappa sslmode=disable".format(os.environ["PGHOST"], os.environ["PGPORT"])
def say(*a):
    print(*a, flush=True)
with psycopg.connect(dsn, autocommit=True) as c:
    c.execute("CREATE TOPIC tx (account TEXT, amount BIGINT) WITH (key = 'account')")
    c.execute("CREATE VIEW bal AS SELECT account, SUM(amount) AS balance FROM tx GROUP BY account")
    # Prepared statements, with parameters, run several times.
    for i in range(3):
        c.execute("INSERT INTO tx (account, amount) VALUES (%s, %s)", ("a", 10 + i), prepare=True)
    token = c.execute("SHOW kappa_token").fetchone()[0]
    for _ in range(200):
        try:
            rows = c.execute("SELECT balance FROM bal WHERE account = %s AS OF TOKEN '" + token + "'", ("a",), prepare=True).fetchall()
            break
        except psycopg.errors.InvalidParameterValue:
            time.sleep(0.05)
    say("prepared", rows)
    # A prepared statement's description follows the view's definition
    # (descriptions are cached per statement until the catalog changes).
    c.execute("CREATE VIEW shape AS SELECT account, SUM(amount) AS total FROM tx GROUP BY account")
    q = "SELECT * FROM shape WHERE account = %s"
    for _ in range(3):
        cur = c.execute(q, ("a",), prepare=True)
        cur.fetchall()
    before = [d.name for d in cur.description]
    c.execute("DROP VIEW shape")
    c.execute("CREATE VIEW shape AS SELECT account, COUNT(*) AS n, MAX(amount) AS top FROM tx GROUP BY account")
    for _ in range(200):
        cur = c.execute(q, ("a",), prepare=True)
        rows = cur.fetchall()
        if rows:
            break
        time.sleep(0.05)
    say("redescribed", before, [d.name for d in cur.description], rows)
    # Timestamps and dates arrive as such, in text and in binary.
    c.execute("CREATE TOPIC ev (id BIGINT, ts TIMESTAMP)")
    c.execute("INSERT INTO ev VALUES (1, '2026-03-04 05:06:07.5')")
    q = "SELECT ts, CAST(ts AS DATE) AS d, ts + INTERVAL '1 day' AS later FROM ev"
    say("times", c.execute(q).fetchone(), c.cursor(binary=True).execute(q).fetchone())
    # A transaction (drivers' default) works too.
with psycopg.connect(dsn) as c:
    say("in transaction", c.execute("SELECT COUNT(*) FROM tx").fetchone()[0])
    c.commit()
# Errors come with their SQLSTATE.
with psycopg.connect(dsn, autocommit=True) as c:
    try:
        c.execute("SELECT * FROM nope")
    except psycopg.Error as e:
        say("sqlstate", e.sqlstate)
# SUBSCRIBE: the snapshot, then changes as they happen.
def later():
    time.sleep(0.5)
    with psycopg.connect(dsn, autocommit=True) as c2:
        c2.execute("INSERT INTO tx VALUES ('b', 5)")
        c2.execute("INSERT INTO tx VALUES ('a', 1)")
threading.Thread(target=later).start()
conn = psycopg.connect(dsn, autocommit=True)
seen = []
for row in conn.cursor().stream("SUBSCRIBE bal WITH (PROGRESS)"):
    if row[2]:
        continue
    seen.append((row[1], row[3], row[4]))
    if (1, "a", 34) in seen:
        break
say("subscribe", seen)
# COPY (SUBSCRIBE ...) TO STDOUT, from a point: changes only.
conn = psycopg.connect(dsn, autocommit=True)
with conn.cursor().copy("COPY (SUBSCRIBE bal WITH (SNAPSHOT = false) AS OF TOKEN '" + token + "') TO STDOUT") as copy:
    got = []
    for row in copy.rows():
        got.append(row[1:])
        if len(got) == 3:
            break
say("copy", got)
os._exit(0)
"#;

#[test]
fn psycopg_prepared_statements_and_subscribe() {
    let (_tmp, s) = start();
    let out = run_python(&s, PSYCOPG);
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {out}"))
            .to_string()
    };
    assert_eq!(line("prepared"), "prepared [(33,)]");
    assert_eq!(
        line("redescribed"),
        "redescribed ['account', 'total'] ['account', 'n', 'top'] [('a', 3, 12)]"
    );
    assert_eq!(line("in transaction"), "in transaction 3");
    let t = "(datetime.datetime(2026, 3, 4, 5, 6, 7, 500000), datetime.date(2026, 3, 4), datetime.datetime(2026, 3, 5, 5, 6, 7, 500000))";
    assert_eq!(line("times"), format!("times {t} {t}"));
    assert_eq!(line("sqlstate"), "sqlstate 42P01");
    // Snapshot (a=33), then b inserted, then a's change as -1/+1.
    assert_eq!(
        line("subscribe"),
        "subscribe [(1, 'a', 33), (1, 'b', 5), (-1, 'a', 33), (1, 'a', 34)]"
    );
    assert_eq!(
        line("copy"),
        "copy [('1', 'b', '5'), ('-1', 'a', '33'), ('1', 'a', '34')]"
    );
}

#[test]
fn pg_connection_limit_is_53300() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &["--max-connections", "1"]);
    let _held = TcpStream::connect(&s.pg).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (ok, _out, err) = s.psql(&["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("too many clients"), "{err}");
}

/// Bytes a client sends until the server answers `ReadyForQuery`.
fn startup(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    body.extend_from_slice(b"user\0kappa\0database\0kappa\0\0");
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    c.write_all(&msg).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed during startup");
        seen.extend_from_slice(&buf[..n]);
    }
    c
}

fn closed_soon(mut c: TcpStream) {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
    }
}

#[test]
fn bogus_message_lengths_close_the_connection_only() {
    let (_tmp, s) = start();
    // A startup message that claims 2 GiB.
    let mut c = TcpStream::connect(&s.pg).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
    c.write_all(&196608u32.to_be_bytes()).unwrap();
    closed_soon(c);
    // A startup message shorter than its own length field.
    let mut c = TcpStream::connect(&s.pg).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&2u32.to_be_bytes()).unwrap();
    closed_soon(c);
    // After startup: a query message claiming 2 GiB, and one claiming 3 bytes.
    for len in [0x7fff_fff0u32, 3] {
        let mut c = startup(&s.pg);
        c.write_all(b"Q").unwrap();
        c.write_all(&len.to_be_bytes()).unwrap();
        c.write_all(b"SELECT 1\0").unwrap();
        closed_soon(c);
    }
    // The server carries on.
    let out = psql_ok(&s, &["-At", "-c", "SELECT 1 + 1"]);
    assert_eq!(out.trim(), "2");
}

#[test]
fn pg_password_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(&tmp.path().join("data"), &["--pg-password", "s3cret"]);
    let (host, port) = s.pg.rsplit_once(':').unwrap();
    let run = |password: &str| {
        Command::new("psql")
            .args([
                "-h", host, "-p", port, "-U", "kappa", "-d", "kappa", "-X", "-w", "-At",
            ])
            .args(["-c", "SELECT 40 + 2"])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .output()
            .unwrap()
    };
    let wrong = run("nope");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{wrong:?}"
    );
    let right = run("s3cret");
    assert!(right.status.success(), "{right:?}");
    assert_eq!(String::from_utf8_lossy(&right.stdout).trim(), "42");
}

/// A SUBSCRIBE whose client stops reading is ended: the server does not
/// hold its connection (or buffer its rows) forever.
#[test]
fn a_stalled_subscriber_is_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(
        &tmp.path().join("data"),
        &["--subscriber-max-lag-ms", "500", "--send-timeout-secs", "2"],
    );
    s.sql_ok("CREATE TOPIC t (k TEXT, pad TEXT)");
    s.sql_ok("CREATE VIEW big AS SELECT k, MAX(pad) AS pad FROM t GROUP BY k");
    let mut c = startup(&s.pg);
    let query = b"SUBSCRIBE big\0";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((query.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(query);
    c.write_all(&msg).unwrap();
    // Far more rows than socket buffers hold, never read.
    let pad = "x".repeat(2000);
    for batch in 0..20 {
        let lines: String = (0..1000)
            .map(|i| format!("{{\"k\":\"k{batch}-{i}\",\"pad\":\"{pad}\"}}\n"))
            .collect();
        let (st, body) = s.append("t", &lines);
        assert_eq!(st, 200, "{body}");
    }
    let open = || {
        let (_, m) = s.curl("GET", "/metrics", &[], None);
        m.lines()
            .find_map(|l| l.strip_prefix("kappa_pg_connections_open "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap()
    };
    let started = Instant::now();
    while open() > 0 {
        if started.elapsed() > Duration::from_secs(20) {
            let (_, metrics) = s.curl("GET", "/metrics", &[], None);
            let (_, status) = s.curl("GET", "/v1/views/big", &[], None);
            panic!(
                "the stalled subscriber is still connected\nview: {status}\nmetrics:\n{metrics}\nserver stderr:\n{}",
                s.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // What it had been sent ends without the rest: the connection is gone.
    closed_soon(c);
}
