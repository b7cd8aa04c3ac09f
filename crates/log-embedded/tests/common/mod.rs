//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use bytes::Bytes;
use kappa_log::{AppendBatch, AppendRecord, ReadFrom, ReadLimits, Record, TopicConfig};
use kappa_log_embedded::fs::SimFs;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use std::path::Path;
use std::sync::Arc;

pub const DIR: &str = "/data";

pub fn options() -> LogOptions {
    LogOptions {
        cleaner_interval: None,
        ..LogOptions::default()
    }
}

pub fn open_sim(fs: &SimFs, options: LogOptions) -> EmbeddedLog {
    EmbeddedLog::open_with(Arc::new(fs.clone()), Path::new(DIR), options).expect("open")
}

pub fn topic(log: &EmbeddedLog, name: &str, partitions: u32) {
    log.create_topic_blocking(name, TopicConfig::with_partitions(partitions))
        .expect("create topic");
}

pub fn rec(topic: &str, key: &str, value: &str) -> AppendRecord {
    AppendRecord::new(topic, value.to_string()).with_key(key.to_string())
}

pub fn append(log: &EmbeddedLog, records: Vec<AppendRecord>) -> kappa_log::AppendResult {
    log.append_blocking(&AppendBatch::new(records))
        .expect("append")
}

/// Every record of a partition from the start.
pub fn read_all(log: &EmbeddedLog, topic: &str, partition: u32) -> Vec<Record> {
    let mut out = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let batch = log
            .read_blocking(
                topic,
                partition,
                from,
                ReadLimits {
                    max_records: 7,
                    max_bytes: 1 << 20,
                },
            )
            .expect("read");
        let Some(last) = batch.last() else { return out };
        from = ReadFrom::Offset(last.offset + 1);
        out.extend(batch);
    }
}

pub fn value(r: &Record) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap()
}

pub fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
