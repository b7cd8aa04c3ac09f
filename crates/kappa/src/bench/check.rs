//! The view's answers against the generator's own totals: every account
//! with its sum and count, nothing more. A fast wrong answer fails the
//! bench.

use super::Bench;
use anyhow::bail;
use kappa_workload::Generator;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub when: String,
    pub accounts: usize,
    pub records: u64,
}

/// Waits until the view has applied every append, then compares.
pub async fn check(b: &Bench, when: &str) -> anyhow::Result<Check> {
    let rows = b
        .instance
        .query(
            &format!("SELECT account, balance, n FROM {}", b.view),
            b.last,
        )
        .await?;
    let mut got: HashMap<String, (f64, i64)> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let (Some(account), Some(balance), Some(n)) = (
            r.first().and_then(|v| v.as_str()),
            r.get(1).and_then(|v| v.as_f64()),
            r.get(2).and_then(|v| v.as_i64()),
        ) else {
            bail!("the view returned a row that is not (account, balance, n): {r:?}");
        };
        if got.insert(account.to_string(), (balance, n)).is_some() {
            bail!("wrong answer {when}: account {account} appears twice in the view");
        }
    }
    let mut accounts = 0;
    for (account, t) in b.expected.accounts() {
        accounts += 1;
        let name = Generator::account_name(account);
        let Some((balance, n)) = got.remove(&name) else {
            bail!(
                "wrong answer {when}: account {name} is missing from the view (expected {} records summing to {:.2})",
                t.count,
                t.cents as f64 / 100.0
            );
        };
        let want = t.cents as f64 / 100.0;
        // Sums of two-decimal doubles: exact to far better than a cent.
        if n != t.count as i64 || (balance - want).abs() > 1e-6 * want.abs().max(1.0) {
            bail!(
                "wrong answer {when}: account {name} has balance {balance}, n {n}; expected {want:.2}, {}",
                t.count
            );
        }
    }
    if let Some((account, _)) = got.into_iter().next() {
        bail!("wrong answer {when}: the view has account {account}, which no record names");
    }
    Ok(Check {
        when: when.to_string(),
        accounts,
        records: b.expected.records(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::floors::Floors;
    use crate::bench::instance::Instance;
    use crate::bench::stats::Latency;
    use crate::bench::{Settings, steps};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_answer_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::embedded(dir.path(), Some(1)).unwrap();
        let settings = Settings {
            records: 500,
            keys: 50,
            seed: 3,
            zipf: None,
            batch: 100,
            concurrency: 2,
            rate: 1000,
            duration_s: 0.1,
            queries: 10,
            subscribers: 1,
            workers: 1,
            quick: true,
        };
        let mut b = crate::bench::Bench::new(instance, settings).unwrap();
        let floors = Floors {
            disk_write_mb_s: 100.0,
            fdatasync: Latency::of(&[Duration::from_micros(100)]).unwrap(),
            json_fold_records_s: 1e6,
        };
        b.instance
            .execute(&format!(
                "CREATE TOPIC {} (account TEXT, amount DOUBLE, kind TEXT, ts TIMESTAMP) WITH (key = 'account')",
                b.topic
            ))
            .await
            .unwrap();
        let records = b.take(500);
        steps::ingest::run(&mut b, records, &floors).await.unwrap();
        steps::replay::run(&mut b, &floors).await.unwrap();
        let ok = check(&b, "after the replay").await.unwrap();
        assert_eq!((ok.accounts, ok.records), (50, 500));
        // A record the generator counted but the view never saw: the check
        // must notice that one account is off.
        b.take(1);
        let e = check(&b, "now").await.unwrap_err().to_string();
        assert!(e.contains("wrong answer now: account acc-"), "{e}");
        b.instance.close().await;
    }
}
