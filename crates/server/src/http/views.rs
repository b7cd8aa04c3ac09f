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
    let Some(def) = state.engine.view(&view).await else {
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

/// `POST /v1/views/{view}/rebuild`: the same definition, a new version
/// built from the log beside the live one.
pub async fn rebuild(
    State(state): State<AppState>,
    Path(view): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let out = state.engine.rebuild_view(&view).await?;
    Ok(Json(message(out)))
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
