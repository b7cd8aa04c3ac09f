//! `POST /v1/sql`: one statement (DDL, INSERT, or a query, now or AS OF),
//! as a JSON body `{"sql": ..., "token": ..., "timeout_ms": ...}` or as
//! plain SQL text. Rows come back as JSON, NDJSON or CSV by `Accept`.

use super::AppState;
use crate::error::ApiError;
use crate::format::{self, Format};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kappa_engine::{Output, QueryOptions};
use kappa_log::Token;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Answer only once the views read have applied the log up to here.
    token: Option<String>,
    /// How long to wait for that (default 10 s).
    timeout_ms: Option<u64>,
}

/// How long a query waits for its token unless told.
const DEFAULT_TOKEN_WAIT: Duration = Duration::from_secs(10);

pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::body(body, &state.limits)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(format) = Format::from_accept(accept) else {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!(
                "cannot answer in {accept:?}: accept application/json, application/x-ndjson or text/csv"
            ),
        ));
    };
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid UTF-8: {e}")))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request = if is_json {
        serde_json::from_str::<SqlRequest>(text).map_err(|e| {
            ApiError::bad_request(format!(
                "expected {{\"sql\": \"...\", \"token\"?: \"...\", \"timeout_ms\"?: n}}: {e}"
            ))
        })?
    } else {
        SqlRequest {
            sql: text.to_string(),
            token: None,
            timeout_ms: None,
        }
    };
    if request.sql.trim().is_empty() {
        return Err(ApiError::bad_request("no SQL in the request"));
    }
    let after = match &request.token {
        None => None,
        Some(t) => Some(t.parse::<Token>().map_err(|e| {
            ApiError::bad_request(format!("token {t:?} is not a Kappa token: {e}"))
        })?),
    };
    let timeout = request
        .timeout_ms
        .map_or(DEFAULT_TOKEN_WAIT, Duration::from_millis)
        .min(state.limits.max_wait);
    state.metrics.queries.fetch_add(1, Ordering::Relaxed);
    let output = state
        .engine
        .execute_with(&request.sql, &QueryOptions { after, timeout })
        .await?;
    Ok(match output {
        Output::Done(message) => {
            axum::Json(serde_json::json!({ "message": message })).into_response()
        }
        Output::Rows(batches) => {
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            };
            let body = match format {
                Format::Json => serde_json::to_vec(&format::json(&schema, &batches))
                    .expect("a Value serializes"),
                Format::Ndjson => format::ndjson(&schema, &batches),
                Format::Csv => format::csv(&schema, &batches)
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?,
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
    })
}
