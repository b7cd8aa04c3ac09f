//! The engine: SQL (DataFusion), topic schemas, views kept incrementally
//! from the log with Kappa's own operators, and pull queries over topics and
//! views, now or AS OF a point.
//!
//! Map: `sql/` parses Kappa's statements; `schema` gives topics their table form
//! and `decode` checks records into it; `plan` turns a view's SELECT into stages;
//! `ops/` holds the incremental operators; `view` runs a view from its
//! frontier (replay and live are one loop); `live` keeps views current
//! and waits for tokens; `feed` serves change feeds; `query` serves pull queries; `window_table` gives
//! TUMBLE and HOP;
//! `value` is the stored encoding of rows; `engine` ties them together.

mod append;
mod committer;
pub mod dead_letters;
pub mod decode;
mod engine;
mod error;
pub mod feed;
mod history;
pub mod live;
pub mod memory;
pub mod ops;
mod options;
mod pending;
pub mod plan;
pub mod query;
pub mod rate;
mod reading;
pub mod regen;
mod scan;
pub mod schema;
mod shards;
pub mod snapshot;
pub mod sql;
mod status;
#[cfg(test)]
mod test_rng;
pub mod value;
pub mod verify;
pub mod view;
pub mod window_table;

pub use append::JsonAppend;
pub use engine::{Engine, EngineOptions, Output, QueryOptions, ViewDef};
pub use error::EngineError;
pub use snapshot::file::{SnapshotHeader, SnapshotInfo};
pub use snapshot::{FromSnapshot, RebuildOptions};
pub use status::ViewStatus;
