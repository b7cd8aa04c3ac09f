//! Kappa's server: the HTTP JSON API (with server-sent-event
//! subscriptions) and the PostgreSQL wire protocol over one engine.
//!
//! Map: `config` holds addresses and limits; `tls` loads certificates;
//! `listener` accepts HTTP connections (limit, timeouts, graceful
//! shutdown); `http/` routes the API; `pg/` is the PostgreSQL listener;
//! `format` writes query results as JSON, NDJSON or CSV; `error` turns
//! engine and log errors into statuses and codes (and SQLSTATEs);
//! `metrics` counts; `status` and `topic_read` are shared with the CLI.

pub mod config;
pub mod error;
pub mod format;
mod http;
mod listener;
pub mod metrics;
mod pg;
pub mod point;
mod send_timeout;
pub mod status;
pub mod tls;
pub mod topic_read;

pub use config::{Limits, ServerConfig};

use kappa_engine::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {addr} without authentication: set a bearer token (--auth-token), \
         listen on 127.0.0.1, or pass --allow-insecure-remote if the network is trusted"
    )]
    InsecureRemote { addr: SocketAddr },
    #[error(
        "refusing to listen for PostgreSQL clients on {addr} without a password: set one (--pg-password), \
         listen on 127.0.0.1, or pass --allow-insecure-remote if the network is trusted"
    )]
    InsecurePg { addr: SocketAddr },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A bound server, ready to run.
pub struct Server {
    engine: Arc<Engine>,
    config: ServerConfig,
    http: tokio::net::TcpListener,
    pg: Option<tokio::net::TcpListener>,
    metrics: Arc<metrics::ServerMetrics>,
    tls: Option<tls::Tls>,
}

impl Server {
    /// Binds the listeners (so that the addresses are known, port 0
    /// included) without serving yet.
    pub async fn bind(engine: Arc<Engine>, config: ServerConfig) -> Result<Server, ServerError> {
        if !config.http.ip().is_loopback()
            && config.auth_token.is_none()
            && !config.allow_insecure_remote
        {
            return Err(ServerError::InsecureRemote { addr: config.http });
        }
        if let Some(pg) = config.pg
            && !pg.ip().is_loopback()
            && config.pg_password.is_none()
            && !config.allow_insecure_remote
        {
            return Err(ServerError::InsecurePg { addr: pg });
        }
        let tls = match &config.tls {
            Some(files) => Some(tls::Tls::load(files)?),
            None => None,
        };
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let http = bind(config.http).await?;
        let pg = match config.pg {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Server {
            engine,
            config,
            http,
            pg,
            metrics: Arc::default(),
            tls,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether both listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Where the PostgreSQL listener is, if there is one.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` resolves; then stops accepting and lets
    /// requests in flight finish (for at most `drain`).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let pg = self.pg.map(|listener| {
            let handlers = Arc::new(pg::Handlers::new(
                self.engine.clone(),
                self.metrics.clone(),
                self.config.pg_password.clone(),
                self.config.limits.subscriber_max_lag,
            ));
            tokio::spawn(pg::serve(
                listener,
                handlers,
                self.tls.as_ref().map(|t| t.pg.clone()),
                self.config.limits.clone(),
                self.metrics.clone(),
                stopped(),
            ))
        });
        let state = http::AppState {
            engine: self.engine,
            limits: self.config.limits.clone(),
            metrics: self.metrics.clone(),
            auth_token: self.config.auth_token.map(Arc::from),
        };
        let accept = listener::Accept {
            listener: self.http,
            router: http::router(state),
            max_connections: self.config.limits.max_connections,
            header_timeout: self.config.limits.header_timeout,
            send_timeout: self.config.limits.send_timeout,
            metrics: self.metrics,
            tls: self.tls.map(|t| t.http),
        };
        let http = listener::serve(accept, stopped(), drain);
        tokio::pin!(http);
        tokio::select! {
            _ = shutdown => {}
            _ = &mut http => {}
        }
        let _ = stop_tx.send(true);
        http.await;
        if let Some(pg) = pg {
            let _ = pg.await;
        }
    }
}
