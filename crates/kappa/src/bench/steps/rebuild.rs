//! Rebuild: the view's next version built from the log beside the live
//! one and swapped in, with 1 backfill worker and with N (embedded; a
//! server rebuilds with its own setting). Embedded, the rebuilds run in
//! the order 1, N, N, 1 and each figure is the mean of its two runs, so a
//! drift over the step (the store growing with each version) weighs on
//! both alike.

use crate::bench::floors::Floors;
use crate::bench::instance::Instance;
use crate::bench::report::StepReport;
use crate::bench::stats::Timeline;
use crate::bench::{Bench, Step};
use std::collections::BTreeMap;
use std::time::Instant;

pub async fn run(b: &mut Bench, floors: &Floors) -> anyhow::Result<StepReport> {
    let mut r = StepReport::new(Step::Rebuild);
    let n = b.settings.workers;
    let runs: Vec<Option<usize>> = match b.instance {
        Instance::Embedded(_) if n > 1 => vec![Some(1), Some(n), Some(n), Some(1)],
        Instance::Embedded(_) => vec![Some(1)],
        Instance::Server(_) => vec![None],
    };
    let records = b.expected.records();
    // Rates by worker count (`None`: the server's), in run order.
    let mut rates: BTreeMap<Option<usize>, Vec<f64>> = BTreeMap::new();
    for workers in runs {
        let label = label(workers);
        let before = b.instance.progress(&b.view).await?.version;
        let bar = b.bars.records("rebuild", records);
        bar.set_message(label.clone());
        let started = Instant::now();
        let mut timeline = Timeline::start();
        b.instance.rebuild(&b.view, workers).await?;
        let elapsed = super::follow(
            b,
            &bar,
            &mut timeline,
            started,
            |p| p.version > before && p.building.is_none(),
            |p| {
                p.building
                    .unwrap_or(if p.version > before { records } else { 0 })
            },
        )
        .await?;
        bar.finish_and_clear();
        let runs = rates.entry(workers).or_default();
        if runs.is_empty() {
            r.timeline.push((label, timeline.series()));
        }
        runs.push(records as f64 / elapsed.as_secs_f64());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    for (workers, runs) in &rates {
        r.figure(
            &format!("{}: records/s", label(*workers)),
            mean(runs),
            "records/s",
        )
        .ratio(floors.json_fold_records_s, "JSON parse-and-fold");
    }
    if let (Some(one), Some(many)) = (rates.get(&Some(1)), rates.get(&Some(n)))
        && n > 1
    {
        r.figure(
            &format!("{n} workers / 1 worker"),
            mean(many) / mean(one),
            "x",
        );
    }
    if let Instance::Embedded(e) = &b.instance {
        // Leave the engine as it was opened.
        e.opened.engine.set_workers(n);
    }
    Ok(r)
}

fn label(workers: Option<usize>) -> String {
    match workers {
        None => "server's workers".to_string(),
        Some(1) => "1 worker".to_string(),
        Some(w) => format!("{w} workers"),
    }
}
