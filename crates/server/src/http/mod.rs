//! The HTTP JSON API (`/v1/...`), described by `/v1/openapi.json`.
//!
//! Map: `topics` creates, lists and describes topics; `records` appends
//! and reads them; `sql` runs statements and queries; `views` reports view
//! status; `ops` serves health, metrics and the OpenAPI document.

mod ops;
pub mod records;
mod sql;
mod stream;
mod topics;
mod views;

use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::ServerMetrics;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use kappa_engine::Engine;
use std::sync::Arc;

/// What every handler reaches.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub limits: Limits,
    pub metrics: Arc<ServerMetrics>,
    pub auth_token: Option<Arc<str>>,
}

pub fn router(state: AppState) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route("/v1/topics/{topic}", get(topics::describe))
        .route(
            "/v1/topics/{topic}/records",
            post(records::append).get(records::read),
        )
        .route("/v1/topics/{topic}/follow", get(stream::follow))
        .route("/v1/topics/{topic}/truncate", post(topics::truncate))
        .route("/v1/sql", post(sql::run))
        .route("/v1/views/{view}/subscribe", get(stream::subscribe))
        .route("/v1/views", get(views::list))
        .route("/v1/views/{view}", get(views::describe))
        .route("/v1/views/{view}/rebuild", post(views::rebuild))
        .route("/v1/views/{view}/rollback", post(views::rollback))
        .route("/v1/views/{view}/verify", post(views::verify))
        .route("/v1/views/{view}/snapshot", post(views::snapshot))
        .route("/v1/views/restore", post(views::restore))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Query parameters that do not parse, as an API error.
pub fn query_rejected(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query parameters: {}", e.body_text()))
}

/// A request body, or the reason it was refused: larger than the limit
/// (413, before it is read whole) or cut off.
pub fn body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    limits: &Limits,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is larger than this server's limit of {} bytes: split it (or raise --max-body-bytes); nothing was appended",
                    limits.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Authenticates (when a token is configured) and counts every request.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let open = matches!(request.uri().path(), "/healthz");
    if let Some(token) = &state.auth_token
        && !open
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_ref()) {
            state.metrics.request(StatusCode::UNAUTHORIZED);
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs a bearer token: send `Authorization: Bearer <token>`",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("a header value"),
            );
            return response;
        }
    }
    let response = next.run(request).await;
    state.metrics.request(response.status());
    response
}
