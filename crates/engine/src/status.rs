//! A view's status: what `kappa status`, `GET /v1/views/{view}` and the
//! metrics report.

use crate::{Engine, EngineError};
use kappa_log::LogTime;

/// What [`Engine::view_status`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewStatus {
    /// Every record up to here is applied.
    pub frontier: LogTime,
    /// How far the log's head is past the frontier, in microseconds.
    pub lag_micros: u64,
    /// The earliest point AS OF and change feeds can read.
    pub history_start: LogTime,
    /// Records the view could not evaluate (see `Engine::dead_letters`).
    pub dead_letters: u64,
    /// Records that came after their event-time window closed (its end
    /// plus the allowed lateness), and were left out of it.
    pub late_records: u64,
    /// Records applied per second, over the last 10 seconds.
    pub rate: f64,
    /// Records applied since this process opened the engine.
    pub records_applied: u64,
    /// The live version (1 at creation, one more per replace or rebuild).
    pub version: u32,
    /// The next version, while it is being built.
    pub replacing: Option<crate::regen::Replacing>,
    /// The previous version, kept for rollback.
    pub previous_version: Option<u32>,
    /// The last verify against a rebuild from the log.
    pub last_verify: Option<crate::verify::VerifyOutcome>,
}

impl Engine {
    /// A view's status: where it is, how far behind the log, how much
    /// history it keeps, how many records it could not evaluate, and how
    /// many came too late for their window.
    pub async fn view_status(&self, view: &str) -> Result<ViewStatus, EngineError> {
        let def = match self.view(view).await {
            Some(def) => def,
            // Restored from a snapshot, or rebuilt in place: the version
            // being built is all there is.
            None => self
                .inner
                .lock()
                .await
                .pending
                .get(view)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(view.to_string()))?,
        };
        let (id, def_history, version) = (def.id, def.history_micros, def.version);
        let replacing = self.replacing(view).await?;
        let previous_version = self.previous_version(view).await;
        let last_verify = self.last_verify(view).await;
        let (rate, records_applied) = self
            .inner
            .lock()
            .await
            .meters
            .get(view)
            .map_or((0.0, 0), |m| (m.per_second(), m.total()));
        let head = self.log.head().await?.log_time();
        let read = self.store.read()?;
        let meta = read.meta(id)?.unwrap_or_default();
        let mut dead_letters = 0;
        read.state_prefix(id, &[crate::view::DEAD_LETTER_PREFIX], &mut |_, _| {
            dead_letters += 1;
            true
        })?;
        let late_records = read
            .state(id, crate::ops::window::WINDOW_STATE_KEY)?
            .and_then(|b| crate::ops::window::WindowState::decode(&b))
            .map_or(0, |s| s.late);
        Ok(ViewStatus {
            last_verify,
            version,
            replacing,
            previous_version,
            rate,
            records_applied,
            late_records,
            frontier: LogTime(meta.frontier),
            lag_micros: head.0.saturating_sub(meta.frontier),
            history_start: LogTime(crate::query::window_start(&meta, def_history)),
            dead_letters,
        })
    }
}
