//! Topics, appends, reads, conditions and reopen on the simulated and the real file system.

mod common;

use common::*;
use kappa_log::{
    AppendBatch, AppendRecord, Condition, ConflictCurrent, Log, LogError, LogTime, MergedReader,
    ReadFrom, ReadLimits, TopicConfig, partition_for_key,
};
use kappa_log_embedded::fs::SimFs;
use kappa_log_embedded::{EmbeddedLog, LogOptions};

#[test]
fn offsets_are_dense_and_keyed_records_follow_murmur2() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 4);
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 4];
    for i in 0..100 {
        let key = format!("acc-{:05}", i % 13);
        let result = append(&log, vec![rec("t", &key, &format!("v{i}"))]);
        let p = partition_for_key(key.as_bytes(), 4);
        assert_eq!(result.positions[0].partition, p);
        assert_eq!(
            result.positions[0].offset,
            expected[p as usize].len() as u64
        );
        expected[p as usize].push(format!("v{i}"));
    }
    for p in 0..4 {
        let records = read_all(&log, "t", p);
        let values: Vec<String> = records.iter().map(value).collect();
        assert_eq!(values, expected[p as usize]);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
        }
    }
}

#[test]
fn keyless_records_spread_evenly_and_explicit_partitions_are_kept() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 4);
    let records = (0..400)
        .map(|i| AppendRecord::new("t", format!("{i}")))
        .collect();
    append(&log, records);
    for p in 0..4 {
        assert_eq!(read_all(&log, "t", p).len(), 100, "partition {p}");
    }
    let r = append(
        &log,
        vec![AppendRecord::new("t", "x").with_key("k").with_partition(3)],
    );
    assert_eq!(r.positions[0].partition, 3);
    let err = log
        .append_blocking(&AppendBatch::new(vec![
            AppendRecord::new("t", "x").with_partition(4),
        ]))
        .unwrap_err();
    assert!(
        matches!(err, LogError::PartitionOutOfRange { partition: 4, .. }),
        "{err}"
    );
}

#[test]
fn log_time_is_strictly_increasing_and_unique_across_topics() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "a", 2);
    topic(&log, "b", 3);
    let mut times = Vec::new();
    for i in 0..50 {
        let r = append(
            &log,
            vec![
                rec("a", &format!("k{i}"), "1"),
                rec("b", &format!("k{i}"), "2"),
                rec("a", "z", "3"),
            ],
        );
        times.extend(r.positions.iter().map(|p| p.log_time));
        assert_eq!(r.token.log_time(), r.positions.last().unwrap().log_time);
    }
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "log times strictly increase"
    );
}

#[test]
fn a_batch_across_topics_is_atomic_and_readable_in_log_time_order() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "orders", 3);
    topic(&log, "payments", 2);
    let mut appended = Vec::new();
    for i in 0..30 {
        let r = append(
            &log,
            vec![
                rec("orders", &format!("o{i}"), &format!("order {i}")),
                rec("payments", &format!("p{i}"), &format!("payment {i}")),
            ],
        );
        appended.extend(
            r.positions
                .iter()
                .map(|p| (p.log_time, p.topic.to_string())),
        );
    }
    let mut reader = log
        .merged_reader_blocking(&["orders", "payments"], LogTime::ZERO)
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = reader
            .next_batch_blocking(ReadLimits {
                max_records: 11,
                max_bytes: 1 << 20,
            })
            .unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.into_iter().map(|r| (r.log_time, r.topic.to_string())));
    }
    assert_eq!(
        seen, appended,
        "merged reader returns every record once, in log-time order"
    );
    assert_eq!(reader.position(), appended.last().unwrap().0);
}

/// Transactions whose records spread over several partitions interleave log
/// times across chunks; the merged reader must still return each record
/// once, in log-time order, whatever its limits, while appends go on and
/// segments roll. The seed is printed; KAPPA_MERGED_SEED replays one.
#[test]
fn merged_reader_interleaves_transactions_and_follows_appends() {
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("KAPPA_MERGED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("KAPPA_MERGED_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fs = SimFs::new();
    let log = open_sim(
        &fs,
        LogOptions {
            segment_bytes_max: 16 << 10,
            ..options()
        },
    );
    topic(&log, "a", 4);
    topic(&log, "b", 3);
    topic(&log, "c", 2);
    let mut reader = log
        .merged_reader_blocking(&["a", "b"], LogTime::ZERO)
        .unwrap();
    let mut expected = Vec::new();
    let mut seen = Vec::new();
    for round in 0..60 {
        let n = if round % 3 == 0 {
            rng.random_range(100..400)
        } else {
            rng.random_range(1..20)
        };
        let records: Vec<AppendRecord> = (0..n)
            .map(|i| {
                let t = ["a", "b", "c"][rng.random_range(0..3)];
                rec(
                    t,
                    &format!("k{}", rng.random_range(0..50)),
                    &format!("{round}-{i}"),
                )
            })
            .collect();
        let r = append(&log, records);
        expected.extend(
            r.positions
                .iter()
                .filter(|p| &*p.topic != "c")
                .map(|p| (p.log_time, p.topic.to_string(), p.partition, p.offset)),
        );
        for _ in 0..rng.random_range(0..3) {
            let limits = ReadLimits {
                max_records: rng.random_range(1..64),
                max_bytes: if rng.random_bool(0.2) { 1 } else { 1 << 20 },
            };
            let batch = reader.next_batch_blocking(limits).unwrap();
            assert!(batch.len() <= limits.max_records, "seed {seed}: limits");
            seen.extend(
                batch
                    .into_iter()
                    .map(|r| (r.log_time, r.topic.to_string(), r.partition, r.offset)),
            );
        }
    }
    loop {
        let batch = reader.next_batch_blocking(ReadLimits::default()).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(
            batch
                .into_iter()
                .map(|r| (r.log_time, r.topic.to_string(), r.partition, r.offset)),
        );
    }
    assert!(expected.is_sorted(), "positions come in log-time order");
    assert_eq!(seen.len(), expected.len(), "seed {seed}: record count");
    assert_eq!(
        seen, expected,
        "seed {seed}: every record once, in log-time order"
    );
    assert_eq!(reader.position(), log.head_log_time(), "seed {seed}");
}

#[test]
fn unknown_topic_fails_the_whole_batch() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "a", 1);
    let err = log
        .append_blocking(&AppendBatch::new(vec![
            rec("a", "k", "1"),
            rec("nope", "k", "2"),
        ]))
        .unwrap_err();
    assert!(
        matches!(err, LogError::TopicNotFound { ref topic } if topic == "nope"),
        "{err}"
    );
    assert!(read_all(&log, "a", 0).is_empty(), "nothing appended");
}

#[test]
fn partition_condition_appends_only_when_the_last_offset_matches() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 1);
    let cond = |expected| Condition::PartitionLastOffset {
        topic: "t".into(),
        partition: 0,
        expected,
    };
    let batch = |c| AppendBatch::new(vec![rec("t", "k", "v")]).with_condition(c);
    log.append_blocking(&batch(cond(None))).unwrap();
    let err = log.append_blocking(&batch(cond(None))).unwrap_err();
    match err {
        LogError::Conflict { current, .. } => {
            assert_eq!(current, ConflictCurrent::PartitionLastOffset(Some(0)))
        }
        other => panic!("expected a conflict, got {other}"),
    }
    log.append_blocking(&batch(cond(Some(0)))).unwrap();
    assert_eq!(read_all(&log, "t", 0).len(), 2);
}

#[test]
fn key_conditions_see_committed_and_same_group_appends() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 4);
    let absent = Condition::KeyAbsent {
        topic: "t".into(),
        key: bytes("alice"),
    };
    let first = log
        .append_blocking(
            &AppendBatch::new(vec![rec("t", "alice", "1")]).with_condition(absent.clone()),
        )
        .unwrap();
    let offset = first.positions[0].offset;
    let err = log
        .append_blocking(
            &AppendBatch::new(vec![rec("t", "alice", "2")]).with_condition(absent.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(err, LogError::Conflict { current: ConflictCurrent::KeyLatestOffset(Some(o)), .. } if o == offset),
        "{err}"
    );
    let latest = |expected| Condition::KeyLatestOffset {
        topic: "t".into(),
        key: bytes("alice"),
        expected,
    };
    let second = log
        .append_blocking(
            &AppendBatch::new(vec![rec("t", "alice", "2")]).with_condition(latest(offset)),
        )
        .unwrap();
    let err = log
        .append_blocking(
            &AppendBatch::new(vec![rec("t", "alice", "3")]).with_condition(latest(offset)),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("latest record is at offset"),
        "{err}"
    );
    // A tombstone makes the key absent again.
    let mut tomb = rec("t", "alice", "");
    tomb.value = None;
    log.append_blocking(
        &AppendBatch::new(vec![tomb]).with_condition(latest(second.positions[0].offset)),
    )
    .unwrap();
    log.append_blocking(&AppendBatch::new(vec![rec("t", "alice", "4")]).with_condition(absent))
        .unwrap();
}

#[test]
fn reopen_keeps_everything_and_continues_offsets_and_log_time() {
    let fs = SimFs::new();
    let last = {
        let log = open_sim(&fs, options());
        topic(&log, "t", 2);
        for i in 0..20 {
            append(&log, vec![rec("t", &format!("k{i}"), &format!("{i}"))]);
        }
        log.head_log_time()
    };
    let log = open_sim(&fs, options());
    let before: usize = (0..2).map(|p| read_all(&log, "t", p).len()).sum();
    assert_eq!(before, 20);
    let r = append(&log, vec![rec("t", "k0", "again")]);
    assert!(r.positions[0].log_time > last);
    let p = r.positions[0].partition;
    let all = read_all(&log, "t", p);
    assert_eq!(all.last().unwrap().offset, r.positions[0].offset);
    assert_eq!(all.len() as u64, r.positions[0].offset + 1);
}

#[test]
fn reads_from_offset_and_log_time_and_out_of_range() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 1);
    let mut times = Vec::new();
    for i in 0..10 {
        times.push(append(&log, vec![rec("t", "k", &format!("{i}"))]).positions[0].log_time);
    }
    let limits = ReadLimits::default();
    let from5 = log
        .read_blocking("t", 0, ReadFrom::Offset(5), limits)
        .unwrap();
    assert_eq!(from5.first().unwrap().offset, 5);
    let from_t = log
        .read_blocking("t", 0, ReadFrom::LogTime(times[7]), limits)
        .unwrap();
    assert_eq!(from_t.first().unwrap().offset, 7);
    assert!(
        log.read_blocking("t", 0, ReadFrom::Offset(10), limits)
            .unwrap()
            .is_empty()
    );
    let err = log
        .read_blocking("t", 0, ReadFrom::Offset(11), limits)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 11,
                end_offset: 10,
                ..
            }
        ),
        "{err}"
    );
    let two = log
        .read_blocking(
            "t",
            0,
            ReadFrom::Start,
            ReadLimits {
                max_records: 2,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
    assert_eq!(two.len(), 2);
}

#[test]
fn headers_event_time_and_tombstones_round_trip() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    topic(&log, "t", 1);
    let mut r = AppendRecord::new("t", "v")
        .with_key("k")
        .with_event_time(-42)
        .with_header("h", Some(bytes("x")));
    r = r.with_header("empty", None);
    let mut tomb = AppendRecord::new("t", "").with_key("k");
    tomb.value = None;
    append(&log, vec![r.clone(), tomb]);
    let back = read_all(&log, "t", 0);
    assert_eq!(back[0].headers, r.headers);
    assert_eq!(back[0].event_time, Some(-42));
    assert_eq!(back[1].value, None);
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let fs = SimFs::new();
    let log = open_sim(&fs, options());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        log.create_topic("b", TopicConfig::with_partitions(2))
            .await
            .unwrap();
        log.create_topic("a", TopicConfig::default()).await.unwrap();
        let err = log
            .create_topic("a", TopicConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LogError::TopicExists { .. }));
        let err = log
            .create_topic("bad name", TopicConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, LogError::InvalidTopicName { .. }), "{err}");
        let err = log
            .create_topic("z", TopicConfig::with_partitions(0))
            .await
            .unwrap_err();
        assert!(matches!(err, LogError::InvalidArgument(_)), "{err}");
        let names: Vec<String> = log
            .list_topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        log.append(AppendBatch::new(vec![rec("b", "k", "v")]))
            .await
            .unwrap();
        let d = log.describe_topic("b").await.unwrap();
        assert_eq!(d.partitions.len(), 2);
        assert_eq!(d.partitions.iter().map(|p| p.end_offset).sum::<u64>(), 1);
        log.delete_topic("b").await.unwrap();
        assert!(matches!(
            log.describe_topic("b").await.unwrap_err(),
            LogError::TopicNotFound { .. }
        ));
        // A new topic with the old name starts empty.
        log.create_topic("b", TopicConfig::with_partitions(2))
            .await
            .unwrap();
        let d = log.describe_topic("b").await.unwrap();
        assert_eq!(d.partitions.iter().map(|p| p.end_offset).sum::<u64>(), 0);
    });
    drop(log);
    let log = open_sim(&fs, options());
    assert_eq!(
        read_all(&log, "b", 0).len() + read_all(&log, "b", 1).len(),
        0
    );
}

#[test]
fn a_second_process_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), options()).unwrap();
    // Same process, second open: the lock is per open file description, so
    // a second open in the same process also fails.
    let err = EmbeddedLog::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(log);
    EmbeddedLog::open(
        dir.path(),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
}

#[test]
fn follow_wakes_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(EmbeddedLog::open(dir.path(), options()).unwrap());
    topic(&log, "t", 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let head = log.head_log_time();
        let writer = log.clone();
        let handle = tokio::task::spawn_blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            append(&writer, vec![rec("t", "k", "v")])
        });
        let started = std::time::Instant::now();
        let token = log
            .wait_for_commit(head, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        let appended = handle.await.unwrap();
        assert_eq!(token, appended.token);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // And a timeout returns the unchanged head.
        let same = log
            .wait_for_commit(token.log_time(), std::time::Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(same, token);
    });
}

/// Concurrent single-record appenders share syncs (group commit), and every
/// record still gets a dense offset and a unique log time.
#[test]
fn concurrent_appenders_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(EmbeddedLog::open(dir.path(), options()).unwrap());
    topic(&log, "t", 2);
    let (threads, each) = (8, 40);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|i| {
                        let r = append(&log, vec![rec("t", &format!("k{t}"), &format!("{t}-{i}"))]);
                        r.positions[0].log_time
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut times: Vec<LogTime> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), threads * each, "log times are unique");
    let m = log.metrics();
    assert_eq!(m.transactions, (threads * each) as u64);
    assert!(
        m.transactions >= 2 * m.syncs,
        "{} appends took {} syncs: group commit should share them",
        m.transactions,
        m.syncs
    );
    let total: usize = (0..2)
        .map(|p| {
            let records = read_all(&log, "t", p);
            assert!(
                records
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.offset == i as u64)
            );
            records.len()
        })
        .sum();
    assert_eq!(total, threads * each);
}

/// Segments roll by age as well as by size; the old one is sealed with its
/// index, and everything stays readable across the roll and a reopen.
#[test]
fn segments_roll_by_age() {
    let fs = SimFs::new();
    let opts = LogOptions {
        segment_age_max: std::time::Duration::from_millis(30),
        ..options()
    };
    let segments = |fs: &SimFs, suffix: &str| {
        fs.files()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == suffix))
            .count()
    };
    let log = open_sim(&fs, opts.clone());
    topic(&log, "t", 1);
    append(&log, vec![rec("t", "a", "1")]);
    append(&log, vec![rec("t", "a", "2")]);
    assert_eq!(segments(&fs, "kseg"), 1, "young segment: no roll");
    std::thread::sleep(std::time::Duration::from_millis(40));
    append(&log, vec![rec("t", "a", "3")]);
    assert_eq!(segments(&fs, "kseg"), 2, "old segment: rolled");
    assert_eq!(segments(&fs, "kidx"), 1, "the sealed segment has its index");
    drop(log);
    let log = open_sim(&fs, opts);
    let values: Vec<String> = read_all(&log, "t", 0).iter().map(value).collect();
    assert_eq!(values, ["1", "2", "3"]);
}
