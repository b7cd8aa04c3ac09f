//! Replay: a new view over the whole log, from offset 0 to the head.

use crate::bench::floors::Floors;
use crate::bench::report::StepReport;
use crate::bench::stats::Timeline;
use crate::bench::{Bench, Step};
use anyhow::Context;
use std::time::Instant;

pub async fn run(b: &mut Bench, floors: &Floors) -> anyhow::Result<StepReport> {
    let records = b.expected.records();
    let head = b.last.context("nothing was appended")?;
    let bar = b.bars.records("replay", records);
    let started = Instant::now();
    let mut timeline = Timeline::start();
    b.instance
        .execute(&format!(
            "CREATE VIEW {} AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM {} GROUP BY account",
            b.view, b.topic
        ))
        .await
        .context("cannot create the bench's view")?;
    let elapsed = super::follow(
        b,
        &bar,
        &mut timeline,
        started,
        |p| p.frontier >= head,
        |p| p.records_applied,
    )
    .await?;
    bar.finish_and_clear();
    let rate = records as f64 / elapsed.as_secs_f64();
    let mut r = StepReport::new(Step::Replay);
    r.figure("records/s", rate, "records/s")
        .ratio(floors.json_fold_records_s, "JSON parse-and-fold");
    r.figure("time", elapsed.as_secs_f64(), "s");
    r.timeline.push(("replay".into(), timeline.series()));
    Ok(r)
}
