//! One module per command.

pub mod check;
pub mod consume;
pub mod produce;
pub mod quickstart;
pub mod topic;

use anyhow::Context;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use std::path::Path;

/// Opens the data directory for this command.
pub fn open(data_dir: &Path) -> anyhow::Result<EmbeddedLog> {
    EmbeddedLog::open(data_dir, LogOptions::default())
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))
}
