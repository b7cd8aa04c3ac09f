//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use kappa_engine::{Engine, Output};
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use kappa_store::{RedbStore, StoreOptions};
use std::path::Path;
use std::sync::Arc;

pub fn open(dir: &Path) -> Engine {
    open_with(dir, kappa_engine::EngineOptions::default().memory_budget)
}

/// An engine whose views may hold `budget` bytes in memory.
pub fn open_with(dir: &Path, budget: usize) -> Engine {
    let log = EmbeddedLog::open(
        dir.join("log"),
        LogOptions {
            cleaner_interval: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let store = RedbStore::open(&dir.join("state.redb"), &StoreOptions::default()).unwrap();
    let options = kappa_engine::EngineOptions {
        memory_budget: budget,
    };
    Engine::open_with(Arc::new(log), Arc::new(store), options).unwrap()
}

/// Rows as sorted text, floats to 9 significant digits (sums in another
/// order differ in the last bits).
pub fn table(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "NULL".to_string()
                    } else if matches!(c.data_type(), DataType::Float64 | DataType::Float32) {
                        let v: f64 = array_value_to_string(c, i).unwrap().parse().unwrap();
                        format!("{v:.8e}")
                    } else {
                        array_value_to_string(c, i).unwrap()
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    rows.sort();
    rows
}

pub async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    match engine.execute(sql).await.unwrap() {
        Output::Rows(b) => table(&b),
        other => panic!("{sql}: {other:?}"),
    }
}
