//! Truncating a topic's history before a log time (DeleteRecords).

mod common;

use common::*;
use kappa_log::{LogError, LogTime, ReadLimits, Record};
use kappa_log_embedded::LogOptions;
use kappa_log_embedded::fs::SimFs;

fn small() -> LogOptions {
    LogOptions {
        segment_bytes_max: 1024,
        ..options()
    }
}

fn merged_all(log: &kappa_log_embedded::EmbeddedLog, topic: &str) -> Vec<Record> {
    let mut reader = log.merged_reader_blocking(&[topic], LogTime::ZERO).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = reader
            .next_batch_blocking(ReadLimits {
                max_records: 5,
                max_bytes: 1 << 20,
            })
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[test]
fn truncate_drops_exactly_the_records_before_the_point_and_survives_reopen() {
    let fs = SimFs::new();
    let log = open_sim(&fs, small());
    topic(&log, "t", 2);
    topic(&log, "other", 1);
    for i in 0..60 {
        append(
            &log,
            vec![
                rec("t", &format!("k{}", i % 7), &format!("v{i}")),
                rec("other", "k", &format!("o{i}")),
            ],
        );
    }
    let before_all = merged_all(&log, "t");
    assert_eq!(before_all.len(), 60);
    // A point in the middle of a chunk's worth of records.
    let cut = before_all[23].log_time;
    let starts = log.truncate_before_blocking("t", cut).unwrap();
    assert_eq!(starts.len(), 2);
    let expected: Vec<String> = before_all
        .iter()
        .filter(|r| r.log_time >= cut)
        .map(value)
        .collect();
    let check = |log: &kappa_log_embedded::EmbeddedLog| {
        let merged: Vec<String> = merged_all(log, "t").iter().map(value).collect();
        assert_eq!(merged, expected, "the merged read starts at the cut");
        for (p, start) in &starts {
            let records = read_all(log, "t", *p);
            assert_eq!(records.first().map(|r| r.offset), {
                let kept: Vec<&Record> = before_all
                    .iter()
                    .filter(|r| r.partition == *p && r.log_time >= cut)
                    .collect();
                kept.first().map(|r| r.offset)
            });
            assert!(records.iter().all(|r| r.log_time >= cut));
            assert!(records.iter().all(|r| r.offset >= *start));
            let described = log.describe_blocking("t").unwrap();
            assert_eq!(described.partitions[*p as usize].start_offset, *start);
        }
        assert_eq!(read_all(log, "other", 0).len(), 60, "other topics keep all");
    };
    check(&log);
    log.run_cleaner().unwrap();
    check(&log);
    log.close();
    drop(log);
    let log = open_sim(&fs, small());
    check(&log);
    // Truncating before an earlier point changes nothing.
    let again = log
        .truncate_before_blocking("t", before_all[3].log_time)
        .unwrap();
    assert_eq!(again, starts);
    check(&log);
}

#[test]
fn truncate_refuses_a_point_past_the_head_and_unknown_topics() {
    let fs = SimFs::new();
    let log = open_sim(&fs, small());
    topic(&log, "t", 1);
    append(&log, vec![rec("t", "k", "v")]);
    let head = log.head_log_time();
    let err = log
        .truncate_before_blocking("t", LogTime(head.0 + 10))
        .unwrap_err();
    assert!(
        matches!(&err, LogError::InvalidArgument(m) if m.contains("head")),
        "{err}"
    );
    assert_eq!(read_all(&log, "t", 0).len(), 1, "nothing dropped");
    assert!(log.truncate_before_blocking("nope", head).is_err());
    // Everything: the start reaches the end.
    let starts = log
        .truncate_before_blocking("t", LogTime(head.0 + 1))
        .unwrap();
    assert_eq!(starts, vec![(0, 1)]);
    assert!(read_all(&log, "t", 0).is_empty());
}
