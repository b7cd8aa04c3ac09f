//! `SUBSCRIBE [TO] view [WITH (SNAPSHOT = false, PROGRESS)] [AS OF ...]`
//! and `COPY (SUBSCRIBE ...) TO STDOUT`, as Materialize has them: rows
//! stream as the view changes and the statement never completes on its
//! own. Each row is `(kappa_log_time, kappa_diff, [kappa_progressed,]
//! columns...)`: the snapshot's rows with diff +1, then each change as
//! -1 (the row before) and +1 (the row after). With PROGRESS, a row with
//! `kappa_progressed = true` marks that every change up to its log time
//! has been sent; resume with `AFTER <that log time>`.

use super::encode;
use super::error::user_error;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures_util::{FutureExt, Sink, SinkExt};
use kappa_engine::Engine;
use kappa_engine::feed::{Feed, FeedEvent, FeedStart};
use kappa_log::LogTime;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyOutResponse};
use pgwire::messages::data::RowDescription;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, PartialEq)]
pub struct Subscribe {
    pub view: String,
    pub snapshot: bool,
    pub progress: bool,
    /// AS OF (a snapshot there) or AFTER (changes after it).
    pub at: Option<LogTime>,
    pub after: Option<LogTime>,
    /// Inside `COPY (...) TO STDOUT`.
    pub copy: bool,
}

fn words(sql: &str) -> Option<Vec<Token>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
            .collect(),
    )
}

fn is(t: Option<&Token>, w: &str) -> bool {
    matches!(t, Some(Token::Word(x)) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none())
}

fn point(t: &Token) -> PgWireResult<LogTime> {
    let text = match t {
        Token::SingleQuotedString(s) => s.clone(),
        Token::Number(n, _) => n.clone(),
        other => {
            return Err(user_error(
                "42601",
                format!("expected a point in the log after AS OF or AFTER, got {other}"),
            ));
        }
    };
    crate::point::parse_point(&text).map_err(|e| user_error("22007", e))
}

/// Parses SUBSCRIBE (or COPY (SUBSCRIBE ...) TO STDOUT); `None` if `sql`
/// is neither.
pub fn parse(sql: &str) -> Option<PgWireResult<Subscribe>> {
    // Most statements are not subscriptions: tell at a glance.
    let first = sql
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default();
    if !(first.eq_ignore_ascii_case("SUBSCRIBE") || first.eq_ignore_ascii_case("COPY")) {
        return None;
    }
    let mut t = words(sql)?;
    let mut copy = false;
    if is(t.first(), "COPY") && matches!(t.get(1), Some(Token::LParen)) && is(t.get(2), "SUBSCRIBE")
    {
        // COPY ( ... ) TO STDOUT
        let close = t.iter().rposition(|x| matches!(x, Token::RParen))?;
        let tail: Vec<Token> = t[close + 1..].to_vec();
        if !(is(tail.first(), "TO") && is(tail.get(1), "STDOUT")) {
            return Some(Err(user_error(
                "0A000",
                "COPY (SUBSCRIBE ...) goes TO STDOUT",
            )));
        }
        t = t[2..close].to_vec();
        copy = true;
    }
    if !is(t.first(), "SUBSCRIBE") {
        return None;
    }
    Some(parse_words(&t, copy))
}

fn parse_words(t: &[Token], copy: bool) -> PgWireResult<Subscribe> {
    let mut i = 1;
    if is(t.get(i), "TO") {
        i += 1;
    }
    let view = match t.get(i) {
        Some(Token::Word(w)) => w.value.clone(),
        _ => {
            return Err(user_error(
                "42601",
                "SUBSCRIBE needs a view name: SUBSCRIBE [TO] view",
            ));
        }
    };
    i += 1;
    let mut s = Subscribe {
        view,
        snapshot: true,
        progress: false,
        at: None,
        after: None,
        copy,
    };
    while i < t.len() {
        if is(t.get(i), "WITH") && matches!(t.get(i + 1), Some(Token::LParen)) {
            i += 2;
            while i < t.len() && !matches!(t[i], Token::RParen) {
                let Some(Token::Word(option)) = t.get(i) else {
                    return Err(user_error("42601", "expected an option name in WITH (...)"));
                };
                let name = option.value.to_ascii_uppercase();
                i += 1;
                let mut value = true;
                if matches!(t.get(i), Some(Token::Eq)) {
                    value = match t.get(i + 1) {
                        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("true") => true,
                        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("false") => false,
                        other => {
                            return Err(user_error(
                                "42601",
                                format!("{name} takes true or false, not {other:?}"),
                            ));
                        }
                    };
                    i += 2;
                }
                match name.as_str() {
                    "SNAPSHOT" => s.snapshot = value,
                    "PROGRESS" => s.progress = value,
                    other => {
                        return Err(user_error(
                            "42601",
                            format!("unknown SUBSCRIBE option {other} (known: SNAPSHOT, PROGRESS)"),
                        ));
                    }
                }
                if matches!(t.get(i), Some(Token::Comma)) {
                    i += 1;
                }
            }
            i += 1;
        } else if is(t.get(i), "AS") && is(t.get(i + 1), "OF") {
            let mut j = i + 2;
            if is(t.get(j), "TIMESTAMP") || is(t.get(j), "TOKEN") {
                j += 1;
            }
            let Some(p) = t.get(j) else {
                return Err(user_error("42601", "AS OF needs a point"));
            };
            s.at = Some(point(p)?);
            i = j + 1;
        } else if is(t.get(i), "AFTER") {
            let Some(p) = t.get(i + 1) else {
                return Err(user_error("42601", "AFTER needs a point"));
            };
            s.after = Some(point(p)?);
            i += 2;
        } else {
            return Err(user_error(
                "42601",
                format!("unexpected {} in SUBSCRIBE", t[i]),
            ));
        }
    }
    Ok(s)
}

impl Subscribe {
    fn start(&self, frontier: LogTime) -> FeedStart {
        match (self.after, self.at, self.snapshot) {
            (Some(t), _, _) => FeedStart::After(t),
            (None, Some(t), true) => FeedStart::SnapshotAt(t),
            (None, Some(t), false) => FeedStart::After(t),
            (None, None, true) => FeedStart::Now,
            (None, None, false) => FeedStart::After(frontier),
        }
    }
}

/// One output row: log time, diff, progressed (with PROGRESS), values
/// (`None`: a progress row).
struct Out {
    log_time: LogTime,
    diff: i64,
    values: Option<Vec<ScalarValue>>,
}

/// Turns feed events into output rows, in order.
struct Rows {
    feed: Feed,
    progress: bool,
    pending: VecDeque<Out>,
}

impl Rows {
    async fn next(&mut self) -> PgWireResult<Out> {
        loop {
            if let Some(o) = self.pending.pop_front() {
                return Ok(o);
            }
            let event = self
                .feed
                .next()
                .await
                .map_err(|e| super::error::to_pg(crate::error::ApiError::from(e), ""))?;
            match event {
                FeedEvent::Replaced { version } => {
                    // Its columns may differ from the ones described.
                    return Err(super::error::user_error(
                        "55000",
                        format!(
                            "the view was replaced by version {version}; SUBSCRIBE again for its rows"
                        ),
                    ));
                }
                FeedEvent::Snapshot { at, rows, .. } => {
                    for i in 0..rows.num_rows() {
                        let values = rows
                            .columns()
                            .iter()
                            .map(|c| ScalarValue::try_from_array(c.as_ref(), i))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                        self.pending.push_back(Out {
                            log_time: at,
                            diff: 1,
                            values: Some(values),
                        });
                    }
                }
                FeedEvent::Change {
                    log_time,
                    before,
                    after,
                    ..
                } => {
                    if let Some(b) = before {
                        self.pending.push_back(Out {
                            log_time,
                            diff: -1,
                            values: Some(b),
                        });
                    }
                    if let Some(a) = after {
                        self.pending.push_back(Out {
                            log_time,
                            diff: 1,
                            values: Some(a),
                        });
                    }
                }
                FeedEvent::Progress { frontier } => {
                    if self.progress {
                        self.pending.push_back(Out {
                            log_time: frontier,
                            diff: 0,
                            values: None,
                        });
                    }
                }
            }
        }
    }
}

/// The columns of a SUBSCRIBE: log time, diff, [progressed,] the view's.
pub fn fields(
    schema: &datafusion::arrow::datatypes::Schema,
    progress: bool,
    format: &Format,
) -> Vec<FieldInfo> {
    let mut fields = vec![
        FieldInfo::new(
            "kappa_log_time".into(),
            None,
            None,
            Type::INT8,
            format.format_for(0),
        ),
        FieldInfo::new(
            "kappa_diff".into(),
            None,
            None,
            Type::INT8,
            format.format_for(1),
        ),
    ];
    if progress {
        fields.push(FieldInfo::new(
            "kappa_progressed".into(),
            None,
            None,
            Type::BOOL,
            format.format_for(2),
        ));
    }
    let offset = fields.len();
    for (i, f) in schema.fields().iter().enumerate() {
        fields.push(FieldInfo::new(
            f.name().clone(),
            None,
            None,
            encode::pg_type(f.data_type()),
            format.format_for(offset + i),
        ));
    }
    fields
}

/// Runs a SUBSCRIBE on this connection: sends its rows (or COPY data)
/// as they come, flushing whenever it waits for the view, until the client
/// goes away or the feed fails. `describe`: also send the row description
/// (the simple protocol; the extended one sent it at Describe).
///
/// Memory is bounded: the feed is pulled only as fast as the connection
/// takes rows. A client that takes none for `max_lag` while rows wait is
/// ended (FATAL 53400); one that takes no bytes at all is cut by the
/// kernel's TCP user timeout (the send timeout) even mid-write.
pub async fn run<C>(
    engine: &Arc<Engine>,
    s: Subscribe,
    format: &Format,
    client: &mut C,
    describe: bool,
    max_lag: std::time::Duration,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let api = |e| super::error::to_pg(crate::error::ApiError::from(e), "");
    let frontier = engine.frontier(&s.view).await.map_err(api)?;
    let feed = engine
        .subscribe(&s.view, s.start(frontier))
        .await
        .map_err(api)?;
    let schema = feed.schema().clone();
    let mut rows = Rows {
        feed,
        progress: s.progress,
        pending: VecDeque::new(),
    };
    let fields = Arc::new(fields(&schema, s.progress, format));
    let n_columns = fields.len();
    let offset = 2 + usize::from(s.progress);
    if s.copy {
        let header = CopyOutResponse::new(0, n_columns as i16, vec![0; n_columns]);
        client
            .send(PgWireBackendMessage::CopyOutResponse(header))
            .await?;
    } else if describe {
        let description = RowDescription::new(fields.iter().map(Into::into).collect());
        client
            .send(PgWireBackendMessage::RowDescription(description))
            .await?;
    }
    let mut encoder = DataRowEncoder::new(fields.clone());
    // A cancel request (what a client sends to stop reading) ends it:
    // pgwire races every query against the session's cancel signal.
    loop {
        // Send what is ready without flushing; flush before waiting.
        let o = match rows.next().now_or_never() {
            Some(o) => o?,
            None => {
                {
                    // (Scoped: the client's error type need not be Send.)
                    let flush = SinkExt::<PgWireBackendMessage>::flush(client);
                    match tokio::time::timeout(max_lag, flush).await {
                        Ok(done) => done?,
                        Err(_) => return Err(too_slow(max_lag)),
                    }
                }
                rows.next().await?
            }
        };
        let message = if s.copy {
            let mut cells = vec![o.log_time.0.to_string(), o.diff.to_string()];
            if s.progress {
                cells.push(if o.values.is_none() { "t" } else { "f" }.into());
            }
            match &o.values {
                Some(v) => cells.extend(v.iter().map(encode::copy_text)),
                None => cells.extend((offset..n_columns).map(|_| "\\N".to_string())),
            }
            let mut line = cells.join("\t");
            line.push('\n');
            PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(line)))
        } else {
            encoder.encode_field(&(o.log_time.0.min(i64::MAX as u64) as i64))?;
            encoder.encode_field(&o.diff)?;
            if s.progress {
                encoder.encode_field(&o.values.is_none())?;
            }
            match &o.values {
                Some(v) => encode::scalar_cells(&mut encoder, v, &fields[offset..])?,
                None => {
                    for _ in offset..n_columns {
                        encoder.encode_field(&None::<String>)?;
                    }
                }
            }
            PgWireBackendMessage::DataRow(encoder.take_row())
        };
        // Feeding flushes once the connection's buffer is full.
        match tokio::time::timeout(max_lag, client.feed(message)).await {
            Ok(fed) => fed?,
            Err(_) => return Err(too_slow(max_lag)),
        }
    }
}

fn too_slow(max_lag: std::time::Duration) -> PgWireError {
    PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
        "FATAL".into(),
        "53400".into(),
        format!(
            "this subscriber took no rows for {} ms while rows were waiting; disconnected. Read faster, or resume with SUBSCRIBE ... AFTER the last kappa_log_time you got",
            max_lag.as_millis()
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe_forms() {
        let s = parse("SUBSCRIBE TO bal WITH (SNAPSHOT = false, PROGRESS) AFTER 42;")
            .unwrap()
            .unwrap();
        assert_eq!(s.view, "bal");
        assert!(!s.snapshot && s.progress && !s.copy);
        assert_eq!(s.after, Some(LogTime(42)));
        let s = parse("COPY (SUBSCRIBE bal AS OF TIMESTAMP '2026-01-01 00:00:00') TO STDOUT")
            .unwrap()
            .unwrap();
        assert!(s.copy && s.snapshot);
        assert_eq!(s.at, Some(LogTime(1_767_225_600_000_000)));
        assert!(parse("SELECT 1").is_none());
        assert!(parse("SUBSCRIBE").unwrap().is_err());
        assert!(parse("SUBSCRIBE v WITH (FOO)").unwrap().is_err());
    }
}
