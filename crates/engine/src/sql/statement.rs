//! Kappa's statements, parsed with DataFusion's SQL parser (sqlparser) in
//! its PostgreSQL dialect. Two additions to plain PostgreSQL:
//!
//! - `CREATE TOPIC name [(columns)] [WITH (...)]` is parsed as `CREATE TABLE`
//!   with the keyword swapped at token level;
//! - a query may end in `AS OF TIMESTAMP '...'` or `AS OF TOKEN '...'`
//!   (Materialize's place for it: one point for the whole query, so several
//!   views are read at one common point). The clause is cut off at token
//!   level and the rest is the query.

use crate::EngineError;
use crate::schema::{Column, ColumnType, TopicDef};
use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateTableOptions, Expr, ObjectType, SqlOption, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer, Word};
use kappa_log::{Cleanup, TopicConfig};

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateTopic {
        def: TopicDef,
        config: TopicConfig,
    },
    CreateView {
        name: String,
        /// The defining SELECT, as SQL text.
        query: String,
        /// CREATE OR REPLACE: build a new version beside the live one.
        or_replace: bool,
        /// `WITH (verify_every = '1 day')`: verify on a schedule.
        verify_every_micros: Option<u64>,
        /// How long history is kept for AS OF, in microseconds.
        history_micros: u64,
    },
    Drop {
        kind: DropKind,
        name: String,
        if_exists: bool,
    },
    Query {
        sql: String,
        as_of: Option<AsOf>,
        /// Set when the query reads one row by equalities (a fast path).
        point: Option<super::point::PointQuery>,
    },
    /// An append.
    Insert(super::insert::Insert),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropKind {
    Topic,
    View,
}

/// The point a query reads at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsOf {
    Timestamp(String),
    Token(String),
}

/// Default history retention for AS OF: one day.
pub const DEFAULT_HISTORY_MICROS: u64 = 24 * 3600 * 1_000_000;

pub fn parse(sql: &str) -> Result<Statement, EngineError> {
    let dialect = PostgreSqlDialect {};
    // Tokens are rewritten in place (one for one) or cut at the end; their
    // spans stay beside them so that parse errors name a line and column.
    let (mut tokens, spans): (Vec<Token>, Vec<Span>) = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| EngineError::Syntax(e.to_string()))?
        .into_iter()
        .map(|t| (t.token, t.span))
        .unzip();
    let words: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect();
    let word = |n: usize| match words.get(n).map(|&i| &tokens[i]) {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    if word(0) == "CREATE" && word(1) == "TOPIC" {
        tokens[words[1]] = Token::Word(Word {
            value: "TABLE".into(),
            quote_style: None,
            keyword: Keyword::TABLE,
        });
        let stmt = parse_one(&dialect, tokens, &spans)?;
        return create_topic(stmt);
    }
    if word(0) == "DROP" && word(1) == "TOPIC" {
        let (if_exists, name_at) = if word(2) == "IF" && word(3) == "EXISTS" {
            (true, 4)
        } else {
            (false, 2)
        };
        let name = match words.get(name_at).map(|&i| &tokens[i]) {
            Some(Token::Word(w)) => w.value.clone(),
            _ => return Err(EngineError::Syntax("DROP TOPIC needs a topic name".into())),
        };
        if words.len() > name_at + 1 && !matches!(tokens[words[name_at + 1]], Token::SemiColon) {
            return Err(EngineError::Syntax(format!(
                "unexpected {} after DROP TOPIC {name}",
                tokens[words[name_at + 1]]
            )));
        }
        return Ok(Statement::Drop {
            kind: DropKind::Topic,
            name,
            if_exists,
        });
    }
    let as_of = cut_as_of(&mut tokens)?;
    let text: String = tokens.iter().map(|t| t.to_string()).collect();
    let stmt = parse_one(&dialect, tokens, &spans)?;
    match stmt {
        ast::Statement::Query(q) => Ok(Statement::Query {
            sql: text.trim().trim_end_matches(';').to_string(),
            point: super::point::point_query(&q),
            as_of,
        }),
        _ if as_of.is_some() => Err(EngineError::Syntax(
            "AS OF belongs at the end of a SELECT".into(),
        )),
        ast::Statement::CreateView(v) => {
            // Every view is materialized: CREATE MATERIALIZED VIEW is the same.
            let mut history_micros = DEFAULT_HISTORY_MICROS;
            let mut verify_every_micros = None;
            for (key, value) in options(&v.options)? {
                match key.as_str() {
                    "history" => history_micros = parse_interval_micros(&value)?,
                    "verify_every" => {
                        let every = parse_interval_micros(&value)?;
                        if every < 60_000_000 {
                            return Err(EngineError::Plan(format!(
                                "verify_every = '{value}': at least '1 minute' (each verify rebuilds the view from the log)"
                            )));
                        }
                        verify_every_micros = Some(every);
                    }
                    other => {
                        return Err(EngineError::Plan(format!(
                            "unknown view option {other:?} (known: history, verify_every)"
                        )));
                    }
                }
            }
            Ok(Statement::CreateView {
                name: plain_name(&v.name)?,
                query: v.query.to_string(),
                history_micros,
                or_replace: v.or_replace,
                verify_every_micros,
            })
        }
        ast::Statement::Insert(i) => Ok(Statement::Insert(super::insert::insert(&i)?)),
        ast::Statement::Drop {
            object_type: ObjectType::View | ObjectType::MaterializedView,
            if_exists,
            names,
            ..
        } if names.len() == 1 => Ok(Statement::Drop {
            kind: DropKind::View,
            name: plain_name(&names[0])?,
            if_exists,
        }),
        other => Err(EngineError::Unsupported {
            construct: first_words(&other.to_string()),
            hint:
                " (Kappa runs SELECT, INSERT, CREATE TOPIC, CREATE VIEW, DROP TOPIC and DROP VIEW)"
                    .into(),
        }),
    }
}

fn parse_one(
    dialect: &PostgreSqlDialect,
    tokens: Vec<Token>,
    spans: &[Span],
) -> Result<ast::Statement, EngineError> {
    let located = tokens
        .into_iter()
        .zip(spans.iter().copied())
        .map(|(token, span)| TokenWithSpan::new(token, span))
        .collect();
    let mut stmts = Parser::new(dialect)
        .with_tokens_with_locations(located)
        .parse_statements()
        .map_err(|e| {
            let mut message = e.to_string();
            // The end of input has no span of its own: name where it is.
            if message.ends_with("found: EOF") {
                let (line, column) = spans
                    .iter()
                    .rev()
                    .find(|s| s.end.line > 0)
                    .map_or((1, 1), |s| (s.end.line, s.end.column));
                message = format!(
                    "{}, found the end of the statement at Line: {line}, Column: {column}",
                    message.trim_end_matches(", found: EOF")
                );
            }
            EngineError::Syntax(message)
        })?;
    match stmts.len() {
        1 => Ok(stmts.remove(0)),
        0 => Err(EngineError::Syntax("empty statement".into())),
        n => Err(EngineError::Syntax(format!(
            "{n} statements given; send one at a time"
        ))),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Removes a trailing `AS OF TIMESTAMP|TOKEN 'literal'` (before an optional
/// `;`) and returns it.
fn cut_as_of(tokens: &mut Vec<Token>) -> Result<Option<AsOf>, EngineError> {
    let idx: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
        .map(|(i, _)| i)
        .collect();
    let is_word = |i: usize, w: &str| matches!(&tokens[i], Token::Word(x) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none());
    // The last `AS OF` (outside strings: those are single tokens).
    let Some(at) = (1..idx.len())
        .rev()
        .find(|&n| is_word(idx[n - 1], "AS") && is_word(idx[n], "OF"))
        .map(|n| n - 1)
    else {
        return Ok(None);
    };
    if idx.len() != at + 4 {
        return Err(EngineError::Syntax(
            "AS OF goes at the end of a query: AS OF TIMESTAMP '2026-01-01 00:00:00' or AS OF TOKEN 'kt1-...'".into(),
        ));
    }
    let last4 = &idx[at..];
    let literal = match &tokens[last4[3]] {
        Token::SingleQuotedString(s) => s.clone(),
        other => {
            return Err(EngineError::Syntax(format!(
                "AS OF needs a quoted point, as in AS OF TIMESTAMP '2026-01-01 00:00:00' or AS OF TOKEN 'kt1-...'; got {other}"
            )));
        }
    };
    let as_of = if is_word(last4[2], "TIMESTAMP") {
        AsOf::Timestamp(literal)
    } else if is_word(last4[2], "TOKEN") {
        AsOf::Token(literal)
    } else {
        return Err(EngineError::Syntax(format!(
            "AS OF takes TIMESTAMP '...' or TOKEN '...', not {}",
            tokens[last4[2]]
        )));
    };
    tokens.truncate(last4[0]);
    Ok(Some(as_of))
}

fn create_topic(stmt: ast::Statement) -> Result<Statement, EngineError> {
    let ast::Statement::CreateTable(ct) = stmt else {
        return Err(EngineError::Syntax(
            "expected CREATE TOPIC name (...)".into(),
        ));
    };
    let name = plain_name(&ct.name)?;
    let columns = if ct.columns.is_empty() {
        None
    } else {
        let mut cols = Vec::new();
        for c in &ct.columns {
            let type_name = c.data_type.to_string();
            let ty = ColumnType::from_sql(&type_name).ok_or_else(|| EngineError::Unsupported {
                construct: format!("column type {type_name} (column {})", c.name.value),
                hint: " (use TEXT, BIGINT, DOUBLE, BOOLEAN or TIMESTAMP)".into(),
            })?;
            let not_null = c
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::NotNull));
            if cols.iter().any(|x: &Column| x.name == c.name.value) {
                return Err(EngineError::Plan(format!(
                    "column {} given twice",
                    c.name.value
                )));
            }
            if c.name.value.starts_with('_') {
                return Err(EngineError::Plan(format!(
                    "column {}: names starting with _ are reserved for metadata columns",
                    c.name.value
                )));
            }
            cols.push(Column {
                name: c.name.value.clone(),
                ty,
                not_null,
            });
        }
        Some(cols)
    };
    let mut def = TopicDef {
        name,
        columns,
        key: None,
        event_time: None,
    };
    let mut config = TopicConfig::with_partitions(1);
    let mut compact = false;
    let mut tombstone_retention_ms = TopicConfig::DEFAULT_TOMBSTONE_RETENTION_MS;
    for (key, value) in options(&ct.table_options)? {
        match key.as_str() {
            "partitions" => {
                config.partitions = value.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    EngineError::Plan(format!("partitions must be a positive number, got {value}"))
                })?
            }
            "key" => def.key = Some(value),
            "event_time" => def.event_time = Some(value),
            "retention" => {
                config.retention = kappa_log::units::retention(&value).map_err(EngineError::Plan)?
            }
            "cleanup" => {
                compact = match value.to_ascii_lowercase().as_str() {
                    "delete" => false,
                    "compact" => true,
                    _ => {
                        return Err(EngineError::Plan(format!(
                            "cleanup = '{value}': use 'delete' (the default) or 'compact' (keep the latest record per key)"
                        )));
                    }
                }
            }
            "tombstone_retention" => {
                tombstone_retention_ms =
                    kappa_log::units::duration_ms(&value).map_err(EngineError::Plan)?
            }
            other => {
                return Err(EngineError::Plan(format!(
                    "unknown topic option {other:?} (known: partitions, key, event_time, retention, cleanup, tombstone_retention)"
                )));
            }
        }
    }
    if compact {
        config.cleanup = Cleanup::Compact {
            tombstone_retention_ms,
        };
    }
    for (what, col) in [("key", &def.key), ("event_time", &def.event_time)] {
        if let Some(col) = col {
            let Some(cols) = &def.columns else {
                return Err(EngineError::Plan(format!(
                    "{what} = '{col}' needs columns: a topic without a schema holds raw JSON"
                )));
            };
            let Some(c) = cols.iter().find(|c| &c.name == col) else {
                return Err(EngineError::Plan(format!(
                    "{what} = '{col}': no such column"
                )));
            };
            if what == "event_time" && c.ty != ColumnType::Timestamp {
                return Err(EngineError::Plan(format!(
                    "event_time = '{col}': the column must be a TIMESTAMP, not {}",
                    c.ty.sql_name()
                )));
            }
        }
    }
    Ok(Statement::CreateTopic { def, config })
}

/// A one-part name as its identifier's value: `"tx"` is `tx` (the
/// quotes only allow any character in it).
fn plain_name(name: &ast::ObjectName) -> Result<String, EngineError> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|i| i.value.clone())
            .ok_or_else(|| EngineError::Plan(format!("{name} is not a name"))),
        _ => Err(EngineError::Plan(format!(
            "{name}: names have one part here (no schema or database prefix)"
        ))),
    }
}

/// `WITH (k = v, ...)` as lower-case keys and literal text values.
fn options(opts: &CreateTableOptions) -> Result<Vec<(String, String)>, EngineError> {
    let list = match opts {
        CreateTableOptions::None => return Ok(Vec::new()),
        CreateTableOptions::With(l)
        | CreateTableOptions::Options(l)
        | CreateTableOptions::Plain(l)
        | CreateTableOptions::TableProperties(l) => l,
    };
    list.iter()
        .map(|o| match o {
            SqlOption::KeyValue { key, value } => {
                let v = match value {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => s.clone(),
                        Value::Number(n, _) => n.to_string(),
                        other => other.to_string(),
                    },
                    Expr::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                };
                Ok((key.value.to_ascii_lowercase(), v))
            }
            other => Err(EngineError::Plan(format!("unsupported option {other}"))),
        })
        .collect()
}

/// `'1 day'`, `'12 hours'`, `'30 minutes'`, `'90 s'`, `'0'` to microseconds.
pub fn parse_interval_micros(s: &str) -> Result<u64, EngineError> {
    let bad = || {
        EngineError::Plan(format!(
            "cannot read {s:?} as a duration (try '1 day', '12 hours', '30 minutes')"
        ))
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let per: u64 = match unit.as_str() {
        "" if n == 0 => 0,
        "us" | "microsecond" | "microseconds" => 1,
        "ms" | "millisecond" | "milliseconds" => 1_000,
        "s" | "sec" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "minute" | "minutes" => 60_000_000,
        "h" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_topic_with_schema_and_options() {
        let s = parse(
            "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
             WITH (partitions = 4, key = 'account', event_time = 'ts')",
        )
        .unwrap();
        let Statement::CreateTopic { def, config } = s else {
            panic!("{s:?}")
        };
        assert_eq!(config.partitions, 4);
        assert_eq!(def.key.as_deref(), Some("account"));
        assert_eq!(def.event_time.as_deref(), Some("ts"));
        let cols = def.columns.unwrap();
        assert_eq!(cols.len(), 4);
        assert!(cols[0].not_null);
        assert_eq!(cols[1].ty, ColumnType::Double);
    }

    #[test]
    fn topic_retention_and_compaction_options() {
        let Statement::CreateTopic { config, .. } = parse(
            "CREATE TOPIC t WITH (retention = '7 days', cleanup = 'compact', tombstone_retention = '1h')",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(config.retention, kappa_log::Retention::AgeMs(604_800_000));
        assert_eq!(
            config.cleanup,
            Cleanup::Compact {
                tombstone_retention_ms: 3_600_000
            }
        );
        let err = parse("CREATE TOPIC t WITH (cleanup = 'shred')").unwrap_err();
        assert!(err.to_string().contains("'delete'"), "{err}");
        let err = parse("CREATE TOPIC t WITH (retention = 'soon')").unwrap_err();
        assert!(err.to_string().contains("forever"), "{err}");
    }

    #[test]
    fn raw_topics_views_drops_and_as_of() {
        assert!(matches!(
            parse("create topic raw").unwrap(),
            Statement::CreateTopic {
                def: TopicDef { columns: None, .. },
                config: TopicConfig { partitions: 1, .. }
            }
        ));
        let Statement::CreateView {
            name,
            query,
            history_micros,
            or_replace: false,
            verify_every_micros: None,
        } = parse(
            "CREATE VIEW v WITH (history = '2 hours') AS SELECT a, count(*) FROM t GROUP BY a",
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(name, "v");
        assert!(query.starts_with("SELECT a, count(*)"), "{query}");
        assert_eq!(history_micros, 2 * 3_600_000_000);
        assert_eq!(
            parse("SELECT * FROM v AS OF TOKEN 'kt1-00ff';").unwrap(),
            Statement::Query {
                sql: "SELECT * FROM v".into(),
                as_of: Some(AsOf::Token("kt1-00ff".into())),
                point: None,
            }
        );
        // `AS OF` inside a string is not a clause.
        assert_eq!(
            parse("SELECT 'AS OF TOKEN x' AS s").unwrap(),
            Statement::Query {
                sql: "SELECT 'AS OF TOKEN x' AS s".into(),
                as_of: None,
                point: None,
            }
        );
        assert!(matches!(
            parse("DROP TOPIC IF EXISTS t").unwrap(),
            Statement::Drop {
                kind: DropKind::Topic,
                if_exists: true,
                ..
            }
        ));
        assert!(matches!(
            parse("DROP VIEW v").unwrap(),
            Statement::Drop {
                kind: DropKind::View,
                ..
            }
        ));
    }

    #[test]
    fn bad_statements_say_what_is_wrong() {
        let e = parse("SELEC 1").unwrap_err().to_string();
        assert!(e.contains("SELEC"), "{e}");
        let e = parse("CREATE TOPIC t (a MONEY)").unwrap_err().to_string();
        assert!(e.contains("MONEY"), "{e}");
        let e = parse("CREATE TOPIC t (a TEXT) WITH (key = 'b')")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such column"), "{e}");
        let e = parse("SELECT 1 AS OF NOW").unwrap_err().to_string();
        assert!(e.contains("AS OF"), "{e}");
        let e = parse("CREATE VIEW v WITH (history = 'forever-ish') AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forever-ish"), "{e}");
        let e = parse("UPDATE t SET a = 1").unwrap_err().to_string();
        assert!(e.contains("UPDATE") && e.contains("Kappa runs"), "{e}");
        let e = parse("INSERT INTO t SELECT * FROM u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("INSERT without VALUES"), "{e}");
        let Ok(Statement::Insert(i)) = parse("INSERT INTO t (a, b) VALUES ('x', -1.5), (NULL, 2)")
        else {
            panic!("INSERT parses")
        };
        assert_eq!(i.topic, "t");
        assert_eq!(i.columns, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(
            i.rows,
            vec![
                vec![serde_json::json!("x"), serde_json::json!(-1.5)],
                vec![serde_json::Value::Null, serde_json::json!(2)],
            ]
        );
    }
}
