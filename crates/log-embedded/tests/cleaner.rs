//! Retention and compaction: what is dropped, what is kept, and crash safety.

mod common;

use common::*;
use kappa_log::{AppendRecord, Cleanup, LogError, ReadFrom, ReadLimits, Retention, TopicConfig};
use kappa_log_embedded::fs::SimFs;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 1024,
        ..options()
    }
}

fn create(log: &EmbeddedLog, name: &str, retention: Retention, cleanup: Cleanup) {
    log.create_topic_blocking(
        name,
        TopicConfig {
            partitions: 1,
            retention,
            cleanup,
        },
    )
    .unwrap();
}

#[test]
fn retention_by_age_drops_old_records_and_keeps_other_topics() {
    let fs = SimFs::new();
    let log = open_sim(&fs, small());
    create(&log, "short", Retention::AgeMs(300), Cleanup::Delete);
    create(&log, "forever", Retention::Forever, Cleanup::Delete);
    for i in 0..30 {
        append(
            &log,
            vec![
                rec("short", "k", &format!("old-{i}")),
                rec("forever", "k", &format!("f-{i}")),
            ],
        );
    }
    std::thread::sleep(Duration::from_millis(400));
    for i in 0..30 {
        append(
            &log,
            vec![
                rec("short", "k", &format!("new-{i}")),
                rec("forever", "k", &format!("g-{i}")),
            ],
        );
    }
    let report = log.run_cleaner().unwrap();
    assert_eq!(report.start_offsets_raised, 1);
    assert!(
        report.segments_rewritten + report.segments_deleted > 0,
        "{report:?}"
    );
    assert!(report.bytes_reclaimed > 0);
    let short: Vec<String> = read_all(&log, "short", 0).iter().map(value).collect();
    assert_eq!(
        short,
        (0..30).map(|i| format!("new-{i}")).collect::<Vec<_>>()
    );
    let err = log
        .read_blocking("short", 0, ReadFrom::Offset(0), ReadLimits::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                start_offset: 30,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("out of range"));
    assert_eq!(
        read_all(&log, "forever", 0).len(),
        60,
        "the other topic is untouched"
    );
    drop(log);
    let log = open_sim(&fs, small());
    assert_eq!(
        read_all(&log, "short", 0).len(),
        30,
        "retention survives reopen"
    );
    assert_eq!(read_all(&log, "short", 0)[0].offset, 30);
    assert_eq!(read_all(&log, "forever", 0).len(), 60);
}

#[test]
fn retention_by_size_keeps_the_newest_records() {
    let fs = SimFs::new();
    let log = open_sim(&fs, small());
    create(
        &log,
        "t",
        Retention::BytesPerPartition(2000),
        Cleanup::Delete,
    );
    for i in 0..100 {
        append(
            &log,
            vec![rec("t", "k", &format!("v-{i:03}-{}", "p".repeat(30)))],
        );
    }
    log.run_cleaner().unwrap();
    let kept = read_all(&log, "t", 0);
    assert!(!kept.is_empty() && kept.len() < 100, "kept {}", kept.len());
    let first = kept[0].offset;
    assert_eq!(kept.last().unwrap().offset, 99);
    assert_eq!(kept.len() as u64, 100 - first, "a contiguous suffix");
    let d = log.describe_blocking("t").unwrap();
    assert_eq!(d.partitions[0].start_offset, first);
    assert!(
        d.partitions[0].bytes <= 2000 + 200,
        "about the configured size: {}",
        d.partitions[0].bytes
    );
    // Offsets keep counting.
    assert_eq!(
        append(&log, vec![rec("t", "k", "next")]).positions[0].offset,
        100
    );
}

fn tombstone(topic: &str, key: &str) -> AppendRecord {
    let mut r = rec(topic, key, "");
    r.value = None;
    r
}

#[test]
fn compaction_keeps_the_latest_record_per_key_and_expires_tombstones() {
    let fs = SimFs::new();
    let log = open_sim(&fs, small());
    create(
        &log,
        "state",
        Retention::Forever,
        Cleanup::Compact {
            tombstone_retention_ms: 200,
        },
    );
    let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for i in 0..120u64 {
        let key = format!("key-{}", i % 7);
        let r = if i % 17 == 5 {
            tombstone("state", &key)
        } else {
            rec("state", &key, &format!("v{i}"))
        };
        let value = r
            .value
            .as_ref()
            .map(|v| String::from_utf8(v.to_vec()).unwrap());
        let offset = append(&log, vec![r]).positions[0].offset;
        latest.insert(key, (offset, value));
    }
    let err = log
        .append_blocking(&kappa_log::AppendBatch::new(vec![AppendRecord::new(
            "state", "no key",
        )]))
        .unwrap_err();
    assert!(err.to_string().contains("needs a key"), "{err}");
    log.run_cleaner().unwrap();
    let after = read_all(&log, "state", 0);
    // Every record kept is the latest for its key or lies in the active segment.
    for r in &after {
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let (offset, value) = &latest[&key];
        if r.offset == *offset {
            assert_eq!(
                r.value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap()),
                *value
            );
        }
    }
    for (key, (offset, _)) in &latest {
        assert!(
            after.iter().any(|r| r.offset == *offset),
            "latest record of {key} kept"
        );
    }
    assert!(
        after.len() < 120,
        "superseded records were removed ({} left)",
        after.len()
    );
    let offsets: Vec<u64> = after.iter().map(|r| r.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    // Tombstones older than their retention go too (outside the active segment).
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..40 {
        append(
            &log,
            vec![rec("state", "filler", &format!("{i}{}", "f".repeat(40)))],
        );
    }
    log.run_cleaner().unwrap();
    let final_records = read_all(&log, "state", 0);
    for (key, (offset, value)) in &latest {
        let present = final_records.iter().any(|r| r.offset == *offset);
        assert_eq!(
            present,
            value.is_some(),
            "key {key}: live values stay, old tombstones go"
        );
    }
    drop(log);
    let log = open_sim(&fs, small());
    assert_eq!(
        read_all(&log, "state", 0),
        final_records,
        "the same after reopen"
    );
}

#[test]
fn power_loss_during_cleaning_keeps_every_live_record() {
    let build = |fs: &SimFs| {
        let log = open_sim(fs, small());
        create(
            &log,
            "state",
            Retention::Forever,
            Cleanup::Compact {
                tombstone_retention_ms: 86_400_000,
            },
        );
        create(
            &log,
            "sized",
            Retention::BytesPerPartition(1500),
            Cleanup::Delete,
        );
        for i in 0..80u64 {
            append(
                &log,
                vec![
                    rec("state", &format!("k{}", i % 5), &format!("v{i}")),
                    rec("sized", "k", &format!("s{i}-{}", "z".repeat(20))),
                ],
            );
        }
        log
    };
    let reference = SimFs::new();
    let (expected_state, expected_sized_tail, syncs_before, syncs_after) = {
        let log = build(&reference);
        let before = reference.stats().syncs;
        log.run_cleaner().unwrap();
        let after = reference.stats().syncs;
        let state = contents(&read_all(&log, "state", 0));
        let sized = contents(&read_all(&log, "sized", 0));
        (state, sized, before, after)
    };
    assert!(
        syncs_after > syncs_before + 2,
        "the cleaner syncs several times"
    );
    for point in syncs_before + 1..=syncs_after {
        let fs = SimFs::new();
        let log = build(&fs);
        let all_state = contents(&read_all(&log, "state", 0));
        let all_sized = contents(&read_all(&log, "sized", 0));
        fs.crash_at_sync(point);
        let _ = log.run_cleaner();
        drop(log);
        for seed in 0..2 {
            let image = fs.crash_image(seed);
            let log = EmbeddedLog::open_with(Arc::new(image), Path::new(DIR), small())
                .unwrap_or_else(|e| panic!("crash at sync {point}: reopen failed: {e}"));
            let state = contents(&read_all(&log, "state", 0));
            // Compaction goes segment by segment: anything between before
            // and after, never a record lost that the result keeps, never
            // a record changed.
            assert!(
                state.iter().all(|r| all_state.contains(r)),
                "crash at sync {point}: records changed"
            );
            assert!(
                expected_state.iter().all(|r| state.contains(r)),
                "crash at sync {point}: live records lost"
            );
            let sized = contents(&read_all(&log, "sized", 0));
            assert!(
                sized.ends_with(&expected_sized_tail),
                "crash at sync {point}: retained records lost"
            );
            assert!(
                all_sized.ends_with(&sized),
                "crash at sync {point}: records changed"
            );
        }
    }
}

/// Offsets and values (log times differ between runs of the same workload).
fn contents(records: &[kappa_log::Record]) -> Vec<(u64, Option<String>)> {
    records
        .iter()
        .map(|r| {
            (
                r.offset,
                r.value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap()),
            )
        })
        .collect()
}
