//! `/v1/views`: every view with its status (frontier, lag, history,
//! dead letters, late records).

use super::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use kappa_engine::ViewDef;
use serde_json::{Value, json};

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut views = Vec::new();
    for def in state.engine.views().await {
        views.push(view_json(&state, &def).await?);
    }
    Ok(Json(json!({ "views": views })))
}

pub async fn describe(
    State(state): State<AppState>,
    Path(view): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(def) = state.engine.view_or_building(&view).await else {
        return Err(ApiError::not_found(format!(
            "no view {view:?}; list views at /v1/views"
        )));
    };
    let mut body = view_json(&state, &def).await?;
    body["recent_dead_letters"] = Value::Array(
        state
            .engine
            .dead_letters(&view)
            .await?
            .into_iter()
            .rev()
            .take(20)
            .collect(),
    );
    Ok(Json(body))
}

/// How `POST /v1/views/{view}/rebuild` goes about it (an empty body:
/// from the log, beside the live version).
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rebuild {
    /// `"latest"`, or a snapshot file's path on the server.
    #[serde(default)]
    from_snapshot: Option<String>,
    #[serde(default)]
    in_place: bool,
}

/// `POST /v1/views/{view}/rebuild`: the same definition, a new version
/// built from the log (or a snapshot) beside the live one, or in place.
pub async fn rebuild(
    State(state): State<AppState>,
    Path(view): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let spec: Rebuild = if body.iter().all(u8::is_ascii_whitespace) {
        Rebuild::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("bad rebuild options: {e}")))?
    };
    let options = kappa_engine::RebuildOptions {
        from_snapshot: spec.from_snapshot.map(|s| match s.as_str() {
            "latest" => kappa_engine::FromSnapshot::Latest,
            path => kappa_engine::FromSnapshot::Path(path.into()),
        }),
        in_place: spec.in_place,
    };
    let out = state.engine.rebuild_view_with(&view, &options).await?;
    Ok(Json(message(out)))
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Where on the server to write it (default: the data directory's
    /// `snapshots/`).
    #[serde(default)]
    path: Option<String>,
}

/// `POST /v1/views/{view}/snapshot`: writes a snapshot of the view.
pub async fn snapshot(
    State(state): State<AppState>,
    Path(view): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let spec: Snapshot = if body.iter().all(u8::is_ascii_whitespace) {
        Snapshot::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("bad snapshot options: {e}")))?
    };
    let info = state
        .engine
        .snapshot_view(&view, spec.path.map(Into::into))
        .await?;
    Ok(Json(crate::status::snapshot_json(&info)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// A snapshot file's path on the server.
    path: String,
    /// The view's name (default: the one in the snapshot).
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/views/restore`: creates a view from a snapshot.
pub async fn restore(
    State(state): State<AppState>,
    body: Result<Json<Restore>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(spec) =
        body.map_err(|e| ApiError::bad_request(format!("bad restore request: {}", e.body_text())))?;
    let (name, out) = state
        .engine
        .restore_view(std::path::Path::new(&spec.path), spec.name.as_deref())
        .await?;
    let mut body = message(out);
    body["view"] = Value::String(name);
    Ok(Json(body))
}

/// `POST /v1/views/{view}/rollback`: the previous version catches up and
/// serves again.
pub async fn rollback(
    State(state): State<AppState>,
    Path(view): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let out = state.engine.rollback_view(&view).await?;
    Ok(Json(message(out)))
}

/// `POST /v1/views/{view}/verify`: rebuilds the view from the log up to
/// its frontier beside it and compares.
pub async fn verify(
    State(state): State<AppState>,
    Path(view): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = state.engine.verify_view(&view).await?;
    Ok(Json(crate::status::verify_json(&view, &report)))
}

fn message(out: kappa_engine::Output) -> Value {
    match out {
        kappa_engine::Output::Done(m) => json!({ "message": m }),
        kappa_engine::Output::Rows(_) => json!({}),
    }
}

async fn view_json(state: &AppState, def: &ViewDef) -> Result<Value, ApiError> {
    Ok(crate::status::view_json(&state.engine, def).await?)
}
