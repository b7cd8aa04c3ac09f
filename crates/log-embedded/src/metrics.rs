//! Counters the log keeps about itself (exported by the server as metrics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    pub syncs: AtomicU64,
    pub sync_micros_total: AtomicU64,
    pub sync_micros_max: AtomicU64,
    pub groups: AtomicU64,
    pub transactions: AtomicU64,
    pub bytes_appended: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub syncs: u64,
    pub sync_micros_total: u64,
    pub sync_micros_max: u64,
    pub groups: u64,
    pub transactions: u64,
    pub bytes_appended: u64,
}

impl Metrics {
    pub fn record_sync(&self, took: Duration) {
        let micros = took.as_micros() as u64;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.sync_micros_max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn record_group(&self, transactions: usize, bytes: usize) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.transactions
            .fetch_add(transactions as u64, Ordering::Relaxed);
        self.bytes_appended
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_micros_total: self.sync_micros_total.load(Ordering::Relaxed),
            sync_micros_max: self.sync_micros_max.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            bytes_appended: self.bytes_appended.load(Ordering::Relaxed),
        }
    }
}
