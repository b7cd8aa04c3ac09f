//! Kappa's embedded log.
//!
//! One journal per data directory: every append of every topic goes into the
//! same sequence of segment files, one frame per group commit, so a batch
//! spanning partitions and topics is atomic and concurrent appenders share one
//! `fdatasync`. Per-partition reads go through per-segment chunk indexes.
//! ARCHITECTURE.md and docs/format.md describe the design and the bytes.

mod buffers;
pub mod catalog;
pub mod check;
pub mod cleaner;
pub mod codec;
pub mod fs;
mod log;
pub mod merged;
pub mod metrics;
pub mod options;
mod prepare;
mod read;
mod recovery;
pub mod segment;
mod state;
mod truncate;
mod writer;

pub use cleaner::CleanerReport;
pub use log::EmbeddedLog;
pub use metrics::MetricsSnapshot;
pub use options::{Durability, LogOptions};
