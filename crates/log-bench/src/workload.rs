//! The bank-transactions workload: deterministic for a seed.

use bytes::Bytes;
use std::sync::Arc;

/// `(key, value)` pairs like
/// `{"account":"acc-00042","amount":-12.5,"kind":"debit","ts":"2026-01-01T00:00:00.000Z"}`.
pub fn generate(records: usize, accounts: usize, seed: u64) -> Arc<Vec<(Bytes, Bytes)>> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let out = (0..records)
        .map(|i| {
            let account = format!("acc-{:05}", next() % accounts as u64);
            let cents = (next() % 100_000) as i64 - 50_000;
            let kind = if cents < 0 { "debit" } else { "credit" };
            let secs = i as u64 / 1000;
            let value = format!(
                r#"{{"account":"{account}","amount":{:.2},"kind":"{kind}","ts":"2026-01-01T{:02}:{:02}:{:02}.{:03}Z"}}"#,
                cents as f64 / 100.0,
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60,
                i % 1000
            );
            (Bytes::from(account), Bytes::from(value))
        })
        .collect();
    Arc::new(out)
}
