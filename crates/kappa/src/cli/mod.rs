//! One module per command.

pub mod check;
pub mod consume;
pub mod engine;
pub mod produce;
pub mod quickstart;
pub mod regen;
pub mod serve;
pub mod sql;
pub mod subscribe;
pub mod table;
pub mod target;
pub mod topic;
pub mod view;

use kappa_log_embedded::{EmbeddedLog, LogOptions};
use std::path::Path;

/// Opens the data directory for this command.
pub fn open(data_dir: &Path) -> anyhow::Result<EmbeddedLog> {
    EmbeddedLog::open(data_dir, LogOptions::default()).map_err(|e| {
        let held = matches!(e, kappa_log::LogError::Locked { .. });
        let e = anyhow::Error::new(e)
            .context(format!("cannot open data directory {}", data_dir.display()));
        match engine::ServerMarker::read(data_dir) {
            Some(url) if held => e.context(format!(
                "a Kappa server holds {} and serves it at {url}; use --server {url} (or KAPPA_SERVER) to go through it, or stop it first",
                data_dir.display()
            )),
            _ => e,
        }
    })
}

/// A point in the log: a token (`kt1-...`), microseconds, or a timestamp.
pub fn parse_point(s: &str) -> anyhow::Result<kappa_log::LogTime> {
    kappa_server::point::parse_point(s).map_err(|e| anyhow::anyhow!(e))
}
