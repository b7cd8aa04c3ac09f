//! Subscription fan-out: subscribers on the view (each gets its
//! snapshot, then every change), appends at the set rate; how long each
//! change takes from its append to every subscriber, and whether every
//! subscriber got every change exactly once.

use crate::bench::floors::Floors;
use crate::bench::report::StepReport;
use crate::bench::stats::Latency;
use crate::bench::{Bench, Step};
use anyhow::bail;
use kappa_log::LogTime;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(10);
/// How long the subscribers may take to get their snapshots, and the last
/// changes after the appends stop.
const PATIENCE: Duration = Duration::from_secs(60);

type Received = Arc<Mutex<Vec<(LogTime, Instant)>>>;

pub async fn run(b: &mut Bench, floors: &Floors) -> anyhow::Result<StepReport> {
    let n = b.settings.subscribers.max(1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let received: Vec<Received> = (0..n).map(|_| Received::default()).collect();
    let mut ready = Vec::new();
    let Bench {
        instance,
        generator,
        expected,
        topic,
        view,
        last,
        bars,
        settings,
        ..
    } = b;
    let instance = &*instance;
    let subscribers = futures_util::future::try_join_all(received.iter().map(|r| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        let r = r.clone();
        instance.subscribe(
            view,
            move |t, at| r.lock().expect("not poisoned").push((t, at)),
            stop_rx.clone(),
            tx,
        )
    }));
    let bar = bars.seconds("subscribe", settings.duration_s, "subscribing");
    let driver = async {
        let mut snapshot = Vec::new();
        for rx in ready {
            match tokio::time::timeout(PATIENCE, rx).await {
                Ok(Ok(d)) => snapshot.push(d),
                _ => bail!("a subscriber got no snapshot within {PATIENCE:?}"),
            }
        }
        bar.set_message("appending");
        let per_tick = ((settings.rate as f64 * TICK.as_secs_f64()).round() as usize).max(1);
        let ticks = (settings.duration_s / TICK.as_secs_f64()).ceil() as usize;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // (log time after the batch, when its append started)
        let mut appends: Vec<(LogTime, Instant)> = Vec::with_capacity(ticks);
        let started = Instant::now();
        let mut sent = 0usize;
        for i in 0..ticks {
            interval.tick().await;
            let batch: Vec<bytes::Bytes> = (0..per_tick)
                .map(|_| {
                    let r = generator.next_record();
                    expected.add(&r);
                    r.value
                })
                .collect();
            sent += batch.len();
            let t = Instant::now();
            let at = instance.append(topic, batch).await?;
            appends.push((at, t));
            *last = (*last).max(Some(at));
            if i % 10 == 0 {
                bar.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
            }
        }
        let appending = started.elapsed();
        bar.set_message("waiting for the last changes");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let counts: Vec<usize> = received
                .iter()
                .map(|r| r.lock().expect("not poisoned").len())
                .collect();
            if counts.iter().all(|c| *c >= sent) {
                break;
            }
            if Instant::now() > deadline {
                bail!("after {PATIENCE:?}, subscribers had {counts:?} of the {sent} changes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop_tx.send(true);
        anyhow::Ok((snapshot, appends, sent, appending))
    };
    let (subscribed, driven) = tokio::join!(subscribers, driver);
    let (snapshot, appends, sent, appending) = driven?;
    subscribed?;
    bar.finish_and_clear();
    let mut latencies = Vec::new();
    let mut last_arrival = None;
    for (i, r) in received.iter().enumerate() {
        let r = r.lock().expect("not poisoned");
        if r.len() != sent {
            bail!(
                "subscriber {i} got {} changes for {sent} records (each record changes one row once)",
                r.len()
            );
        }
        for &(t, arrived) in r.iter() {
            // The append whose position is the first at or after t.
            let k = appends.partition_point(|(at, _)| *at < t);
            let Some(&(_, began)) = appends.get(k) else {
                bail!(
                    "subscriber {i} got a change at {} after the last append",
                    t.to_rfc3339()
                );
            };
            latencies.push(arrived.saturating_duration_since(began));
            last_arrival = last_arrival.max(Some(arrived));
        }
    }
    let first = appends.first().map(|a| a.1);
    let mut r = StepReport::new(Step::Subscribe);
    r.figure("subscribers", n as f64, "");
    r.figure(
        "appended",
        sent as f64 / appending.as_secs_f64(),
        "records/s",
    );
    if let (Some(first), Some(last)) = (first, last_arrival) {
        let secs = last.duration_since(first).as_secs_f64();
        r.figure("delivered", (sent * n) as f64 / secs, "changes/s");
    }
    if let Some(l) = Latency::of(&snapshot) {
        r.latency("snapshot", l, None);
    }
    if let Some(l) = Latency::of(&latencies) {
        r.latency(
            "append to subscriber",
            l,
            Some((floors.fdatasync.p50_us, "fdatasync p50")),
        );
    }
    Ok(r)
}
