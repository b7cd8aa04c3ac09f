//! What a server listens on and the limits it enforces.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits that keep one client from taking the server down.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body; a larger one is refused with 413 before it is
    /// read whole.
    pub max_body_bytes: usize,
    /// Most records in one append.
    pub max_batch_records: usize,
    /// Most connections open at once; one more gets 503.
    pub max_connections: usize,
    /// A client must send a request's headers within this long (also how
    /// long an idle keep-alive connection is kept).
    pub header_timeout: Duration,
    /// The longest a query may wait for a token, or a read for records.
    pub max_wait: Duration,
    /// Events queued per subscriber (snapshot chunks of up to 1,000 rows,
    /// changes, records): what bounds a subscriber's memory.
    pub subscriber_queue_events: usize,
    /// A subscriber whose queue is full while it is sent something older
    /// than this is disconnected (`slow_subscriber`).
    pub subscriber_max_lag: Duration,
    /// A connection whose client takes no bytes for this long is closed
    /// (a subscriber that stopped reading, a stalled download).
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_batch_records: 100_000,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
            subscriber_queue_events: 256,
            subscriber_max_lag: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The HTTP listener (port 0: any free port).
    pub http: SocketAddr,
    /// The PostgreSQL wire protocol listener, if any.
    pub pg: Option<SocketAddr>,
    /// Password every PostgreSQL client must give (cleartext auth), if set.
    pub pg_password: Option<String>,
    pub limits: Limits,
    /// Bearer token every HTTP request must carry, if set.
    pub auth_token: Option<String>,
    /// Listen on a non-loopback address without auth (refused otherwise).
    pub allow_insecure_remote: bool,
    /// Serve both listeners over TLS with this certificate and key.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pg: Some(SocketAddr::from(([127, 0, 0, 1], 6875))),
            pg_password: None,
            limits: Limits::default(),
            auth_token: None,
            allow_insecure_remote: false,
            tls: None,
        }
    }
}
