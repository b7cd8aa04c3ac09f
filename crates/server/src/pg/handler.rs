//! One PostgreSQL session: simple and extended queries go to the engine,
//! with psql's catalog queries, SUBSCRIBE and the session statements
//! drivers send (BEGIN, SET, SHOW...) handled here.

use super::error::{to_pg, user_error};
use super::{catalog, encode, subscribe};
use crate::error::ApiError;
use crate::metrics::ServerMetrics;
use async_trait::async_trait;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures_util::stream;
use kappa_engine::{Engine, Output};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Where the last append's token is kept per session (`SHOW kappa_token`).
const TOKEN_KEY: &str = "kappa.token";

pub struct Backend {
    pub engine: Arc<Engine>,
    pub metrics: Arc<ServerMetrics>,
    parser: Arc<NoopQueryParser>,
    described: super::described::Described,
    /// A SUBSCRIBE whose client takes no rows for this long is ended.
    subscriber_max_lag: std::time::Duration,
}

impl Backend {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Arc<ServerMetrics>,
        subscriber_max_lag: std::time::Duration,
    ) -> Backend {
        Backend {
            engine,
            metrics,
            parser: Arc::new(NoopQueryParser::new()),
            described: Default::default(),
            subscriber_max_lag,
        }
    }

    /// Runs one statement.
    async fn statement<C: ClientInfo>(
        &self,
        client: &mut C,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<Response> {
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        let first = first_words(sql);
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        match first.as_slice() {
            ["BEGIN", ..] | ["START", "TRANSACTION", ..] => {
                return Ok(Response::TransactionStart(Tag::new("BEGIN")));
            }
            ["COMMIT", ..] | ["END", ..] => {
                return Ok(Response::TransactionEnd(Tag::new("COMMIT")));
            }
            ["ROLLBACK", ..] | ["ABORT", ..] => {
                return Ok(Response::TransactionEnd(Tag::new("ROLLBACK")));
            }
            ["SET", ..] | ["RESET", ..] => return Ok(Response::Execution(Tag::new("SET"))),
            ["DISCARD", ..] => return Ok(Response::Execution(Tag::new("DISCARD ALL"))),
            ["DEALLOCATE", ..] => return Ok(Response::Execution(Tag::new("DEALLOCATE"))),
            ["SHOW", name, ..] => return self.show(client, name, format),
            _ => {}
        }
        if let Some(answer) = catalog::answer(&self.engine, sql).await {
            let (fields, rows) = answer?;
            return Ok(Response::Query(QueryResponse::new(
                fields,
                stream::iter(rows.into_iter().map(Ok)),
            )));
        }
        let output = self
            .engine
            .execute(sql)
            .await
            .map_err(|e| to_pg(ApiError::from(e), sql))?;
        match output {
            Output::Rows(batches) => {
                let schema = batches
                    .first()
                    .map(|b| b.schema())
                    .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
                let fields = Arc::new(encode::fields(&schema, format));
                let rows = encode::rows(&fields, &batches)?;
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    stream::iter(rows.into_iter().map(Ok)),
                )))
            }
            Output::Done(message) => Ok(Response::Execution(self.tag(client, &first, &message))),
        }
    }

    /// The command tag PostgreSQL clients expect (`INSERT 0 3`, `CREATE
    /// VIEW`...), keeping an INSERT's token for `SHOW kappa_token`.
    fn tag<C: ClientInfo>(&self, client: &mut C, first: &[&str], message: &str) -> Tag {
        match first {
            ["INSERT", ..] => {
                // "INSERT 0 <n> (token kt1-...)"
                let rows = message
                    .split_whitespace()
                    .nth(2)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if let Some(token) = message.split("token ").nth(1) {
                    client
                        .metadata_mut()
                        .insert(TOKEN_KEY.into(), token.trim_end_matches(')').to_string());
                }
                Tag::new("INSERT").with_oid(0).with_rows(rows)
            }
            [a, b, ..] if *b != "OR" => Tag::new(&format!("{a} {b}")),
            [a, ..] => Tag::new(a),
            [] => Tag::new("OK"),
        }
    }

    fn show<C: ClientInfo>(
        &self,
        client: &C,
        name: &str,
        format: &Format,
    ) -> PgWireResult<Response> {
        let name = name.to_ascii_lowercase();
        let value = match name.as_str() {
            "kappa_token" => client.metadata().get(TOKEN_KEY).cloned(),
            "server_version" => Some("15.0".into()),
            "transaction_isolation" | "transaction isolation" => Some("serializable".into()),
            "standard_conforming_strings" => Some("on".into()),
            "client_encoding" | "server_encoding" => Some("UTF8".into()),
            "datestyle" => Some("ISO, MDY".into()),
            "timezone" => Some("UTC".into()),
            "search_path" => Some("public".into()),
            _ => {
                return Err(user_error(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                ));
            }
        };
        let fields = Arc::new(vec![FieldInfo::new(
            name,
            None,
            None,
            Type::TEXT,
            format.format_for(0),
        )]);
        let mut e = pgwire::api::results::DataRowEncoder::new(fields.clone());
        e.encode_field(&value)?;
        let row = e.take_row();
        Ok(Response::Query(QueryResponse::new(
            fields,
            stream::iter(vec![Ok(row)]),
        )))
    }

    /// The columns a statement returns, without running it.
    async fn describe(&self, sql: &str, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
        let first = first_words(sql);
        if first.first().map(String::as_str) == Some("SHOW") {
            let name = first
                .get(1)
                .cloned()
                .unwrap_or_default()
                .to_ascii_lowercase();
            return Ok(vec![FieldInfo::new(
                name,
                None,
                None,
                Type::TEXT,
                format.format_for(0),
            )]);
        }
        if matches!(
            first.first().map(String::as_str),
            Some(
                "BEGIN"
                    | "START"
                    | "COMMIT"
                    | "END"
                    | "ROLLBACK"
                    | "ABORT"
                    | "SET"
                    | "RESET"
                    | "DISCARD"
                    | "DEALLOCATE"
            )
        ) {
            return Ok(Vec::new());
        }
        if let Some(answer) = catalog::answer(&self.engine, sql).await {
            return Ok(answer?.0.iter().cloned().collect());
        }
        if let Some(s) = subscribe::parse(sql) {
            let s = s?;
            if s.copy {
                return Ok(Vec::new());
            }
            let schema = self
                .engine
                .view_schema(&s.view)
                .await
                .map_err(|e| to_pg(ApiError::from(e), sql))?;
            return Ok(subscribe::fields(&schema, s.progress, format));
        }
        match self.engine.describe(sql).await {
            Ok(Some(schema)) => Ok(encode::fields(&schema, format)),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(to_pg(ApiError::from(e), sql)),
        }
    }
}

/// The first words of a statement, upper-cased (for dispatch).
fn first_words(sql: &str) -> Vec<String> {
    sql.split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// Splits a simple query into statements at top-level semicolons.
fn statements(sql: &str) -> PgWireResult<Vec<String>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| user_error("42601", format!("SQL syntax error: {e}")))?;
    let mut out = Vec::new();
    let mut current = String::new();
    for t in tokens {
        if matches!(t, Token::SemiColon) {
            if !current.trim().is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.clear();
        } else if !matches!(t, Token::EOF) {
            current.push_str(&t.to_string());
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// The statement with `$n` replaced by the bound parameters, as SQL
/// literals.
fn bind(portal: &Portal<String>) -> PgWireResult<String> {
    let sql = &portal.statement.statement;
    if portal.parameter_len() == 0 {
        return Ok(sql.clone());
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| user_error("42601", format!("SQL syntax error: {e}")))?;
    let mut out = String::with_capacity(sql.len() + 16);
    for t in tokens {
        match &t {
            Token::Placeholder(p) if p.starts_with('$') => {
                let n: usize = p[1..]
                    .parse()
                    .map_err(|_| user_error("42601", format!("bad parameter {p}")))?;
                if n == 0 || n > portal.parameter_len() {
                    return Err(user_error(
                        "08P01",
                        format!(
                            "{p} has no value: {} parameter(s) were bound",
                            portal.parameter_len()
                        ),
                    ));
                }
                out.push_str(&literal(portal, n - 1)?);
            }
            Token::EOF => {}
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

fn literal(portal: &Portal<String>, i: usize) -> PgWireResult<String> {
    let ty = portal
        .statement
        .parameter_types
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or(Type::UNKNOWN);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let binary = matches!(portal.parameter_format.format_for(i), FieldFormat::Binary);
    if portal.parameters[i].is_none() {
        return Ok("NULL".into());
    }
    // A binary parameter of a native type, as SQL text.
    macro_rules! binary_value {
        ($t:ty) => {
            portal
                .parameter::<$t>(i, &ty)
                .map_err(|e| user_error("22P02", format!("parameter ${}: {e}", i + 1)))?
                .map_or_else(|| "NULL".to_string(), |v| v.to_string())
        };
    }
    Ok(match ty {
        Type::INT2 if binary => binary_value!(i16),
        Type::INT4 if binary => binary_value!(i32),
        Type::INT8 if binary => binary_value!(i64),
        Type::FLOAT4 if binary => binary_value!(f32),
        Type::FLOAT8 if binary => binary_value!(f64),
        Type::BOOL if binary => binary_value!(bool).to_uppercase(),
        _ if binary && ty != Type::TEXT && ty != Type::VARCHAR => {
            return Err(user_error(
                "0A000",
                format!(
                    "parameter ${} is binary {}; send it as text",
                    i + 1,
                    ty.name()
                ),
            ));
        }
        _ => {
            let raw = portal.parameters[i].as_ref().expect("checked above");
            let text = std::str::from_utf8(raw).map_err(|_| {
                user_error("22021", format!("parameter ${} is not valid UTF-8", i + 1))
            })?;
            match ty {
                Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                    if text.parse::<f64>().is_ok() =>
                {
                    text.to_string()
                }
                Type::BOOL => match text {
                    "t" | "true" | "TRUE" | "1" | "on" => "TRUE".into(),
                    _ => "FALSE".into(),
                },
                _ => quote(text),
            }
        }
    })
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures_util::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as futures_util::Sink<PgWireBackendMessage>>::Error>,
    {
        let mut out = Vec::new();
        for sql in statements(query)? {
            if let Some(s) = subscribe::parse(&sql) {
                // Streams until the client leaves or the feed fails.
                subscribe::run(
                    &self.engine,
                    s?,
                    &Format::UnifiedText,
                    client,
                    true,
                    self.subscriber_max_lag,
                )
                .await?;
                continue;
            }
            out.push(self.statement(client, &sql, &Format::UnifiedText).await?);
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures_util::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as futures_util::Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = bind(portal)?;
        let sql = sql.trim().trim_end_matches(';');
        if let Some(s) = subscribe::parse(sql) {
            subscribe::run(
                &self.engine,
                s?,
                &portal.result_column_format,
                client,
                false,
                self.subscriber_max_lag,
            )
            .await?;
            return Ok(Response::EmptyQuery);
        }
        self.statement(client, sql, &portal.result_column_format)
            .await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures_util::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as futures_util::Sink<PgWireBackendMessage>>::Error>,
    {
        // Parameters: as many as the highest $n; types as the client gave
        // them, else text.
        let sql = &target.statement;
        let count = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| match t {
                        Token::Placeholder(p) => p.strip_prefix('$')?.parse::<usize>().ok(),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let types: Vec<Type> = (0..count.max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        // The columns, planned with every parameter NULL.
        let fields = if count == 0 {
            self.describe(sql, &Format::UnifiedText).await?
        } else {
            let nulls = (1..=count)
                .rev()
                .fold(sql.clone(), |s, n| s.replace(&format!("${n}"), "NULL"));
            self.describe(&nulls, &Format::UnifiedText)
                .await
                .unwrap_or_default()
        };
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures_util::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as futures_util::Sink<PgWireBackendMessage>>::Error>,
    {
        // Read before describing: a catalog change meanwhile makes the
        // entry stale at once.
        let version = self.engine.catalog_version();
        let key = super::described::Described::key(portal);
        if let Some(fields) = self.described.get(&key, version) {
            return Ok(DescribePortalResponse::new(fields));
        }
        let sql = bind(portal)?;
        let fields = self
            .describe(
                sql.trim().trim_end_matches(';'),
                &portal.result_column_format,
            )
            .await?;
        self.described.put(key, version, fields.clone());
        Ok(DescribePortalResponse::new(fields))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_statements_outside_strings() {
        let s = super::statements("SELECT 'a;b'; SELECT 2;;").unwrap();
        assert_eq!(s, ["SELECT 'a;b'", " SELECT 2"]);
        assert_eq!(
            super::first_words(" insert into t values (1)"),
            ["INSERT", "INTO", "T"]
        );
    }
}
