//! kill -9 against a real `kappa produce` process, again and again: every
//! acknowledged record survives, nothing partial appears, offsets stay dense.
//! KAPPA_KILL_ITERATIONS sets the number of kills (20 by default; the long
//! form is 500). The seed is printed; KAPPA_KILL_SEED replays one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kappa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kappa"))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn line(iter: u32, seq: u32) -> String {
    let pad = "x".repeat((seq % 50) as usize);
    let body = format!("{iter}-{seq}-{pad}");
    format!(
        r#"{{"iter":{iter},"seq":{seq},"pad":"{pad}","hash":"{:016x}"}}"#,
        fnv(&body)
    )
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_during_produce_loses_nothing_acknowledged() {
    let iterations: u32 = std::env::var("KAPPA_KILL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("KAPPA_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!(
        "kill -9 loop: {iterations} iterations, seed {seed} (replay with KAPPA_KILL_SEED={seed})"
    );
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let status = kappa()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let records_per_run = 5_000u32;
    let mut acked: BTreeMap<u32, u64> = BTreeMap::new();
    for iter in 0..iterations {
        let input = tmp.path().join(format!("in-{iter}.ndjson"));
        let mut f = std::fs::File::create(&input).unwrap();
        for seq in 0..records_per_run {
            writeln!(f, "{}", line(iter, seq)).unwrap();
        }
        drop(f);
        let batch = 1 + rng.next(400);
        let mut child = kappa()
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "produce",
                "t",
                input.to_str().unwrap(),
            ])
            .args([
                "--key-field",
                "seq",
                "--print-acks",
                "--batch-size",
                &batch.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.next(200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut max_acked = 0u64;
        for l in BufReader::new(child.stdout.take().unwrap()).lines() {
            let l = l.unwrap();
            if let Some(rest) = l.strip_prefix("{\"acked\":") {
                max_acked = max_acked.max(rest.split(',').next().unwrap().parse().unwrap());
            }
        }
        acked.insert(iter, max_acked);
        verify(&data, &acked, seed, iter);
    }
    assert!(
        acked.values().any(|a| *a > 0),
        "some appends were acknowledged before the kills"
    );
    let out = kappa()
        .args(["--data-dir", data.to_str().unwrap(), "log", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Reads everything back through a fresh process (which recovers the log).
fn verify(data: &Path, acked: &BTreeMap<u32, u64>, seed: u64, after_iter: u32) {
    let out = kappa()
        .args(["--data-dir", data.to_str().unwrap(), "consume", "t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seed {seed}: consume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut next_offset: BTreeMap<u64, u64> = BTreeMap::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let r: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("seed {seed}: bad line {l}: {e}"));
        let partition = r["partition"].as_u64().unwrap();
        let offset = r["offset"].as_u64().unwrap();
        let expected_offset = next_offset.entry(partition).or_default();
        assert_eq!(
            offset, *expected_offset,
            "seed {seed}: offsets dense in partition {partition}"
        );
        *expected_offset += 1;
        let v = &r["value"];
        let (iter, seq) = (
            v["iter"].as_u64().unwrap() as u32,
            v["seq"].as_u64().unwrap() as u32,
        );
        assert_eq!(
            v.to_string(),
            serde_json::from_str::<serde_json::Value>(&line(iter, seq))
                .unwrap()
                .to_string(),
            "seed {seed}: record {iter}/{seq} is damaged"
        );
        seen.entry(iter).or_default().push(seq);
    }
    for (iter, acked) in acked {
        let mut seqs = seen.remove(iter).unwrap_or_default();
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(
            n >= *acked,
            "seed {seed}, after kill {after_iter}: run {iter} acknowledged {acked} but {n} survived"
        );
        assert!(
            seqs.iter().enumerate().all(|(i, s)| i as u32 == *s),
            "seed {seed}: run {iter} is not a prefix (a partial batch?)"
        );
    }
    assert!(seen.is_empty());
}
