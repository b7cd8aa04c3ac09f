//! One module per step. Each returns its figures, ratios to the floors
//! they relate to, latency distributions and rates over time.

pub mod ingest;
pub mod live;
pub mod query;
pub mod rebuild;
pub mod replay;
pub mod subscribe;

use super::report::StepReport;
use std::future::Future;
use std::pin::Pin;

pub type StepFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<StepReport>> + 'a>>;

/// A step after the replay, run on the bench with the floors.
pub type StepFn = for<'a> fn(&'a mut super::Bench, &'a super::floors::Floors) -> StepFuture<'a>;

/// Polls the bench view's progress every 20 ms until `done`, feeding
/// the bar and the timeline with `applied`; returns how long it took
/// from `started`.
pub async fn follow(
    b: &super::Bench,
    bar: &indicatif::ProgressBar,
    timeline: &mut super::stats::Timeline,
    started: std::time::Instant,
    done: impl Fn(&super::instance::ViewProgress) -> bool,
    applied: impl Fn(&super::instance::ViewProgress) -> u64,
) -> anyhow::Result<std::time::Duration> {
    loop {
        let p = b.instance.progress(&b.view).await?;
        let finished = done(&p);
        let elapsed = started.elapsed();
        bar.set_position(applied(&p));
        timeline.at(applied(&p));
        if finished {
            return Ok(elapsed);
        }
        if elapsed > std::time::Duration::from_secs(3600) {
            anyhow::bail!("view {} did not catch up within an hour", b.view);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
