//! The HTTP accept loop: a connection limit (one more gets 503 and is
//! closed), a header timeout (the TLS handshake, if any, included), and
//! graceful shutdown (stop accepting, let requests in flight finish).

use crate::metrics::ServerMetrics;
use crate::send_timeout::SendTimeout;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub struct Accept {
    pub listener: TcpListener,
    pub router: Router,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    pub metrics: Arc<ServerMetrics>,
    pub tls: Option<TlsAcceptor>,
}

/// What a connection's task needs.
#[derive(Clone)]
struct PerConnection {
    router: Router,
    header_timeout: Duration,
    send_timeout: Duration,
    metrics: Arc<ServerMetrics>,
}

/// Serves until `shutdown` resolves, then waits up to `drain` for the
/// requests in flight.
pub async fn serve(
    accept: Accept,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let Accept {
        listener,
        router,
        max_connections,
        header_timeout,
        send_timeout,
        metrics,
        tls,
    } = accept;
    let per = PerConnection {
        router,
        header_timeout,
        send_timeout,
        metrics: metrics.clone(),
    };
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let permit = permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
        }
        let per = per.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return match permit {
                    Some(permit) => per.serve(stream, watcher, permit).await,
                    None => refuse(stream, max_connections).await,
                };
            };
            // The handshake counts against the header timeout.
            let stream = match tokio::time::timeout(per.header_timeout, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return tracing::debug!(error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    per.metrics
                        .connections_timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            match permit {
                Some(permit) => per.serve(stream, watcher, permit).await,
                None => refuse(stream, max_connections).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {drain:?}; closing them");
    }
}

impl PerConnection {
    /// Serves HTTP/1 on one connection until it closes.
    async fn serve<S>(
        self,
        stream: S,
        watcher: hyper_util::server::graceful::Watcher,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .serve_connection(
                TokioIo::new(SendTimeout::new(stream, self.send_timeout)),
                service,
            );
        let metrics = self.metrics;
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = watcher.watch(connection).await {
            let timed_out = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            if timed_out {
                metrics
                    .connections_timed_out
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(error = %e, "connection ended with an error");
        }
        metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    }
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, limit: usize) {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"the server has {limit} connections open, its limit; retry later or raise --max-connections\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
