//! SQL behaviour in data files (sqllogictest format): every file under
//! `tests/slt/` runs against a fresh embedded engine. Before each query the
//! views are brought up to the log's head, as the embedded CLI does.

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use kappa_engine::{Engine, EngineError, Output};
use sqllogictest::{DBOutput, DefaultColumnType};
use std::sync::Arc;

mod common;

struct Kappa(Arc<Engine>);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Kappa {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, EngineError> {
        self.0.catch_up().await?;
        match self.0.execute(sql).await? {
            Output::Done(_) => Ok(DBOutput::StatementComplete(0)),
            Output::Rows(batches) => {
                let mut types = Vec::new();
                let mut rows = Vec::new();
                for b in &batches {
                    if types.is_empty() {
                        types = b
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| match f.data_type() {
                                t if t.is_integer() => DefaultColumnType::Integer,
                                DataType::Float32 | DataType::Float64 => {
                                    DefaultColumnType::FloatingPoint
                                }
                                _ => DefaultColumnType::Text,
                            })
                            .collect();
                    }
                    for i in 0..b.num_rows() {
                        rows.push(
                            b.columns()
                                .iter()
                                .map(|c| {
                                    if c.is_null(i) {
                                        "NULL".to_string()
                                    } else {
                                        array_value_to_string(c, i).unwrap_or_default()
                                    }
                                })
                                .collect(),
                        );
                    }
                }
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "kappa"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

#[tokio::test]
async fn sql_behaviour_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", root.display());
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(common::open(dir.path()));
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok(Kappa(engine)) }
        });
        if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}: {e}", file.display());
        }
    }
}
