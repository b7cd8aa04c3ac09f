//! `/v1/topics/{topic}/records`: append (NDJSON or a JSON array), and read
//! one partition from an offset, optionally waiting for records.

use super::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use kappa_log::{Condition, ReadFrom, ReadLimits};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Conditions of a conditional append, as query parameters.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppendParams {
    /// With `expect_last_offset`: the partition whose last offset must be
    /// as expected.
    partition: Option<u32>,
    /// A number, or `none` for an empty partition.
    expect_last_offset: Option<String>,
    /// With `expect_key_offset`: the key whose latest record must be at
    /// that offset (or `absent`).
    key: Option<String>,
    expect_key_offset: Option<String>,
    /// For a topic without a key column: the top-level field of each
    /// record to use as its key.
    key_field: Option<String>,
}

fn conditions(topic: &str, p: &AppendParams) -> Result<Vec<Condition>, ApiError> {
    let mut out = Vec::new();
    match (p.partition, &p.expect_last_offset) {
        (Some(partition), Some(expected)) => {
            let expected = match expected.as_str() {
                "none" => None,
                n => Some(n.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "expect_last_offset={n:?}: give an offset, or `none` for an empty partition"
                    ))
                })?),
            };
            out.push(Condition::PartitionLastOffset {
                topic: topic.to_string(),
                partition,
                expected,
            });
        }
        (None, None) => {}
        _ => {
            return Err(ApiError::bad_request(
                "`partition` and `expect_last_offset` go together",
            ));
        }
    }
    match (&p.key, &p.expect_key_offset) {
        (Some(key), Some(expected)) => {
            let key = bytes::Bytes::from(key.clone().into_bytes());
            out.push(match expected.as_str() {
                "absent" => Condition::KeyAbsent {
                    topic: topic.to_string(),
                    key,
                },
                n => Condition::KeyLatestOffset {
                    topic: topic.to_string(),
                    key,
                    expected: n.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "expect_key_offset={n:?}: give an offset, or `absent`"
                        ))
                    })?,
                },
            });
        }
        (None, None) => {}
        _ => {
            return Err(ApiError::bad_request(
                "`key` and `expect_key_offset` go together",
            ));
        }
    }
    Ok(out)
}

/// The records of a request body: a JSON array when the body is one (or
/// is sent as `application/json`), else one JSON value per line.
fn split_records(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Bytes>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ApiError::bad_request(format!(
            "the body is not valid UTF-8 (line {line}, byte {}); nothing was appended",
            e.valid_up_to()
        ))
    })?;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let trimmed = text.trim_start();
    if json_type || trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not a JSON array of records: {e}; nothing was appended"
            ))
        })?;
        return Ok(values
            .iter()
            .map(|v| Bytes::from(v.to_string().into_bytes()))
            .collect());
    }
    // NDJSON: each record is a slice of the body (no copy).
    Ok(text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| body.slice_ref(l.as_bytes()))
        .collect())
}

pub async fn append(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    params: Result<Query<AppendParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(params) = params.map_err(super::query_rejected)?;
    let body = super::body(body, &state.limits)?;
    let conditions = conditions(&topic, &params)?;
    let records = split_records(&headers, &body)?;
    if records.is_empty() {
        return Err(ApiError::bad_request(
            "the body holds no records: send one JSON value per line, or a JSON array",
        ));
    }
    if records.len() > state.limits.max_batch_records {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one append; the limit is {}: split the batch",
                records.len(),
                state.limits.max_batch_records
            ),
        ));
    }
    let count = records.len();
    let result = state
        .engine
        .append_json_owned(
            &topic,
            records,
            kappa_engine::JsonAppend {
                conditions,
                key_field: params.key_field,
            },
        )
        .await?;
    state.metrics.appends.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .records_appended
        .fetch_add(count as u64, Ordering::Relaxed);
    let positions: Vec<Value> = result
        .positions
        .iter()
        .map(|p| json!([p.partition, p.offset]))
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({
            "token": result.token.to_string(),
            "count": count,
            "log_time": result.positions.last().map(|p| p.log_time.to_rfc3339()),
            "positions": positions,
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    #[serde(default)]
    partition: u32,
    /// The first offset to read; the partition's first retained record
    /// without it.
    offset: Option<u64>,
    #[serde(default = "hundred")]
    limit: usize,
    /// Wait this long for a record when there is none yet (long poll).
    #[serde(default)]
    wait_ms: u64,
}

fn hundred() -> usize {
    100
}

pub async fn read(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    p: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = p.map_err(super::query_rejected)?;
    let log = state.engine.log().clone();
    let from = p.offset.map_or(ReadFrom::Start, ReadFrom::Offset);
    let limits = ReadLimits {
        max_records: p.limit.clamp(1, 10_000),
        max_bytes: 8 << 20,
    };
    let wait = Duration::from_millis(p.wait_ms).min(state.limits.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let records = loop {
        let head = log.head().await?;
        let records = log.read(&topic, p.partition, from, limits).await?;
        let now = tokio::time::Instant::now();
        if !records.is_empty() || now >= deadline {
            break records;
        }
        log.wait_for_commit(head.log_time(), deadline - now).await?;
    };
    let next = records.last().map(|r| r.offset + 1).or(p.offset);
    let records: Vec<Value> = records.iter().map(crate::topic_read::record_json).collect();
    Ok(Json(json!({ "records": records, "next_offset": next })))
}
