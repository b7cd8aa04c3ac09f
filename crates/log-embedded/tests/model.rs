//! Random appends, reads, reopens, retention and compaction, checked against
//! an in-memory model. The seed is printed; set KAPPA_MODEL_SEED to replay
//! one, KAPPA_MODEL_CASES for more cases (the long form).

mod common;

use common::*;
use kappa_log::{
    AppendBatch, AppendRecord, Cleanup, LogTime, ReadFrom, ReadLimits, Retention, TopicConfig,
};
use kappa_log_embedded::fs::SimFs;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

/// (key, value) by offset, per partition.
type Partition = BTreeMap<u64, (String, Option<String>)>;

struct Model {
    partitions: HashMap<(String, u32), Partition>,
    next: HashMap<(String, u32), u64>,
}

const TOPICS: [(&str, u32, Retention, Cleanup); 3] = [
    ("plain", 3, Retention::Forever, Cleanup::Delete),
    (
        "sized",
        2,
        Retention::BytesPerPartition(3000),
        Cleanup::Delete,
    ),
    (
        "compacted",
        2,
        Retention::Forever,
        Cleanup::Compact {
            tombstone_retention_ms: 86_400_000,
        },
    ),
];

fn options(rng: &mut StdRng) -> LogOptions {
    LogOptions {
        segment_bytes_max: rng.random_range(512..4096),
        ..common::options()
    }
}

fn check(log: &EmbeddedLog, model: &Model, seed: u64, step: usize) {
    for (name, partitions, retention, cleanup) in TOPICS {
        for p in 0..partitions {
            let expected = model
                .partitions
                .get(&(name.to_string(), p))
                .cloned()
                .unwrap_or_default();
            let got = read_all(log, name, p);
            let ctx = format!("seed {seed} step {step} {name}/{p}");
            for r in &got {
                let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
                let value = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                assert_eq!(
                    expected.get(&r.offset),
                    Some(&(key, value)),
                    "{ctx}: record at {} differs",
                    r.offset
                );
            }
            let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
            match (retention, cleanup) {
                (Retention::Forever, Cleanup::Delete) => {
                    assert_eq!(
                        offsets,
                        expected.keys().copied().collect::<Vec<_>>(),
                        "{ctx}: every record"
                    );
                }
                (_, Cleanup::Delete) => {
                    // A contiguous suffix ending at the last record.
                    let tail: Vec<u64> = expected
                        .keys()
                        .copied()
                        .skip(expected.len() - offsets.len())
                        .collect();
                    assert_eq!(offsets, tail, "{ctx}: a suffix");
                }
                (_, Cleanup::Compact { .. }) => {
                    let mut latest: HashMap<&String, u64> = HashMap::new();
                    for (o, (k, _)) in &expected {
                        latest.insert(k, *o);
                    }
                    for o in latest.values() {
                        assert!(offsets.contains(o), "{ctx}: latest record at {o} kept");
                    }
                }
            }
        }
    }
}

fn run_case(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let fs = SimFs::new();
    let opts = options(&mut rng);
    let mut log = open_sim(&fs, opts.clone());
    for (name, partitions, retention, cleanup) in TOPICS {
        log.create_topic_blocking(
            name,
            TopicConfig {
                partitions,
                retention,
                cleanup,
            },
        )
        .unwrap();
    }
    let mut model = Model {
        partitions: HashMap::new(),
        next: HashMap::new(),
    };
    let steps = rng.random_range(20..80);
    for step in 0..steps {
        match rng.random_range(0..10) {
            0..=5 => {
                let n = rng.random_range(1..6);
                let records: Vec<AppendRecord> = (0..n)
                    .map(|i| {
                        let (topic, _, _, _) = TOPICS[rng.random_range(0..TOPICS.len())];
                        let key = format!("k{}", rng.random_range(0..6));
                        let value = format!("s{step}-{i}-{}", "v".repeat(rng.random_range(0..60)));
                        let mut r = AppendRecord::new(topic, value).with_key(key);
                        if topic == "compacted" && rng.random_bool(0.1) {
                            r.value = None;
                        }
                        r
                    })
                    .collect();
                let result = log
                    .append_blocking(&AppendBatch::new(records.clone()))
                    .unwrap();
                for (r, pos) in records.iter().zip(&result.positions) {
                    let id = (r.topic.clone(), pos.partition);
                    let next = model.next.entry(id.clone()).or_default();
                    assert_eq!(pos.offset, *next, "seed {seed}: dense offsets");
                    *next += 1;
                    let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
                    let value = r
                        .value
                        .as_ref()
                        .map(|v| String::from_utf8(v.to_vec()).unwrap());
                    model
                        .partitions
                        .entry(id)
                        .or_default()
                        .insert(pos.offset, (key, value));
                }
            }
            6 => {
                drop(log);
                log = open_sim(&fs, opts.clone());
            }
            7 => {
                log.run_cleaner().unwrap();
            }
            8 => {
                // A merged read sees every readable record once, in log-time order.
                let mut reader = log
                    .merged_reader_blocking(&["plain", "sized", "compacted"], LogTime::ZERO)
                    .unwrap();
                let mut last = LogTime::ZERO;
                let mut merged = Vec::new();
                loop {
                    let batch = reader
                        .next_batch_blocking(ReadLimits {
                            max_records: rng.random_range(1..50),
                            max_bytes: 1 << 20,
                        })
                        .unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for r in batch {
                        assert!(r.log_time > last, "seed {seed}: merged order");
                        last = r.log_time;
                        merged.push((r.topic.to_string(), r.partition, r.offset));
                    }
                }
                // ... and exactly the records the partition reads see.
                let mut by_partition = Vec::new();
                for (name, partitions, _, _) in TOPICS {
                    for p in 0..partitions {
                        for r in read_all(&log, name, p) {
                            by_partition.push((name.to_string(), p, r.offset));
                        }
                    }
                }
                merged.sort();
                by_partition.sort();
                assert_eq!(
                    merged, by_partition,
                    "seed {seed}: merged = partition reads"
                );
            }
            _ => {
                let (name, partitions, _, _) = TOPICS[rng.random_range(0..TOPICS.len())];
                let p = rng.random_range(0..partitions);
                let next = model.next.get(&(name.to_string(), p)).copied().unwrap_or(0);
                let offset = rng.random_range(0..=next);
                match log.read_blocking(name, p, ReadFrom::Offset(offset), ReadLimits::default()) {
                    Ok(records) => assert!(records.iter().all(|r| r.offset >= offset)),
                    Err(kappa_log::LogError::OffsetOutOfRange { start_offset, .. }) => {
                        assert!(offset < start_offset)
                    }
                    Err(e) => panic!("seed {seed}: read failed: {e}"),
                }
            }
        }
        check(&log, &model, seed, step);
    }
}

#[test]
fn random_operations_match_the_model() {
    let cases: u64 = std::env::var("KAPPA_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let first: u64 = std::env::var("KAPPA_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!(
        "model test: {cases} case(s) from seed {first} (replay with KAPPA_MODEL_SEED={first})"
    );
    for i in 0..cases {
        run_case(first.wrapping_add(i));
    }
}
