//! Starting the real `kappa serve` on a free loopback port, and talking to
//! it with real clients (curl).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Served {
    pub child: Child,
    /// Held open: the server stops when it closes (so a crashed test
    /// never leaves a server behind).
    stdin: Option<ChildStdin>,
    pub url: String,
    /// `host:port` of the PostgreSQL listener.
    pub pg: String,
    pub dir: PathBuf,
    stderr: PathBuf,
}

impl Served {
    /// `kappa serve` on `dir` with extra flags; waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Served {
        let stderr = dir.with_extension("stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0"])
            .arg("--exit-on-stdin-close")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start kappa serve");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut addrs = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or("")
            .split(' ');
        let (url, pg) = (addrs.next(), addrs.next());
        let pg = pg
            .and_then(|p| p.strip_prefix("postgres://"))
            .unwrap_or_default()
            .to_string();
        let url = url
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .unwrap_or_else(|| {
                panic!(
                    "kappa serve did not start: {line:?}\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_string();
        Served {
            child,
            stdin,
            url,
            pg,
            dir: dir.to_path_buf(),
            stderr,
        }
    }

    /// psql with `args` against the PostgreSQL listener: (success, stdout, stderr).
    pub fn psql(&self, args: &[&str]) -> (bool, String, String) {
        let (host, port) = self.pg.rsplit_once(':').expect("a PostgreSQL listener");
        let out = Command::new("psql")
            .args([
                "-h",
                host,
                "-p",
                port,
                "-U",
                "kappa",
                "-d",
                "kappa",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable")
            .output()
            .expect("run psql (install it: apt-get install postgresql-client)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request with curl: (status, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&[u8]>,
    ) -> (u16, String) {
        curl(&format!("{}{path}", self.url), method, headers, body)
    }

    pub fn sql(&self, sql: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.curl("POST", "/v1/sql", &[], Some(sql.as_bytes()));
        (status, json(&body))
    }

    /// A query that waits for the views to pass `token` (as JSON).
    pub fn sql_after(&self, sql: &str, token: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"sql": sql, "token": token}).to_string();
        let (status, body) = self.curl(
            "POST",
            "/v1/sql",
            &["Content-Type: application/json"],
            Some(body.as_bytes()),
        );
        (status, json(&body))
    }

    /// A SQL statement that must succeed.
    pub fn sql_ok(&self, sql: &str) -> serde_json::Value {
        let (status, body) = self.sql(sql);
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    pub fn append(&self, topic: &str, ndjson: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.curl(
            "POST",
            &format!("/v1/topics/{topic}/records"),
            &[],
            Some(ndjson.as_bytes()),
        );
        (status, json(&body))
    }

    /// Records in a topic, over every partition.
    pub fn record_count(&self, topic: &str) -> u64 {
        let (status, body) = self.curl("GET", &format!("/v1/topics/{topic}"), &[], None);
        assert_eq!(status, 200, "{body}");
        json(&body)["extents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["end_offset"].as_u64().unwrap() - e["start_offset"].as_u64().unwrap())
            .sum()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kappa serve` on `data_dir` with `args` (after its listen flags),
/// which must refuse to start: its stderr.
pub fn serve_refused(data_dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--http", "127.0.0.1:0", "--pg", "none"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {args:?}: {err}");
    err
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

pub fn curl(url: &str, method: &str, headers: &[&str], body: Option<&[u8]>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("run curl (install it: apt-get install curl)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(b) = body {
        stdin.write_all(b).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl {method} {url} gave no status: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, body.to_string())
}
