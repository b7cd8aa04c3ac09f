//! How an embedded log is opened.

use std::time::Duration;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After `fdatasync` (the default): an acknowledged append survives power loss.
    Sync,
    /// Relaxed, opt-in: acknowledged after the write, synced every this many
    /// milliseconds. Up to that much acknowledged data can be lost at power
    /// loss (not at a process crash), and readers may see records that power
    /// loss later takes away.
    IntervalMs(u64),
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    pub durability: Durability,
    /// Roll to a new segment when the active one would grow past this.
    pub segment_bytes_max: u64,
    /// Roll when the active segment is older than this (checked on append).
    pub segment_age_max: Duration,
    /// One group commit writes at most about this many bytes.
    pub group_bytes_max: usize,
    /// Group commit: how long the writer may wait for more appenders before
    /// it writes a group, when the previous group held several transactions
    /// (never for a lone appender, and never longer than the last
    /// `fdatasync` took). Concurrent appenders acknowledged together come
    /// back together; without the wait the first one back would start a new
    /// group alone and split them (see ARCHITECTURE.md, group commit).
    pub group_commit_wait: Duration,
    /// Limits on a single append call.
    pub batch_records_max: usize,
    pub batch_bytes_max: usize,
    /// How often retention and compaction run; `None` disables the background
    /// cleaner (tests drive it by hand with `run_cleaner`).
    pub cleaner_interval: Option<Duration>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Sync,
            segment_bytes_max: 128 << 20,
            segment_age_max: Duration::from_secs(24 * 3600),
            group_bytes_max: 8 << 20,
            group_commit_wait: Duration::from_micros(200),
            batch_records_max: 1_000_000,
            batch_bytes_max: 64 << 20,
            cleaner_interval: Some(Duration::from_secs(30)),
        }
    }
}
