//! Views and topics as JSON: what `GET /v1/views/{view}`, `GET
//! /v1/topics`, `kappa status`, `kappa view describe` and `kappa topic`
//! show (the CLI builds it the same way when it opens a data directory
//! itself).

use kappa_engine::schema::TopicDef;
use kappa_engine::{Engine, EngineError, ViewDef};
use serde_json::{Value, json};

pub async fn view_json(engine: &Engine, def: &ViewDef) -> Result<Value, EngineError> {
    let status = engine.view_status(&def.name).await?;
    Ok(json!({
        "name": def.name,
        "sql": def.sql,
        "version": status.version,
        "previous_version": status.previous_version,
        "verify_every_seconds": def.verify_every_micros.map(|m| m as f64 / 1e6),
        "last_verify": status.last_verify.map(|v| json!({
            "at": kappa_log::LogTime(v.at).to_rfc3339(),
            "version": v.version,
            "frontier": kappa_log::LogTime(v.frontier).to_rfc3339(),
            "identical": v.identical,
            "differing": v.differing,
            "only_live": v.only_live,
            "only_rebuilt": v.only_rebuilt,
        })),
        "replacing": status.replacing.map(|r| json!({
            "version": r.version,
            "frontier": r.frontier.to_rfc3339(),
            "lag_ms": r.lag_micros as f64 / 1e3,
            "rate": (r.rate * 10.0).round() / 10.0,
            "records_applied": r.records_applied,
            "records_remaining": r.records_remaining,
            "eta_seconds": r.eta_seconds.map(|s| (s * 10.0).round() / 10.0),
        })),
        "snapshots": engine
            .snapshots(&def.name)
            .await?
            .iter()
            .map(snapshot_json)
            .collect::<Vec<_>>(),
        "history_seconds": def.history_micros as f64 / 1e6,
        "frontier": status.frontier.to_rfc3339(),
        "lag_ms": status.lag_micros as f64 / 1e3,
        "rate": (status.rate * 10.0).round() / 10.0,
        "records_applied": status.records_applied,
        "history_start": status.history_start.to_rfc3339(),
        "dead_letters": status.dead_letters,
        "late_records": status.late_records,
    }))
}

/// A snapshot file, as status and `POST .../snapshot` show it.
pub fn snapshot_json(s: &kappa_engine::SnapshotInfo) -> Value {
    json!({
        "path": s.path.display().to_string(),
        "version": s.version,
        "frontier": kappa_log::LogTime(s.frontier).to_rfc3339(),
        "token": kappa_log::Token::at(kappa_log::LogTime(s.frontier)).to_string(),
        "rows": s.rows,
        "state_entries": s.state_entries,
        "bytes": s.bytes,
        "created_at": kappa_log::LogTime(s.created_at).to_rfc3339(),
    })
}

/// Every topic: name, partitions, policy and schema.
pub async fn topics_json(engine: &Engine) -> Result<Value, EngineError> {
    let defs = engine.topics().await;
    let mut topics = Vec::new();
    for info in engine.log().list_topics().await? {
        let def = defs.iter().find(|d| d.name == info.name);
        topics.push(json!({
            "name": info.name,
            "partitions": info.config.partitions,
            "config": info.config,
            "schema": def.map(schema_json).unwrap_or(Value::Null),
        }));
    }
    Ok(json!({ "topics": topics }))
}

/// One topic: its policy, schema and every partition's extent.
pub async fn topic_json(engine: &Engine, topic: &str) -> Result<Value, EngineError> {
    let d = engine.log().describe_topic(topic).await?;
    let def = engine.topic(topic).await;
    Ok(json!({
        "name": d.info.name,
        "partitions": d.info.config.partitions,
        "config": d.info.config,
        "created": d.info.created.to_rfc3339(),
        "schema": def.as_ref().map(schema_json).unwrap_or(Value::Null),
        "extents": d.partitions,
    }))
}

/// A topic's schema; `null` columns for raw JSON.
fn schema_json(def: &TopicDef) -> Value {
    json!({
        "columns": def.columns.as_ref().map(|cols| cols.iter().map(|c| json!({
            "name": c.name,
            "type": c.ty.sql_name(),
            "not_null": c.not_null,
        })).collect::<Vec<_>>()),
        "key": def.key,
        "event_time": def.event_time,
    })
}

/// What `verify` found, as JSON.
pub fn verify_json(view: &str, r: &kappa_engine::verify::VerifyReport) -> Value {
    json!({
        "view": view,
        "version": r.version,
        "frontier": r.frontier.to_rfc3339(),
        "identical": r.identical(),
        "rows": r.rows,
        "only_live": r.only_live,
        "only_rebuilt": r.only_rebuilt,
        "differing": r.differing,
        "first_differences": r.first.iter().map(|d| json!({
            "live": d.live,
            "rebuilt": d.rebuilt,
        })).collect::<Vec<_>>(),
    })
}
