//! A view's status as JSON: what `GET /v1/views/{view}`, `kappa status`
//! and `kappa view describe` show (the CLI builds it the same way when it
//! opens a data directory itself).

use kappa_engine::{Engine, EngineError, ViewDef};
use serde_json::{Value, json};

pub async fn view_json(engine: &Engine, def: &ViewDef) -> Result<Value, EngineError> {
    let status = engine.view_status(&def.name).await?;
    Ok(json!({
        "name": def.name,
        "sql": def.sql,
        // Versions come with regeneration (CREATE OR REPLACE VIEW).
        "version": 1,
        "history_seconds": def.history_micros as f64 / 1e6,
        "frontier": status.frontier.to_rfc3339(),
        "lag_ms": status.lag_micros as f64 / 1e3,
        "history_start": status.history_start.to_rfc3339(),
        "dead_letters": status.dead_letters,
        "late_records": status.late_records,
    }))
}
