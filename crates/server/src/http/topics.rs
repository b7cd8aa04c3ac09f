//! `/v1/topics`: create (with an optional schema), list, describe.

use super::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State, rejection::JsonRejection};
use axum::http::StatusCode;
use kappa_engine::schema::TopicDef;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    name: String,
    #[serde(default = "one")]
    partitions: u32,
    /// Without columns the topic holds raw JSON.
    columns: Option<Vec<ColumnSpec>>,
    key: Option<String>,
    event_time: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    not_null: bool,
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The same statement `CREATE TOPIC` would be in SQL, so that both paths
/// check a definition the same way.
fn create_sql(c: &CreateTopic) -> Result<String, ApiError> {
    let mut sql = format!("CREATE TOPIC {}", ident(&c.name));
    if let Some(columns) = &c.columns {
        if columns.is_empty() {
            return Err(ApiError::bad_request(
                "\"columns\" is empty: give at least one column, or leave it out for a raw JSON topic",
            ));
        }
        let mut parts = Vec::new();
        for col in columns {
            // The type is a keyword: only letters, digits, spaces and parentheses.
            if !col
                .ty
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || " ()".contains(ch))
            {
                return Err(ApiError::bad_request(format!(
                    "column {:?}: {:?} is not a type (use TEXT, BIGINT, DOUBLE, BOOLEAN or TIMESTAMP)",
                    col.name, col.ty
                )));
            }
            let not_null = if col.not_null { " NOT NULL" } else { "" };
            parts.push(format!("{} {}{not_null}", ident(&col.name), col.ty));
        }
        sql += &format!(" ({})", parts.join(", "));
    }
    let mut with = vec![format!("partitions = {}", c.partitions)];
    if let Some(k) = &c.key {
        with.push(format!("key = {}", literal(k)));
    }
    if let Some(t) = &c.event_time {
        with.push(format!("event_time = {}", literal(t)));
    }
    sql += &format!(" WITH ({})", with.join(", "));
    Ok(sql)
}

pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(spec) = body
        .map_err(|e| ApiError::bad_request(format!("bad topic definition: {}", e.body_text())))?;
    let sql = create_sql(&spec)?;
    state.engine.execute(&sql).await?;
    let description = state.engine.log().describe_topic(&spec.name).await?;
    let def = state.engine.topic(&spec.name).await;
    Ok((
        StatusCode::CREATED,
        Json(describe_json(def.as_ref(), &description)),
    ))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let defs = state.engine.topics().await;
    let mut topics = Vec::new();
    for info in state.engine.log().list_topics().await? {
        let def = defs.iter().find(|d| d.name == info.name);
        topics.push(json!({
            "name": info.name,
            "partitions": info.config.partitions,
            "schema": def.map(schema_json).unwrap_or(Value::Null),
        }));
    }
    Ok(Json(json!({ "topics": topics })))
}

pub async fn describe(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let description = state.engine.log().describe_topic(&topic).await?;
    let def = state.engine.topic(&topic).await;
    Ok(Json(describe_json(def.as_ref(), &description)))
}

fn describe_json(def: Option<&TopicDef>, d: &kappa_log::TopicDescription) -> Value {
    json!({
        "name": d.info.name,
        "partitions": d.info.config.partitions,
        "config": d.info.config,
        "created": d.info.created.to_rfc3339(),
        "schema": def.map(schema_json).unwrap_or(Value::Null),
        "extents": d.partitions,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_becomes_quoted_sql() {
        let c: CreateTopic = serde_json::from_value(json!({
            "name": "tx",
            "partitions": 4,
            "columns": [{"name": "a\"b", "type": "TEXT", "not_null": true}],
            "key": "it's",
        }))
        .unwrap();
        assert_eq!(
            create_sql(&c).unwrap(),
            r#"CREATE TOPIC "tx" ("a""b" TEXT NOT NULL) WITH (partitions = 4, key = 'it''s')"#
        );
        let bad: CreateTopic = serde_json::from_value(json!({
            "name": "tx", "columns": [{"name": "a", "type": "TEXT); DROP"}],
        }))
        .unwrap();
        assert!(create_sql(&bad).is_err());
    }
}
