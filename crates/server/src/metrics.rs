//! The server's own counters, exported at `/metrics` with the engine's and
//! the log's figures (Prometheus text format).

use axum::http::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ServerMetrics {
    requests_2xx: AtomicU64,
    requests_4xx: AtomicU64,
    requests_5xx: AtomicU64,
    pub records_appended: AtomicU64,
    pub appends: AtomicU64,
    pub queries: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_open: AtomicU64,
    pub pg_connections_open: AtomicU64,
    pub connections_timed_out: AtomicU64,
    pub subscribers: AtomicU64,
    pub slow_subscribers: AtomicU64,
}

impl ServerMetrics {
    pub fn request(&self, status: StatusCode) {
        let counter = match status.as_u16() {
            500.. => &self.requests_5xx,
            400.. => &self.requests_4xx,
            _ => &self.requests_2xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP kappa_http_requests_total HTTP requests answered, by status class.\n\
             # TYPE kappa_http_requests_total counter\n\
             kappa_http_requests_total{{class=\"2xx\"}} {}\n\
             kappa_http_requests_total{{class=\"4xx\"}} {}\n\
             kappa_http_requests_total{{class=\"5xx\"}} {}",
            get(&self.requests_2xx),
            get(&self.requests_4xx),
            get(&self.requests_5xx)
        );
        let counters = [
            (
                "kappa_appended_records_total",
                "Records appended through the server.",
                &self.records_appended,
            ),
            (
                "kappa_appends_total",
                "Append requests that succeeded.",
                &self.appends,
            ),
            ("kappa_queries_total", "SQL statements run.", &self.queries),
            (
                "kappa_connections_refused_total",
                "Connections refused at the connection limit.",
                &self.connections_refused,
            ),
            (
                "kappa_connections_send_timeout_total",
                "Connections closed because the client took no bytes for the send timeout.",
                &self.connections_timed_out,
            ),
            (
                "kappa_slow_subscribers_total",
                "Subscribers disconnected for falling behind.",
                &self.slow_subscribers,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP kappa_connections_open Connections open now.\n# TYPE kappa_connections_open gauge\nkappa_connections_open {}",
            get(&self.connections_open)
        );
        let _ = writeln!(
            out,
            "# HELP kappa_pg_connections_open PostgreSQL connections open now.\n# TYPE kappa_pg_connections_open gauge\nkappa_pg_connections_open {}",
            get(&self.pg_connections_open)
        );
        let _ = writeln!(
            out,
            "# HELP kappa_subscribers Open subscriptions and follows (SSE).
# TYPE kappa_subscribers gauge
kappa_subscribers {}",
            get(&self.subscribers)
        );
    }
}
