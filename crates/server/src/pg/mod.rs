//! The PostgreSQL wire protocol listener (pgwire): psql, BI tools and
//! every PostgreSQL driver. Simple and extended query protocols; DDL,
//! SELECT, AS OF, INSERT (an append), SUBSCRIBE; SQLSTATE codes; enough
//! of the catalog for psql's `\d`.
//!
//! Map: `handler` runs statements; `encode` turns Arrow results into rows;
//! `subscribe` streams a view's changes; `catalog` answers psql's catalog
//! queries; `error` maps errors to SQLSTATEs.

mod catalog;
mod described;
mod encode;
mod error;
mod handler;
mod subscribe;

use crate::metrics::ServerMetrics;
use async_trait::async_trait;
use handler::Backend;
use kappa_engine::Engine;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::error::PgWireResult;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What every PostgreSQL session shares.
pub struct Handlers {
    backend: Arc<Backend>,
    password: Option<String>,
    /// Sessions by (pid, secret key), for cancel requests (a client
    /// ending a SUBSCRIBE cancels it).
    connections: Arc<ConnectionManager>,
}

impl Handlers {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<ServerMetrics>,
        password: Option<String>,
        subscriber_max_lag: Duration,
    ) -> Handlers {
        Handlers {
            backend: Arc::new(Backend::new(engine, metrics, subscriber_max_lag)),
            password,
            connections: Arc::new(ConnectionManager::new()),
        }
    }
}

/// Without a password: anyone on the (loopback) address may connect.
struct Trust(Arc<ConnectionManager>);

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.0.clone())
    }
}

/// Every user name, one password.
#[derive(Debug)]
struct OnePassword(String);

#[async_trait]
impl AuthSource for OnePassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<()>> {
        // The password message is a C string: without its terminator.
        let presented = presented.strip_suffix(b"\0").unwrap_or(presented);
        // Compare in constant time (no early exit on the first difference).
        let expected = self.0.as_bytes();
        let same = presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(None)
        } else {
            Err(pgwire::error::PgWireError::InvalidPassword(
                login.user().unwrap_or_default().to_owned(),
            ))
        }
    }
}

/// PostgreSQL 15 to clients (psql picks its catalog queries by version).
fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("15.0 (Kappa {})", env!("CARGO_PKG_VERSION"));
    p
}

enum Startup {
    Trust(Trust),
    Password(Box<CleartextPasswordAuthStartupHandler<OnePassword, DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: pgwire::api::ClientInfo
            + futures_util::Sink<pgwire::messages::PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::Error: std::fmt::Debug,
        pgwire::error::PgWireError:
            From<<C as futures_util::Sink<pgwire::messages::PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(t) => t.on_startup(client, message).await,
            Startup::Password(p) => p.on_startup(client, message).await,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(match &self.password {
            None => Startup::Trust(Trust(self.connections.clone())),
            Some(p) => Startup::Password(Box::new(
                CleartextPasswordAuthStartupHandler::new(OnePassword(p.clone()), parameters())
                    .with_connection_manager(self.connections.clone()),
            )),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connections.clone()))
    }
}

/// Accepts PostgreSQL connections until `shutdown` resolves. One over the
/// limit gets SQLSTATE 53300 and is closed.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: crate::Limits,
    metrics: Arc<ServerMetrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let max_connections = limits.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // A client that takes no bytes for the send timeout is cut by the
        // kernel (unacknowledged data, or a zero window, for that long):
        // a stalled SUBSCRIBE cannot hold its connection forever.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(limits.send_timeout));
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream, max_connections));
            continue;
        };
        let handlers = handlers.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        metrics.pg_connections_open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(stream, tls, handlers).await {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
            metrics.pg_connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// `FATAL 53300 too_many_connections`, as PostgreSQL says it.
async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let mut buf = [0u8; 512];
    // The client speaks first (an SSL request or its startup message).
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    let message = format!(
        "sorry, too many clients already: the server has {limit} connections open, its limit; retry later or raise --max-connections"
    );
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', message.as_str()),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
