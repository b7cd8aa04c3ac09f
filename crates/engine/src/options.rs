//! How an engine runs ([`EngineOptions`]) and how a query waits for the
//! log ([`QueryOptions`]).

use kappa_log::Token;
use std::time::Duration;

/// How an engine runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Memory for view state (groups in memory and changes not yet
    /// committed), shared equally by the views. The store's page cache is
    /// set apart, in its own options.
    pub memory_budget: usize,
    /// A view applies the log in batches of at most this many records
    /// (and 32 MiB): large batches make replay fast, and a live step is
    /// whatever arrived since the last one.
    pub batch_records: usize,
    /// How long a view's previous version is kept for rollback after a
    /// replace, before its state is freed.
    pub keep_previous: Duration,
    /// Where `kappa view snapshot` writes snapshots not given a path.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// Threads a view's catch-up (a first replay, a version being built)
    /// keeps busy: one reads, decodes, applies and commits in turn; more
    /// decode ahead of the operators and commit behind them. Default: one
    /// per core.
    pub workers: usize,
    /// With more than one worker, a catch-up writes the changes it has
    /// applied (the view's history) to the store ahead of the commit that
    /// reaches them, once this many bytes of them are encoded (and seals
    /// history blocks at this size, up to 252 KiB): the disk takes them
    /// while the operators go on, not in the catch-up's last commit.
    pub stage_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_budget: 1 << 30,
            batch_records: 50_000,
            keep_previous: Duration::from_secs(24 * 3600),
            snapshot_dir: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            stage_bytes: 2 << 20,
        }
    }
}

/// How a query waits for the log.
#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    /// Answer only once the views read have applied the log up to this.
    pub after: Option<Token>,
    /// How long to wait for that.
    pub timeout: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            after: None,
            timeout: Duration::from_secs(10),
        }
    }
}
