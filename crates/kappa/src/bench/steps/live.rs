//! Live latency: appends at a steady rate while the view is maintained;
//! for each append, the time until a query that carries its token
//! answers (append to visible), and of that, the append's own (durable
//! in the log), and the log's longest fsync before and after (embedded),
//! so that a slow disk is told from a slow view.

use crate::bench::floors::Floors;
use crate::bench::report::StepReport;
use crate::bench::stats::{Latency, Timeline};
use crate::bench::{Bench, Step};
use kappa_workload::Generator;
use std::time::{Duration, Instant};

/// Appends in flight at most; past it the rate is what the instance
/// sustains (reported as the achieved rate).
const IN_FLIGHT: usize = 64;
/// One append per tick.
const TICK: Duration = Duration::from_millis(10);

pub async fn run(b: &mut Bench, floors: &Floors) -> anyhow::Result<StepReport> {
    let fsync_before = b.instance.log_fsync_max();
    let (latencies, appends, sent, elapsed, timeline) = paced(b, "live").await?;
    let mut r = StepReport::new(Step::Live);
    r.figure("achieved", sent as f64 / elapsed.as_secs_f64(), "records/s");
    r.figure("target", b.settings.rate as f64, "records/s");
    if let Some(l) = Latency::of(&latencies) {
        r.latency(
            "append to visible",
            l,
            Some((floors.fdatasync.p50_us, "fdatasync p50")),
        );
    }
    if let Some(l) = Latency::of(&appends) {
        r.latency(
            "append (durable)",
            l,
            Some((floors.fdatasync.p50_us, "fdatasync p50")),
        );
    }
    // The log's longest fsync before and after the step: a stall of the
    // disk during it shows as a rise.
    if let (Some(before), Some(after)) = (fsync_before, b.instance.log_fsync_max()) {
        r.figure(
            "longest log fsync before the step",
            before.as_micros() as f64,
            "µs",
        );
        r.figure(
            "longest log fsync after the step",
            after.as_micros() as f64,
            "µs",
        );
    }
    r.timeline.push(("live appends".into(), timeline.series()));
    Ok(r)
}

/// Appends for the configured duration at the configured rate, each
/// append followed by a query with its token (on the batch's first
/// account); returns the latencies, the appends' own, the records sent,
/// the time taken and the appends over time.
async fn paced(
    b: &mut Bench,
    name: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, u64, Duration, Timeline)> {
    use futures_util::StreamExt;
    let per_tick = ((b.settings.rate as f64 * TICK.as_secs_f64()).round() as usize).max(1);
    let ticks = (b.settings.duration_s / TICK.as_secs_f64()).ceil() as usize;
    let bar = b.bars.seconds(name, b.settings.duration_s, "appending");
    let Bench {
        instance,
        generator,
        expected,
        topic,
        view,
        last,
        ..
    } = b;
    let instance = &*instance;
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inflight = futures_util::stream::FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(ticks);
    let mut appends = Vec::with_capacity(ticks);
    let mut timeline = Timeline::start();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut i = 0;
    while i < ticks {
        // The appends in flight progress only while polled: wait for the
        // next tick and for them together.
        tokio::select! {
            done = inflight.next(), if !inflight.is_empty() => {
                if let Some(done) = done {
                    let (latency, append, at) = done?;
                    latencies.push(latency);
                    appends.push(append);
                    *last = (*last).max(Some(at));
                }
                continue;
            }
            _ = interval.tick() => {}
        }
        i += 1;
        if inflight.len() >= IN_FLIGHT {
            // Past what the instance sustains: this tick is skipped (the
            // achieved rate says so).
            continue;
        }
        let mut account = String::new();
        let batch: Vec<bytes::Bytes> = (0..per_tick)
            .map(|_| {
                let r = generator.next_record();
                expected.add(&r);
                if account.is_empty() {
                    account = Generator::account_name(r.account);
                }
                r.value
            })
            .collect();
        sent += batch.len() as u64;
        timeline.at(sent);
        let (topic, view) = (topic.clone(), view.clone());
        inflight.push(async move {
            let t = Instant::now();
            let at = instance.append(&topic, batch).await?;
            let append = t.elapsed();
            instance
                .query(
                    &format!("SELECT n FROM {view} WHERE account = '{account}'"),
                    Some(at),
                )
                .await?;
            anyhow::Ok((t.elapsed(), append, at))
        });
        if i % 10 == 0 {
            bar.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
        }
    }
    let elapsed = started.elapsed();
    while let Some(done) = inflight.next().await {
        let (latency, append, at) = done?;
        latencies.push(latency);
        appends.push(append);
        *last = (*last).max(Some(at));
    }
    drop(inflight);
    bar.finish_and_clear();
    Ok((latencies, appends, sent, elapsed, timeline))
}
