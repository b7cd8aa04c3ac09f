//! Where a client command goes: a running server (`--server URL`,
//! `KAPPA_SERVER`, or the one that holds the data directory), or the data
//! directory opened in this process (as sqlite3's shell does), with every
//! view brought up to the log's head before answering.

use super::engine::{Opened, ServerMarker};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kappa_engine::{EngineError, JsonAppend};
use std::path::Path;
use std::time::Duration;
use tokio_rustls::rustls;

pub enum Target {
    Server(Http),
    Embedded(Opened),
}

/// What an embedded target must have done before the command runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Views {
    /// Every view has applied the log up to its head (queries, status).
    CaughtUp,
    /// Views as they are (topic commands, produce, consume).
    AsTheyAre,
}

/// Picks the target: an explicit server must answer; else the server that
/// holds the directory, if it answers; else the directory itself.
pub async fn resolve(
    server: Option<&str>,
    data_dir: &Path,
    views: Views,
) -> anyhow::Result<Target> {
    if let Some(url) = server {
        let http = Http::new(url)?;
        http.health().await.map_err(|e| {
            anyhow!(
                "no Kappa server answers at {url} ({e:#}); start one with `kappa serve`, or drop --server (and KAPPA_SERVER) to open --data-dir {} directly",
                data_dir.display()
            )
        })?;
        return Ok(Target::Server(http));
    }
    if let Some(url) = ServerMarker::read(data_dir) {
        let http = Http::new(&url)?;
        if http.health().await.is_ok() {
            return Ok(Target::Server(http));
        }
    }
    let opened = super::engine::open(data_dir)?;
    opened.engine.adopt_log_topics().await?;
    if views == Views::CaughtUp {
        // Answers reflect the whole log, as a server's would once caught up.
        opened.engine.catch_up().await?;
    }
    Ok(Target::Embedded(opened))
}

impl Target {
    /// Runs a statement that answers with a message (DDL).
    pub async fn statement(&self, sql: &str) -> anyhow::Result<String> {
        match self {
            Target::Server(http) => {
                let body = serde_json::json!({ "sql": sql }).to_string().into_bytes();
                let v = http
                    .json(
                        "POST",
                        "/v1/sql",
                        Some(body),
                        &[("content-type", "application/json")],
                    )
                    .await?;
                Ok(v["message"].as_str().unwrap_or_default().to_string())
            }
            Target::Embedded(opened) => match opened.engine.execute(sql).await? {
                kappa_engine::Output::Done(message) => Ok(message),
                kappa_engine::Output::Rows(_) => Ok(String::new()),
            },
        }
    }

    /// One atomic append: its token, or why the batch was refused (an
    /// outer error means it is not known whether it was appended).
    pub async fn append(
        &self,
        topic: &str,
        records: Vec<Bytes>,
        key_field: Option<String>,
    ) -> anyhow::Result<Result<String, Refused>> {
        match self {
            Target::Server(http) => {
                let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
                for r in &records {
                    body.extend_from_slice(r);
                    body.push(b'\n');
                }
                let path = with_query(
                    &format!("/v1/topics/{}/records", segment(topic)),
                    &[("key_field", key_field)],
                );
                let (status, answer) = http
                    .request(
                        "POST",
                        &path,
                        Some(body),
                        &[("content-type", "application/x-ndjson")],
                    )
                    .await
                    .context("the append's outcome is unknown (read the topic before retrying)")?;
                let v: serde_json::Value = serde_json::from_slice(&answer).with_context(|| {
                    format!("the server answered {status} with something not JSON")
                })?;
                if (200..300).contains(&status) {
                    return Ok(Ok(v["token"].as_str().unwrap_or_default().to_string()));
                }
                if status >= 500 {
                    bail!(
                        "{}",
                        v["error"]["message"]
                            .as_str()
                            .unwrap_or("the server failed")
                    );
                }
                Ok(Err(Refused {
                    message: v["error"]["message"]
                        .as_str()
                        .unwrap_or("the append was refused")
                        .to_string(),
                    record: v["error"]["record"].as_u64().map(|i| i as usize),
                }))
            }
            Target::Embedded(o) => {
                let options = JsonAppend {
                    conditions: Vec::new(),
                    key_field,
                };
                match o.engine.append_json_owned(topic, records, options).await {
                    Ok(result) => Ok(Ok(result.token.to_string())),
                    Err(e) => {
                        let record = match &e {
                            EngineError::RecordRejected { index, .. } => Some(*index),
                            _ => None,
                        };
                        match e {
                            EngineError::RecordRejected { .. }
                            | EngineError::Plan(_)
                            | EngineError::NotFound(_) => Ok(Err(Refused {
                                message: e.to_string(),
                                record,
                            })),
                            other => Err(other.into()),
                        }
                    }
                }
            }
        }
    }

    /// Closes an embedded data directory (a no-op for a server).
    pub fn close(self) {
        if let Target::Embedded(opened) = self {
            opened.close();
        }
    }
}

/// Why an append was refused (nothing of it was appended).
pub struct Refused {
    pub message: String,
    /// The record that did not fit, by its index in the batch.
    pub record: Option<usize>,
}

/// How a server-sent event stream ended.
pub enum StreamEnd {
    /// The handler asked to stop.
    Stopped,
    /// The server closed the stream.
    Closed,
}

/// A minimal HTTP/1 client for the server's API, over TLS for an
/// `https://` URL (trusting the system's roots, or only the CA in
/// `KAPPA_CA_CERT`).
pub struct Http {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Option<String>,
}

impl Http {
    pub fn new(url: &str) -> anyhow::Result<Http> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_client()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Http {
            base: url.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(https),
            token: std::env::var("KAPPA_AUTH_TOKEN").ok(),
        })
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

    /// Reads a server-sent event stream from `path`, calling `on` with
    /// each event's kind and data until it returns `false` or the stream
    /// ends. An error response becomes its message.
    pub async fn events(
        &self,
        path: &str,
        mut on: impl FnMut(&str, &str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<StreamEnd> {
        let response = self
            .send("GET", path, None, &[("accept", "text/event-stream")])
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            bail!(
                "{}",
                v["error"]["message"]
                    .as_str()
                    .unwrap_or(&format!("the server answered {status}"))
            );
        }
        let mut body = response.into_body();
        let (mut buf, mut kind, mut data) = (Vec::<u8>::new(), String::new(), String::new());
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the stream was cut off")?;
            let Some(bytes) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(bytes);
            // Whole lines only: a multi-byte character may straddle frames.
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() && !on(&kind, &data)? {
                        return Ok(StreamEnd::Stopped);
                    }
                    kind.clear();
                    data.clear();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
        Ok(StreamEnd::Closed)
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

/// The TLS client configuration: the CA certificates in the PEM file
/// `KAPPA_CA_CERT` if it is set (a server with a self-signed certificate),
/// else the system's roots.
fn tls_client() -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("KAPPA_CA_CERT") {
        Some(path) => {
            let shown = std::path::PathBuf::from(&path).display().to_string();
            for cert in CertificateDer::pem_file_iter(&path)
                .with_context(|| format!("cannot read KAPPA_CA_CERT {shown}"))?
            {
                let cert = cert.with_context(|| format!("KAPPA_CA_CERT {shown} is not PEM"))?;
                roots.add(cert).with_context(|| {
                    format!("KAPPA_CA_CERT {shown}: not a usable CA certificate")
                })?;
            }
        }
        None => {
            // Roots that do not load are skipped: an https server with a
            // certificate from them fails with a clear TLS error.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `path?k=v&...` with the values percent-encoded; pairs with no value
/// are left out.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// A path segment (a topic or view name), percent-encoded.
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
