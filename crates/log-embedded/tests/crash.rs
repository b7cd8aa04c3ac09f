//! Crash and fault tests through the simulated file system: power loss at
//! every sync point, torn tails at every byte, bit flips, lost indexes,
//! fsync EIO and ENOSPC.

mod common;

use common::*;
use kappa_log::{AppendBatch, AppendRecord, LogError, ReadFrom, ReadLimits};
use kappa_log_embedded::check::check;
use kappa_log_embedded::fs::{FileSystem, SimFs};
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes_max: 2048,
        ..options()
    }
}

/// (topic, partition, offset) -> value, for acknowledged records.
type Acked = BTreeMap<(String, u32, u64), String>;

/// A fixed workload: topic creation, then batches of 1-5 records over two
/// topics. Every value names its batch and size so partial batches show.
fn workload(log: &EmbeddedLog, acked: &mut Acked) -> Result<(), LogError> {
    log.create_topic_blocking("a", kappa_log::TopicConfig::with_partitions(3))?;
    log.create_topic_blocking("b", kappa_log::TopicConfig::with_partitions(2))?;
    for batch in 0..40u32 {
        let n = 1 + batch % 5;
        let records: Vec<AppendRecord> = (0..n)
            .map(|i| {
                let topic = if (batch + i) % 3 == 0 { "b" } else { "a" };
                rec(
                    topic,
                    &format!("k{}", (batch * 7 + i) % 11),
                    &format!(
                        "b{batch}-r{i}-n{n}-{}",
                        "x".repeat((batch % 4 * 20) as usize)
                    ),
                )
            })
            .collect();
        let result = log.append_blocking(&AppendBatch::new(records.clone()))?;
        for (r, p) in records.iter().zip(&result.positions) {
            let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
            acked.insert((r.topic.clone(), p.partition, p.offset), value);
        }
    }
    Ok(())
}

/// After recovery: every acknowledged record is there, byte-identical;
/// offsets are dense; every batch present is whole.
fn verify_recovered(log: &EmbeddedLog, acked: &Acked, context: &str) {
    let mut found: HashMap<String, (u32, u32)> = HashMap::new(); // batch -> (seen, size)
    for (topic, partitions) in [("a", 3u32), ("b", 2)] {
        let exists = log.describe_blocking(topic).is_ok();
        if !exists {
            assert!(
                !acked.keys().any(|(t, _, _)| t == topic),
                "{context}: topic {topic} lost although records were acknowledged"
            );
            continue;
        }
        for p in 0..partitions {
            let records = read_all(log, topic, p);
            for (i, r) in records.iter().enumerate() {
                assert_eq!(
                    r.offset, i as u64,
                    "{context}: offsets dense in {topic}/{p}"
                );
                let v = value(r);
                if let Some(expected) = acked.get(&(topic.to_string(), p, r.offset)) {
                    assert_eq!(&v, expected, "{context}: {topic}/{p}@{} differs", r.offset);
                }
                let batch = v.split('-').next().unwrap().to_string();
                let n: u32 = v.split('-').nth(2).unwrap()[1..].parse().unwrap();
                let e = found.entry(batch).or_insert((0, n));
                e.0 += 1;
            }
            let count = records.len() as u64;
            for (t, pp, offset) in acked.keys() {
                if t == topic && *pp == p {
                    assert!(
                        *offset < count,
                        "{context}: acknowledged {topic}/{p}@{offset} lost"
                    );
                }
            }
        }
    }
    for (batch, (seen, size)) in found {
        assert_eq!(seen, size, "{context}: batch {batch} is partial");
    }
}

#[test]
fn power_loss_at_every_sync_point_loses_nothing_acknowledged() {
    let dry = SimFs::new();
    {
        let log = open_sim(&dry, small_segments());
        workload(&log, &mut Acked::new()).unwrap();
    }
    let total_syncs = dry.stats().syncs;
    assert!(
        total_syncs > 40,
        "the workload syncs at least once per batch ({total_syncs})"
    );
    let seeds: u64 = std::env::var("KAPPA_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    println!("sweeping {total_syncs} sync points x {seeds} seeds");
    for point in 1..=total_syncs {
        let fs = SimFs::new();
        fs.crash_at_sync(point);
        let mut acked = Acked::new();
        // Power may go during open itself: then nothing was acknowledged.
        if let Ok(log) = EmbeddedLog::open_with(
            std::sync::Arc::new(fs.clone()),
            Path::new(DIR),
            small_segments(),
        ) {
            let _ = workload(&log, &mut acked);
        }
        for seed in 0..seeds {
            let image = fs.crash_image(point * 1000 + seed);
            let context = format!("crash at sync {point}, seed {}", point * 1000 + seed);
            let log = EmbeddedLog::open_with(
                std::sync::Arc::new(image.clone()),
                Path::new(DIR),
                small_segments(),
            )
            .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            verify_recovered(&log, &acked, &context);
            // The log accepts appends after recovery.
            if log.describe_blocking("a").is_ok() {
                append(&log, vec![rec("a", "after", "b999-r0-n1-")]);
            }
        }
    }
}

fn segment_files(fs: &SimFs) -> Vec<PathBuf> {
    fs.files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kseg"))
        .collect()
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_of_the_last_batch() {
    let fs = SimFs::new();
    let (before_last, last_len) = {
        let log = open_sim(&fs, options());
        topic(&log, "t", 2);
        for i in 0..5 {
            append(&log, vec![rec("t", &format!("k{i}"), &format!("v{i}"))]);
        }
        let seg = segment_files(&fs).pop().unwrap();
        let before = fs.with_file_bytes(&seg, |b| b.len());
        append(&log, vec![rec("t", "k5", "v5"), rec("t", "k6", "v6")]);
        let after = fs.with_file_bytes(&seg, |b| b.len());
        (before, after)
    };
    let seg = segment_files(&fs).pop().unwrap();
    for cut in before_last..last_len {
        let image = fs.crash_image(0);
        image.with_file_bytes(&seg, |b| b.truncate(cut));
        let log = open_sim(&image, options());
        let total: usize = (0..2).map(|p| read_all(&log, "t", p).len()).sum();
        assert_eq!(
            total, 5,
            "cut at byte {cut}: the torn batch is gone, the rest intact"
        );
        assert_eq!(
            image.with_file_bytes(&seg, |b| b.len()),
            before_last,
            "cut back to the last whole frame"
        );
        append(&log, vec![rec("t", "k7", "v7")]);
        drop(log);
        let log = open_sim(&image, options());
        let total: usize = (0..2).map(|p| read_all(&log, "t", p).len()).sum();
        assert_eq!(total, 6);
    }
}

fn fill_sealed_segments(fs: &SimFs) -> Vec<PathBuf> {
    let log = open_sim(fs, small_segments());
    topic(&log, "t", 1);
    for i in 0..60 {
        append(
            &log,
            vec![rec("t", "k", &format!("value-{i:04}-{}", "y".repeat(40)))],
        );
    }
    let mut segs = segment_files(fs);
    segs.sort();
    assert!(segs.len() >= 3, "the workload fills several segments");
    segs
}

#[test]
fn a_bit_flip_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let fs = SimFs::new();
    let segs = fill_sealed_segments(&fs);
    let victim = &segs[0];
    let flip_at = 32 + 48 + 10; // inside the first record of the first chunk
    fs.with_file_bytes(victim, |b| b[flip_at] ^= 0x40);
    let log = open_sim(&fs, small_segments());
    let err = log
        .read_blocking("t", 0, ReadFrom::Start, ReadLimits::default())
        .unwrap_err();
    match &err {
        LogError::Corruption { file, offset, .. } => {
            assert_eq!(file, victim);
            assert_eq!(
                *offset, 32,
                "the damaged chunk starts after the frame header"
            );
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(err.to_string().contains(&victim.display().to_string()));
    drop(log);
    let report = check(&fs, Path::new(DIR)).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, *victim);
    assert_eq!(
        report.problems[0].offset, 0,
        "the frame holding the chunk fails its check"
    );
}

#[test]
fn damage_in_the_middle_of_the_active_segment_is_an_error_not_a_cut() {
    let fs = SimFs::new();
    {
        let log = open_sim(&fs, options());
        topic(&log, "t", 1);
        for i in 0..5 {
            append(&log, vec![rec("t", "k", &format!("{i}"))]);
        }
    }
    let seg = segment_files(&fs).pop().unwrap();
    fs.with_file_bytes(&seg, |b| b[40] ^= 1);
    let err = EmbeddedLog::open_with(std::sync::Arc::new(fs.clone()), Path::new(DIR), options())
        .unwrap_err();
    assert!(
        matches!(&err, LogError::Corruption { file, offset: 0, .. } if *file == seg),
        "{err}"
    );
}

#[test]
fn a_missing_or_damaged_index_is_rebuilt() {
    let fs = SimFs::new();
    let segs = fill_sealed_segments(&fs);
    let index = segs[1].with_extension("kidx");
    assert!(fs.exists(&index));
    let all_before = {
        let log = open_sim(&fs, small_segments());
        read_all(&log, "t", 0)
    };
    fs.remove_file(&index).unwrap();
    let other = segs[0].with_extension("kidx");
    fs.with_file_bytes(&other, |b| b[40] ^= 0xff);
    let log = open_sim(&fs, small_segments());
    assert_eq!(read_all(&log, "t", 0), all_before);
    assert!(fs.exists(&index), "the index was written again");
    assert_eq!(all_before.len(), 60);
}

#[test]
fn fsync_failure_stops_the_writer_without_retry_and_reads_continue() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 1);
    append(&log, vec![rec("t", "k", "kept")]);
    let syncs = fs.stats().syncs;
    fs.fail_sync_at(syncs + 1);
    let err = log
        .append_blocking(&AppendBatch::new(vec![rec("t", "k", "maybe")]))
        .unwrap_err();
    assert!(
        !err.is_determinate(),
        "a failed fsync leaves the append indeterminate: {err}"
    );
    let err = log
        .append_blocking(&AppendBatch::new(vec![rec("t", "k", "refused")]))
        .unwrap_err();
    assert!(matches!(err, LogError::WriterFailed { .. }), "{err}");
    assert_eq!(
        fs.stats().syncs,
        syncs + 1,
        "the failed fsync was not retried"
    );
    assert_eq!(
        read_all(&log, "t", 0).iter().map(value).collect::<Vec<_>>(),
        ["kept"]
    );
    drop(log);
    let log = open_sim(&fs, options());
    let values: Vec<String> = read_all(&log, "t", 0).iter().map(value).collect();
    assert_eq!(values[0], "kept");
    assert!(values.len() <= 2 && values.iter().all(|v| v != "refused"));
    append(&log, vec![rec("t", "k", "after restart")]);
}

#[test]
fn disk_full_fails_the_append_and_appends_resume_once_space_is_freed() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 1);
    append(&log, vec![rec("t", "k", "first")]);
    fs.set_write_budget(Some(20));
    let err = log
        .append_blocking(&AppendBatch::new(vec![rec("t", "k", &"z".repeat(500))]))
        .unwrap_err();
    assert!(matches!(err, LogError::StorageFull { .. }), "{err}");
    assert!(err.is_determinate());
    assert!(err.to_string().contains("free space"), "{err}");
    fs.set_write_budget(None);
    append(&log, vec![rec("t", "k", "second")]);
    assert_eq!(
        read_all(&log, "t", 0).iter().map(value).collect::<Vec<_>>(),
        ["first", "second"]
    );
    drop(log);
    let log = open_sim(&fs, options());
    assert_eq!(
        read_all(&log, "t", 0).iter().map(value).collect::<Vec<_>>(),
        ["first", "second"]
    );
}

#[test]
fn check_reports_a_clean_log() {
    let fs = SimFs::new();
    fill_sealed_segments(&fs);
    let report = check(&fs, Path::new(DIR)).unwrap();
    assert!(
        report.problems.is_empty() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(report.records, 60);
    assert!(report.segments >= 3);
}
