//! Durable ingest: the workload's records appended in batches, several
//! appends in flight, each acknowledged only once it is on disk.

use crate::bench::floors::Floors;
use crate::bench::report::StepReport;
use crate::bench::stats::{Latency, Timeline};
use crate::bench::{Bench, Step};
use bytes::Bytes;
use kappa_log::LogTime;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub async fn run(
    b: &mut Bench,
    records: Vec<Bytes>,
    floors: &Floors,
) -> anyhow::Result<StepReport> {
    let total = records.len();
    let bytes: usize = records.iter().map(Bytes::len).sum();
    let batches: Arc<Vec<Vec<Bytes>>> = Arc::new(
        records
            .chunks(b.settings.batch)
            .map(<[Bytes]>::to_vec)
            .collect(),
    );
    drop(records);
    let bar = b.bars.records("ingest", total as u64);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // Each appender takes the next batch until none is left; it keeps
    // (when acknowledged, records, latency, log time) per append.
    let appenders = (0..b.settings.concurrency).map(|_| {
        let (batches, next, bar) = (batches.clone(), next.clone(), bar.clone());
        let instance = &b.instance;
        let topic = &b.topic;
        async move {
            let mut done: Vec<(Duration, usize, Duration, LogTime)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else {
                    return anyhow::Ok(done);
                };
                let t = Instant::now();
                let at = instance.append(topic, batch.clone()).await?;
                done.push((started.elapsed(), batch.len(), t.elapsed(), at));
                bar.inc(batch.len() as u64);
            }
        }
    });
    let results = futures_util::future::join_all(appenders).await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut appends = Vec::new();
    for r in results {
        appends.extend(r?);
    }
    appends.sort_by_key(|a| a.0);
    let mut timeline = Timeline::start();
    let mut sum = 0u64;
    for (at, n, _, _) in &appends {
        sum += *n as u64;
        timeline.point(at.as_secs_f64(), sum);
    }
    let mut times: Vec<LogTime> = appends.iter().map(|a| a.3).collect();
    times.sort();
    b.middle = times.get(times.len() / 2).copied();
    if let Some(t) = times.last() {
        b.saw(*t);
    }
    let secs = elapsed.as_secs_f64();
    let mb_s = bytes as f64 / 1e6 / secs;
    let mut r = StepReport::new(Step::Ingest);
    r.figure("records/s", total as f64 / secs, "records/s");
    r.figure("write rate", mb_s, "MB/s")
        .ratio(floors.disk_write_mb_s, "disk write rate with fdatasync");
    let latency = Latency::of(&appends.iter().map(|a| a.2).collect::<Vec<_>>());
    if let Some(l) = latency {
        r.latency(
            &format!("append of {}", b.settings.batch),
            l,
            Some((floors.fdatasync.p50_us, "fdatasync p50")),
        );
    }
    r.timeline.push(("ingest".into(), timeline.series()));
    Ok(r)
}
