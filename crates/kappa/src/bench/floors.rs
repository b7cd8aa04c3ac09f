//! The machine's floors, measured in the same run as Kappa's figures: what
//! the disk does with fdatasync, and what a plain JSON parse-and-fold of
//! the workload does. Absolute figures move from run to run on shared
//! machines; ratios to these move less.

use super::stats::Latency;
use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct Floors {
    /// Sequential writes of 1 MiB, each followed by fdatasync.
    pub disk_write_mb_s: f64,
    /// 4 KiB appends, each followed by fdatasync.
    pub fdatasync: Latency,
    /// serde_json parse of each record into a struct, folded into a hash
    /// map of per-account sums and counts, on one thread.
    pub json_fold_records_s: f64,
}

/// Measures the disk in `dir` (`mib` MiB, `syncs` small syncs) and the
/// fold over `records`.
pub fn measure(dir: &Path, mib: usize, syncs: usize, records: &[Bytes]) -> anyhow::Result<Floors> {
    let (disk_write_mb_s, fdatasync) = disk(dir, mib, syncs)
        .with_context(|| format!("cannot measure the disk in {}", dir.display()))?;
    Ok(Floors {
        disk_write_mb_s,
        fdatasync,
        json_fold_records_s: json_fold(records)?,
    })
}

fn disk(dir: &Path, mib: usize, syncs: usize) -> std::io::Result<(f64, Latency)> {
    let path = dir.join("floor.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0x5au8; 1 << 20];
        let started = Instant::now();
        for _ in 0..mib {
            f.write_all(&chunk)?;
            f.sync_data()?;
        }
        let rate = mib as f64 * 1.048_576 / started.elapsed().as_secs_f64();
        let small = vec![0xa5u8; 4096];
        let mut times = Vec::with_capacity(syncs);
        for _ in 0..syncs {
            let t = Instant::now();
            f.write_all(&small)?;
            f.sync_data()?;
            times.push(t.elapsed());
        }
        let latency = Latency::of(&times)
            .unwrap_or_else(|| Latency::of(&[Duration::ZERO]).expect("one sample"));
        Ok((rate, latency))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

#[derive(serde::Deserialize)]
struct Txn<'a> {
    #[serde(borrow)]
    account: &'a str,
    amount: f64,
}

/// Records per second; fails if a record does not parse (the workload
/// is broken).
pub fn json_fold(records: &[Bytes]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut totals: HashMap<&str, (f64, u64)> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let t: Txn = serde_json::from_slice(r)
            .with_context(|| format!("workload record {i} is not a transaction"))?;
        let e = totals.entry(t.account).or_default();
        e.0 += t.amount;
        e.1 += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counted: u64 = totals.values().map(|t| t.1).sum();
    anyhow::ensure!(counted == records.len() as u64, "the fold lost records");
    Ok(records.len() as f64 / elapsed.max(1e-9))
}
