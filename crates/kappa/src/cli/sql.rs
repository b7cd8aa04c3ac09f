//! `kappa sql "..."`: one statement, through the server or on the data
//! directory; rows as an aligned table, JSON, NDJSON or CSV.

use super::target::Target;
use anyhow::bail;
use clap::{Args, ValueEnum};
use kappa_engine::{Output, QueryOptions};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub enum SqlFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

#[derive(Args)]
pub struct SqlArgs {
    /// One statement (DDL, INSERT, or a query, optionally AS OF).
    pub sql: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
    /// Answer only once the views read have applied the log up to this
    /// token (from an append).
    #[arg(long)]
    pub token: Option<String>,
}

pub async fn run(target: Target, args: SqlArgs) -> anyhow::Result<ExitCode> {
    let out = match target {
        Target::Server(http) => {
            let accept = match args.format {
                SqlFormat::Table | SqlFormat::Json => "application/json",
                SqlFormat::Ndjson => "application/x-ndjson",
                SqlFormat::Csv => "text/csv",
            };
            let body = serde_json::json!({ "sql": args.sql, "token": args.token });
            let (status, body) = http
                .request(
                    "POST",
                    "/v1/sql",
                    Some(body.to_string().into_bytes()),
                    &[("content-type", "application/json"), ("accept", accept)],
                )
                .await?;
            if !(200..300).contains(&status) {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                bail!(
                    "{}",
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or(&String::from_utf8_lossy(&body))
                );
            }
            match args.format {
                SqlFormat::Table => render(&serde_json::from_slice(&body)?),
                _ => body.to_vec(),
            }
        }
        Target::Embedded(opened) => {
            let after = match &args.token {
                Some(t) => Some(
                    t.parse()
                        .map_err(|e| anyhow::anyhow!("--token {t:?}: {e}"))?,
                ),
                None => None,
            };
            let options = QueryOptions {
                after,
                timeout: Duration::from_secs(10),
            };
            let output = opened.engine.execute_with(&args.sql, &options).await;
            // Whatever the statement did is committed; close cleanly.
            if let Err(e) = opened.engine.catch_up().await {
                tracing::warn!(error = %e, "catching views up after the statement failed");
            }
            let out = match output? {
                Output::Done(message) => format!("{message}\n").into_bytes(),
                Output::Rows(batches) => {
                    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| {
                        std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty())
                    });
                    match args.format {
                        SqlFormat::Table => render(&kappa_server::format::json(&schema, &batches)),
                        SqlFormat::Json => kappa_server::format::json(&schema, &batches)
                            .to_string()
                            .into_bytes(),
                        SqlFormat::Ndjson => kappa_server::format::ndjson(&schema, &batches),
                        SqlFormat::Csv => kappa_server::format::csv(&schema, &batches)
                            .map_err(|e| anyhow::anyhow!(e))?,
                    }
                }
            };
            opened.close();
            out
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    if !out.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A statement's result: a table of rows, or its message.
fn render(v: &serde_json::Value) -> Vec<u8> {
    match v.get("message").and_then(|m| m.as_str()) {
        Some(m) => format!("{m}\n").into_bytes(),
        None => super::table::render(v).into_bytes(),
    }
}
