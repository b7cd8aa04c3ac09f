//! Errors as clients see them: an HTTP status, a stable code, a message
//! that says what went wrong and what to do. One classification serves
//! every protocol (the PostgreSQL listener maps the same codes to
//! SQLSTATEs).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_engine::EngineError;
use kappa_log::LogError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `not_found`, `schema_mismatch`, ...
    pub code: &'static str,
    pub message: String,
    /// For a conflict: the current value the condition met.
    pub current: Option<Box<serde_json::Value>>,
    /// For a record that does not fit: its index in the batch.
    pub record: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            current: None,
            record: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match &e {
            EngineError::Syntax(_) => (StatusCode::BAD_REQUEST, "syntax_error"),
            EngineError::Plan(_) => (StatusCode::BAD_REQUEST, "invalid_sql"),
            EngineError::Unsupported { .. } => (StatusCode::BAD_REQUEST, "unsupported"),
            EngineError::RecordRejected { .. } => (StatusCode::BAD_REQUEST, "schema_mismatch"),
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            EngineError::Exists(_) => (StatusCode::CONFLICT, "already_exists"),
            EngineError::AsOf { .. } => (StatusCode::BAD_REQUEST, "as_of_out_of_range"),
            EngineError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            EngineError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            EngineError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            EngineError::Snapshot { .. } => (StatusCode::BAD_REQUEST, "bad_snapshot"),
            EngineError::Log(l) => return ApiError::from_log(l, message),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut error = ApiError::new(status, code, message);
        if let EngineError::RecordRejected { index, .. } = &e {
            error.record = Some(*index);
        }
        error
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        let message = e.to_string();
        ApiError::from_log(&e, message)
    }
}

impl ApiError {
    fn from_log(e: &LogError, message: String) -> ApiError {
        let (status, code) = match e {
            LogError::TopicNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            LogError::TopicExists { .. } => (StatusCode::CONFLICT, "already_exists"),
            LogError::InvalidTopicName { .. }
            | LogError::InvalidArgument(_)
            | LogError::PartitionOutOfRange { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            LogError::OffsetOutOfRange { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range")
            }
            LogError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            LogError::BatchTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            LogError::StorageFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            LogError::WriterFailed { .. } | LogError::Indeterminate { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut error = ApiError::new(status, code, message);
        if let LogError::Conflict { current, .. } = e {
            use kappa_log::ConflictCurrent;
            error.current = Some(Box::new(match current {
                ConflictCurrent::PartitionLastOffset(o) => {
                    serde_json::json!({ "partition_last_offset": o })
                }
                ConflictCurrent::KeyLatestOffset(o) => {
                    serde_json::json!({ "key_latest_offset": o })
                }
            }));
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let mut body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        if let Some(current) = self.current {
            body["error"]["current"] = *current;
        }
        if let Some(record) = self.record {
            body["error"]["record"] = record.into();
        }
        (self.status, Json(body)).into_response()
    }
}
