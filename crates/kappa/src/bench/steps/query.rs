//! Queries on the view: point queries by key (now and AS OF the middle
//! of the ingest) and a scan of the whole view. Point answers are
//! checked against the generator's totals.

use crate::bench::floors::Floors;
use crate::bench::report::StepReport;
use crate::bench::stats::Latency;
use crate::bench::{Bench, Step};
use anyhow::bail;
use kappa_log::Token;
use kappa_workload::Generator;
use std::time::Instant;

pub async fn run(b: &mut Bench, _floors: &Floors) -> anyhow::Result<StepReport> {
    let n = b.settings.queries;
    let bar = b.bars.records("query", (2 * n) as u64);
    bar.set_message("point queries");
    // Accounts to ask for: a fixed sequence (so runs are comparable),
    // among those that have records.
    let accounts: Vec<(u64, kappa_workload::Totals)> = b.expected.accounts().collect();
    if accounts.is_empty() {
        bail!("no account has records");
    }
    let mut pick = b.settings.seed | 1;
    let mut next = move || {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        pick
    };
    // Settle: the first query after a write waits for nothing.
    b.instance
        .query(&format!("SELECT count(*) FROM {}", b.view), b.last)
        .await?;
    let mut point = Vec::with_capacity(n);
    for _ in 0..n {
        let (account, totals) = accounts[(next() % accounts.len() as u64) as usize];
        let name = Generator::account_name(account);
        let sql = format!("SELECT n FROM {} WHERE account = '{name}'", b.view);
        let (took, got) = timed_count(b, &sql).await?;
        point.push(took);
        if got != Some(totals.count as i64) {
            bail!(
                "wrong answer: the point query for {name} gave n = {got:?}, expected {}",
                totals.count
            );
        }
        bar.inc(1);
    }
    let mut as_of = Vec::with_capacity(n);
    if let Some(middle) = b.middle {
        bar.set_message("AS OF point queries");
        let token = Token::at(middle);
        for _ in 0..n {
            let (account, totals) = accounts[(next() % accounts.len() as u64) as usize];
            let name = Generator::account_name(account);
            let sql = format!(
                "SELECT n FROM {} WHERE account = '{name}' AS OF TOKEN '{token}'",
                b.view
            );
            let (took, got) = timed_count(b, &sql).await?;
            as_of.push(took);
            // Half way through, an account has at most its records now.
            let got = got.unwrap_or(0);
            if got > totals.count as i64 {
                bail!(
                    "wrong answer: AS OF the middle of the ingest, {name} had n = {got}, more than its {} records",
                    totals.count
                );
            }
            bar.inc(1);
        }
    }
    bar.set_message("scans");
    let scans = (n / 100).clamp(3, 20);
    let mut scan = Vec::with_capacity(scans);
    let sql = format!("SELECT count(*), sum(n) FROM {}", b.view);
    for _ in 0..scans {
        let t = Instant::now();
        let rows = b.instance.query(&sql, None).await?;
        scan.push(t.elapsed());
        let row = rows.first().cloned().unwrap_or_default();
        let (count, sum) = (
            row.first().and_then(|v| v.as_i64()),
            row.get(1).and_then(|v| v.as_i64()),
        );
        if count != Some(accounts.len() as i64) || sum != Some(b.expected.records() as i64) {
            bail!(
                "wrong answer: a scan gave {count:?} accounts and {sum:?} records; expected {} and {}",
                accounts.len(),
                b.expected.records()
            );
        }
    }
    bar.finish_and_clear();
    let mut r = StepReport::new(Step::Query);
    if let Some(l) = Latency::of(&point) {
        r.latency("point query", l, None);
    }
    if let Some(l) = Latency::of(&as_of) {
        r.latency("AS OF point query", l, None);
    }
    if let Some(l) = Latency::of(&scan) {
        let rows_s = accounts.len() as f64 / (l.p50_us / 1e6);
        r.latency("scan", l, None);
        r.figure("scan rows/s", rows_s, "rows/s");
    }
    Ok(r)
}

/// Runs a point query for `n`; how long it took and the `n` it gave.
async fn timed_count(b: &Bench, sql: &str) -> anyhow::Result<(std::time::Duration, Option<i64>)> {
    let t = Instant::now();
    let rows = b.instance.query(sql, None).await?;
    let took = t.elapsed();
    Ok((
        took,
        rows.first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_i64()),
    ))
}
