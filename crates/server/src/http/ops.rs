//! Health, metrics and the API's description.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus text format: the server's counters, then each view's lag,
/// records applied and dead letters.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    use std::fmt::Write;
    let mut out = String::new();
    state.metrics.render(&mut out);
    let log = state.engine.log().stats();
    let _ = write!(
        out,
        "# HELP kappa_log_fsync_seconds Time the log's fsyncs (fdatasync) took.\n\
         # TYPE kappa_log_fsync_seconds summary\n\
         kappa_log_fsync_seconds_sum {}\nkappa_log_fsync_seconds_count {}\n\
         # HELP kappa_log_fsync_seconds_max The longest fsync since the server started.\n\
         # TYPE kappa_log_fsync_seconds_max gauge\nkappa_log_fsync_seconds_max {}\n\
         # HELP kappa_log_commit_groups_total Group commits (one fsync each, shared by concurrent appends).\n\
         # TYPE kappa_log_commit_groups_total counter\nkappa_log_commit_groups_total {}\n\
         # HELP kappa_log_appends_total Appends (atomic batches) committed.\n\
         # TYPE kappa_log_appends_total counter\nkappa_log_appends_total {}\n\
         # HELP kappa_log_bytes_appended_total Bytes appended to the log.\n\
         # TYPE kappa_log_bytes_appended_total counter\nkappa_log_bytes_appended_total {}\n",
        log.sync_micros_total as f64 / 1e6,
        log.syncs,
        log.sync_micros_max as f64 / 1e6,
        log.groups,
        log.transactions,
        log.bytes_appended,
    );
    let views = state.engine.views().await;
    let _ = writeln!(
        out,
        "# HELP kappa_view_lag_seconds How far the log's head is past the view's frontier.\n\
         # TYPE kappa_view_lag_seconds gauge"
    );
    let mut applied = String::from(
        "# HELP kappa_view_records_applied_total Records the view has applied since the server started.\n\
         # TYPE kappa_view_records_applied_total counter\n",
    );
    let mut building = String::from(
        "# HELP kappa_view_build_lag_seconds How far a view's next version (being built by replace, rebuild or rollback) is behind the log's head.\n\
         # TYPE kappa_view_build_lag_seconds gauge\n\
         # HELP kappa_view_build_records_applied_total Records applied to a view's next version while it is built.\n\
         # TYPE kappa_view_build_records_applied_total counter\n\
         # HELP kappa_view_build_records_remaining Records of the log a view's next version has still to apply.\n\
         # TYPE kappa_view_build_records_remaining gauge\n\
         # HELP kappa_view_build_eta_seconds When a view's next version is expected to catch up, at its current rate.\n\
         # TYPE kappa_view_build_eta_seconds gauge\n\
         # HELP kappa_view_verify_identical Whether the view's last verify found it equal to its rebuild from the log (1) or not (0).\n\
         # TYPE kappa_view_verify_identical gauge\n\
         # HELP kappa_view_verify_time_seconds When the view was last verified (seconds since the epoch).\n\
         # TYPE kappa_view_verify_time_seconds gauge\n",
    );
    let mut dead = String::from(
        "# HELP kappa_view_dead_letters Records the view could not evaluate.\n\
         # TYPE kappa_view_dead_letters gauge\n",
    );
    for v in views {
        if let Ok(status) = state.engine.view_status(&v.name).await {
            let name = v.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "kappa_view_lag_seconds{{view=\"{name}\"}} {}",
                status.lag_micros as f64 / 1e6
            );
            if let Some(v) = status.last_verify {
                let _ = writeln!(
                    building,
                    "kappa_view_verify_identical{{view=\"{name}\"}} {}\n\
                     kappa_view_verify_time_seconds{{view=\"{name}\"}} {}",
                    u8::from(v.identical),
                    v.at as f64 / 1e6
                );
            }
            if let Some(r) = status.replacing {
                let _ = writeln!(
                    building,
                    "kappa_view_build_lag_seconds{{view=\"{name}\",version=\"{}\"}} {}\n\
                     kappa_view_build_records_applied_total{{view=\"{name}\",version=\"{}\"}} {}",
                    r.version,
                    r.lag_micros as f64 / 1e6,
                    r.version,
                    r.records_applied
                );
                if let Some(left) = r.records_remaining {
                    let _ = writeln!(
                        building,
                        "kappa_view_build_records_remaining{{view=\"{name}\",version=\"{}\"}} {left}",
                        r.version
                    );
                }
                if let Some(eta) = r.eta_seconds {
                    let _ = writeln!(
                        building,
                        "kappa_view_build_eta_seconds{{view=\"{name}\",version=\"{}\"}} {eta:.1}",
                        r.version
                    );
                }
            }
            let _ = writeln!(
                applied,
                "kappa_view_records_applied_total{{view=\"{name}\"}} {}",
                status.records_applied
            );
            let _ = writeln!(
                dead,
                "kappa_view_dead_letters{{view=\"{name}\"}} {}",
                status.dead_letters
            );
        }
    }
    out += &applied;
    out += &building;
    out += &dead;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}
