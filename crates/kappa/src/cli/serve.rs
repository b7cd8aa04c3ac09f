//! `kappa serve`: the engine on a data directory, behind the HTTP API.
//!
//! Startup opens the log and the view store, registers log topics the
//! catalog does not know, starts view maintenance and binds the listeners.
//! SIGTERM or Ctrl-C stops accepting, lets requests in flight finish, then
//! stops maintenance (which commits the views' progress) and closes the log.

use anyhow::Context;
use clap::Args;
use kappa_server::{Limits, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "KAPPA_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Address of the PostgreSQL wire protocol listener (`none`: off).
    #[arg(long, env = "KAPPA_PG", default_value = "127.0.0.1:6875")]
    pub pg: String,
    /// Require this password from PostgreSQL clients.
    #[arg(long, env = "KAPPA_PG_PASSWORD", hide_env_values = true)]
    pub pg_password: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every HTTP request.
    #[arg(long, env = "KAPPA_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Listen on a non-loopback address without authentication.
    #[arg(long)]
    pub allow_insecure_remote: bool,
    /// Serve HTTPS and PostgreSQL over TLS with this certificate chain
    /// (PEM; needs --tls-key).
    #[arg(long, env = "KAPPA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "KAPPA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most records in one append.
    #[arg(long, default_value_t = Limits::default().max_batch_records)]
    pub max_batch_records: usize,
    /// Most connections open at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and an idle
    /// connection is kept).
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs())]
    pub header_timeout_secs: u64,
    /// Seconds a client may take no bytes before its connection is closed.
    #[arg(long, default_value_t = Limits::default().send_timeout.as_secs())]
    pub send_timeout_secs: u64,
    /// Events queued per subscriber (bounds its memory).
    #[arg(long, default_value_t = Limits::default().subscriber_queue_events)]
    pub subscriber_queue_events: usize,
    /// A subscriber with a full queue that falls this far behind is
    /// disconnected.
    #[arg(long, default_value_t = Limits::default().subscriber_max_lag.as_millis() as u64)]
    pub subscriber_max_lag_ms: u64,
    /// How long a view's previous version is kept for `kappa view
    /// rollback` after a replace or rebuild (then its state is freed).
    #[arg(long, default_value = "1d", value_parser = crate::parse::duration_ms)]
    pub keep_previous: u64,
    /// Memory for view state: groups in memory, changes not yet
    /// committed, the batches of a replay being read (e.g. 256MiB, 2GiB).
    /// Views share it; past it, groups go back to the store and commits
    /// come sooner. The store's page cache is apart (--store-cache).
    #[arg(long, default_value = "1GiB", value_parser = view_memory)]
    pub view_memory: usize,
    /// Memory for the view store's page cache (e.g. 256MiB), the
    /// allocator's overhead on its pages included.
    #[arg(long, default_value = "256MiB", value_parser = store_cache)]
    pub store_cache: usize,
    /// Threads a view's replay or rebuild keeps busy (default: one per
    /// core). With one, it reads, decodes, applies and commits in turn.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub view_workers: Option<u32>,
    /// Seconds to let requests in flight finish at shutdown.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Also shut down when stdin closes (for a supervising process, such
    /// as a test harness, whose exit must stop the server).
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}

/// A memory size of at least 16 MiB (less cannot hold a replay's batch).
fn view_memory(s: &str) -> Result<usize, String> {
    at_least(s, 16 << 20)
}

/// A memory size of at least 1 MiB.
fn store_cache(s: &str) -> Result<usize, String> {
    at_least(s, 1 << 20)
}

fn at_least(s: &str, min: usize) -> Result<usize, String> {
    let n = crate::parse::size_bytes(s)?;
    let n =
        usize::try_from(n).map_err(|_| format!("{s:?} is more than this machine can address"))?;
    if n < min {
        return Err(format!(
            "{s:?} is too small; give at least {} MiB",
            min >> 20
        ));
    }
    Ok(n)
}

pub async fn run(data_dir: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let opened = super::engine::open_with(
        data_dir,
        kappa_store::StoreOptions {
            cache_bytes: args.store_cache,
        },
        kappa_engine::EngineOptions {
            memory_budget: args.view_memory,
            keep_previous: Duration::from_millis(args.keep_previous),
            workers: args.view_workers.map_or_else(
                || kappa_engine::EngineOptions::default().workers,
                |w| w as usize,
            ),
            ..Default::default()
        },
    )?;
    let engine = opened.engine.clone();
    let adopted = engine
        .adopt_log_topics()
        .await
        .context("cannot register the log's topics")?;
    if !adopted.is_empty() {
        tracing::info!(topics = ?adopted, "registered log topics as raw JSON topics");
    }
    let maintenance = engine.maintain();
    let config = ServerConfig {
        http: args.http,
        pg: parse_pg(&args.pg)?,
        pg_password: args.pg_password,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_batch_records: args.max_batch_records,
            max_connections: args.max_connections,
            header_timeout: Duration::from_secs(args.header_timeout_secs),
            send_timeout: Duration::from_secs(args.send_timeout_secs),
            subscriber_queue_events: args.subscriber_queue_events,
            subscriber_max_lag: Duration::from_millis(args.subscriber_max_lag_ms),
            ..Limits::default()
        },
        auth_token: args.auth_token,
        allow_insecure_remote: args.allow_insecure_remote,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(kappa_server::tls::TlsFiles { cert, key }),
            _ => None,
        },
    };
    let server = Server::bind(engine.clone(), config).await?;
    let scheme = if server.tls() { "https" } else { "http" };
    let http = format!("{scheme}://{}", server.http_addr());
    let pg = server.pg_addr();
    let marker = super::engine::ServerMarker::write(data_dir, &http)?;
    eprintln!(
        "kappa serving {} (pid {})\n  HTTP API  {http}/v1   (OpenAPI: {http}/v1/openapi.json)\n\
         try:\n  kappa quickstart       # a topic, records, a view and a query, then more to try\n\
         \x20 curl -s {http}/v1/sql -d 'CREATE TOPIC events (user_id TEXT, amount DOUBLE) WITH (key = '\"'\"'user_id'\"'\"')'\n\
         \x20 curl -s {http}/v1/topics/events/records -d '{{\"user_id\":\"u1\",\"amount\":5}}'\n\
         \x20 curl -s {http}/v1/sql -d 'SELECT * FROM events'",
        data_dir.display(),
        std::process::id(),
    );
    if let Some(pg) = pg {
        let ssl = if server.tls() { " sslmode=require" } else { "" };
        eprintln!(
            "  PostgreSQL  psql 'host={} port={} user=kappa{ssl}'   (SUBSCRIBE: psql -c 'COPY (SUBSCRIBE view) TO STDOUT')",
            pg.ip(),
            pg.port()
        );
    }
    // The first line on stdout says where we listen (for scripts and tests).
    match pg {
        Some(pg) => println!("listening {http} postgres://{pg}"),
        None => println!("listening {http}"),
    }
    server
        .run(
            shutdown_signal(args.exit_on_stdin_close),
            Duration::from_secs(args.drain_secs),
        )
        .await;
    eprintln!("shutting down: checkpointing views");
    maintenance.stop().await;
    drop(marker);
    opened.close();
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn parse_pg(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| {
        anyhow::anyhow!("--pg {s:?} is not an address such as 127.0.0.1:6875 (or `none`): {e}")
    })
}

/// Resolves on SIGTERM or Ctrl-C (or when stdin closes, if asked).
async fn shutdown_signal(on_stdin_close: bool) {
    // A plain thread reads stdin: a blocking read in the runtime would
    // hold its shutdown up.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    if on_stdin_close {
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
    }
    let stdin_closed = async {
        if !on_stdin_close || closed_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
        _ = stdin_closed => {},
    }
}
