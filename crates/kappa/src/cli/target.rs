//! Where a client command goes: a running server (`--server URL`,
//! `KAPPA_SERVER`, or the one that holds the data directory), or the data
//! directory opened in this process (as sqlite3's shell does), with every
//! view brought up to the log's head before answering.

use super::engine::{Opened, ServerMarker};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;

pub enum Target {
    Server(Http),
    Embedded(Opened),
}

/// Picks the target: an explicit server must answer; else the server that
/// holds the directory, if it answers; else the directory itself.
pub async fn resolve(server: Option<&str>, data_dir: &Path) -> anyhow::Result<Target> {
    if let Some(url) = server {
        let http = Http::new(url);
        http.health().await.map_err(|e| {
            anyhow!(
                "no Kappa server answers at {url} ({e}); start one with `kappa serve`, or drop --server (and KAPPA_SERVER) to open --data-dir {} directly",
                data_dir.display()
            )
        })?;
        return Ok(Target::Server(http));
    }
    if let Some(url) = ServerMarker::read(data_dir) {
        let http = Http::new(&url);
        if http.health().await.is_ok() {
            return Ok(Target::Server(http));
        }
    }
    let opened = super::engine::open(data_dir)?;
    opened.engine.adopt_log_topics().await?;
    // Answers reflect the whole log, as a server's would once caught up.
    opened.engine.catch_up().await?;
    Ok(Target::Embedded(opened))
}

/// A minimal HTTP/1 client for the server's API.
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl Http {
    pub fn new(url: &str) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Http {
            base: url.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            token: std::env::var("KAPPA_AUTH_TOKEN").ok(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn health(&self) -> anyhow::Result<()> {
        let (status, _) = tokio::time::timeout(
            Duration::from_secs(5),
            self.request("GET", "/healthz", None, &[]),
        )
        .await
        .map_err(|_| anyhow!("no answer within 5 s"))??;
        if status != 200 {
            bail!("/healthz answered {status}");
        }
        Ok(())
    }

    /// Starts a request; the response's body is left to the caller.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(t) = &self.token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("cannot build the request")?;
        self.client
            .request(request)
            .await
            .with_context(|| format!("cannot reach {}{path}", self.base))
    }

    /// A whole request: (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Bytes)> {
        let response = self.send(method, path, body, headers).await?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the response was cut off")?
            .to_bytes();
        Ok((status, body))
    }

    /// A request whose answer must be 2xx JSON; an error response becomes
    /// its message.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.request(method, path, body, headers).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the server answered {status} with something not JSON"))?;
        if !(200..300).contains(&status) {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            bail!("{message}");
        }
        Ok(value)
    }
}
