//! Rebuild: the view's next version built from the log beside the live
//! one and swapped in, with 1 backfill worker and then N (embedded; a
//! server rebuilds with its own setting).

use crate::bench::floors::Floors;
use crate::bench::instance::Instance;
use crate::bench::report::StepReport;
use crate::bench::stats::Timeline;
use crate::bench::{Bench, Step};
use std::time::Instant;

pub async fn run(b: &mut Bench, floors: &Floors) -> anyhow::Result<StepReport> {
    let mut r = StepReport::new(Step::Rebuild);
    let runs: Vec<Option<usize>> = match b.instance {
        Instance::Embedded(_) => {
            let mut w = vec![Some(1)];
            if b.settings.workers > 1 {
                w.push(Some(b.settings.workers));
            }
            w
        }
        Instance::Server(_) => vec![None],
    };
    let records = b.expected.records();
    let mut rates = Vec::new();
    for workers in runs {
        let label = workers.map_or_else(
            || "server's workers".to_string(),
            |w| format!("{w} worker{}", if w == 1 { "" } else { "s" }),
        );
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
        let rate = records as f64 / elapsed.as_secs_f64();
        r.figure(&format!("{label}: records/s"), rate, "records/s")
            .ratio(floors.json_fold_records_s, "JSON parse-and-fold");
        r.timeline.push((label, timeline.series()));
        rates.push(rate);
    }
    if let [one, .., n] = rates[..] {
        r.figure(
            &format!("{} workers / 1 worker", b.settings.workers),
            n / one,
            "x",
        );
    }
    if let Some(e) = match &b.instance {
        Instance::Embedded(e) => Some(e),
        Instance::Server(_) => None,
    } {
        // Leave the engine as it was opened.
        e.opened.engine.set_workers(b.settings.workers);
    }
    Ok(r)
}
