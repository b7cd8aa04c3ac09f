//! `/v1/topics`: create (with an optional schema), list, describe.

use super::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State, rejection::JsonRejection};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

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
    /// `forever` (default), an age (`7d`) or a size per partition (`10GB`).
    retention: Option<String>,
    /// `delete` (default) or `compact`.
    cleanup: Option<String>,
    /// With `compact`: how long tombstones are kept (`1d`).
    tombstone_retention: Option<String>,
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
    for (option, value) in [
        ("event_time", &c.event_time),
        ("retention", &c.retention),
        ("cleanup", &c.cleanup),
        ("tombstone_retention", &c.tombstone_retention),
    ] {
        if let Some(v) = value {
            with.push(format!("{option} = {}", literal(v)));
        }
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
    let described = crate::status::topic_json(&state.engine, &spec.name).await?;
    Ok((StatusCode::CREATED, Json(described)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// A token (every record up to it goes) or a timestamp (every record
    /// before it goes).
    before: String,
}

/// `POST /v1/topics/{topic}/truncate`: drops the topic's history before
/// a point, once every view that reads it has a snapshot past it.
pub async fn truncate(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Result<Json<Truncate>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(spec) = body
        .map_err(|e| ApiError::bad_request(format!("bad truncate request: {}", e.body_text())))?;
    let out = state.engine.truncate_topic(&topic, &spec.before).await?;
    let message = match out {
        kappa_engine::Output::Done(m) => m,
        kappa_engine::Output::Rows(_) => String::new(),
    };
    Ok(Json(serde_json::json!({ "message": message })))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(crate::status::topics_json(&state.engine).await?))
}

pub async fn describe(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        crate::status::topic_json(&state.engine, &topic).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
