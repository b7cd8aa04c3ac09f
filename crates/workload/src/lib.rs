//! The bank-transactions workload: records like
//! `{"account":"acc-00042","amount":-12.5,"kind":"debit","ts":"2026-01-01T00:00:00.000Z"}`,
//! deterministic for a seed (the same seed gives the same bytes, on every
//! machine), with uniform or Zipf-distributed accounts, and the aggregates
//! a correct `GROUP BY account` must give for them.

mod expected;
mod generator;

pub use expected::{Expected, Totals};
pub use generator::{Distribution, Generator, Record, Workload};

use bytes::Bytes;
use std::sync::Arc;

/// `records` `(key, value)` pairs of the uniform workload over `accounts`
/// accounts (the log and view benchmarks' input).
pub fn generate(records: usize, accounts: usize, seed: u64) -> Arc<Vec<(Bytes, Bytes)>> {
    let workload = Workload {
        records: records as u64,
        accounts: accounts as u64,
        seed,
        distribution: Distribution::Uniform,
    };
    let mut g = Generator::new(&workload).expect("a uniform workload is always valid");
    let out = (0..records)
        .map(|_| {
            let r = g.next_record();
            (r.key, r.value)
        })
        .collect();
    Arc::new(out)
}
