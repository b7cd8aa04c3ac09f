//! Enough of PostgreSQL's catalog for psql's `\d`, `\dt`, `\dm` and
//! `\d NAME`: psql's own catalog queries are recognised and answered from
//! Kappa's topics (tables) and views (materialized views). Other catalog
//! queries fall through to the engine, which says it has no such table.

use super::encode::pg_type;
use crate::format::type_name;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use kappa_engine::Engine;
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use std::sync::Arc;

/// A catalog answer: columns and rows.
pub type Answer = (Arc<Vec<FieldInfo>>, Vec<DataRow>);

struct Relation {
    name: String,
    /// `r` (a topic, shown as a table) or `m` (a view).
    kind: char,
    schema: SchemaRef,
}

async fn relations(engine: &Engine) -> Vec<Relation> {
    let mut out = Vec::new();
    for t in engine.topics().await {
        out.push(Relation {
            schema: t.arrow_schema(),
            name: t.name,
            kind: 'r',
        });
    }
    for v in engine.views().await {
        if let Ok(schema) = engine.view_schema(&v.name).await {
            out.push(Relation {
                name: v.name,
                kind: 'm',
                schema,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A stable object id for a relation name (FNV-1a, above the system range).
fn oid(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    16384 + h % 1_000_000_000
}

/// psql's name pattern (`OPERATOR(pg_catalog.~) '^(tx)$'`), if any.
fn name_pattern(sql: &str) -> Option<String> {
    let at = sql.find("OPERATOR(pg_catalog.~) '")?;
    let rest = &sql[at + "OPERATOR(pg_catalog.~) '".len()..];
    let end = rest.find('\'')?;
    Some(rest[..end].to_string())
}

/// Matches psql's translated patterns: `^(name)$`, with `.*` and `.` as
/// wildcards (from `*` and `?`).
fn matches(pattern: &str, name: &str) -> bool {
    let p = pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .trim_start_matches('(')
        .trim_end_matches(')');
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'.', b'*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            [b'.', rest @ ..] => !s.is_empty() && go(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(p.as_bytes(), name.as_bytes())
}

/// The oid in `... = '16384'`.
fn quoted_oid(sql: &str, marker: &str) -> Option<u32> {
    let at = sql.find(marker)?;
    let rest = &sql[at + marker.len()..];
    let digits: String = rest
        .trim_start_matches([' ', '\''])
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn text_fields(names: &[&str]) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        names
            .iter()
            .map(|n| FieldInfo::new((*n).to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    )
}

fn text_rows(
    fields: &Arc<Vec<FieldInfo>>,
    rows: Vec<Vec<Option<String>>>,
) -> PgWireResult<Vec<DataRow>> {
    let mut e = DataRowEncoder::new(fields.clone());
    let mut out = Vec::new();
    for row in rows {
        for v in row {
            e.encode_field(&v)?;
        }
        out.push(e.take_row());
    }
    Ok(out)
}

/// PostgreSQL's name for a column type, as `format_type` gives it.
fn format_type(dt: &DataType) -> String {
    match dt {
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        other => match pg_type(other) {
            Type::INT8 if !matches!(other, DataType::Int64) => "bigint".into(),
            _ => type_name(other),
        },
    }
}

/// The aliases of a select list (`... as "Name"`), in order.
fn aliases(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find(" as \"").or_else(|| rest.find(" AS \"")) {
        let tail = &rest[at + 5..];
        let Some(end) = tail.find('"') else { break };
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Answers one of psql's catalog queries, or `None` if `sql` is not one.
pub async fn answer(engine: &Engine, sql: &str) -> Option<PgWireResult<Answer>> {
    if !sql.contains("pg_catalog.") {
        return None;
    }
    let rels = || relations(engine);
    // \d, \dt, \dm, \dv: the list of relations.
    if sql.contains("FROM pg_catalog.pg_class c") && sql.contains("as \"Schema\"") {
        let kinds: Vec<char> = sql
            .find("c.relkind IN (")
            .map(|at| {
                let rest = &sql[at + 14..];
                rest[..rest.find(')').unwrap_or(0)]
                    .split(',')
                    .filter_map(|k| k.trim().trim_matches('\'').chars().next())
                    .collect()
            })
            .unwrap_or_default();
        let pattern = name_pattern(sql);
        let columns = aliases(sql);
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let fields = text_fields(&names);
        let mut rows = Vec::new();
        for r in rels().await {
            if !kinds.contains(&r.kind) || pattern.as_ref().is_some_and(|p| !matches(p, &r.name)) {
                continue;
            }
            rows.push(
                columns
                    .iter()
                    .map(|c| match c.as_str() {
                        "Schema" => Some("public".to_string()),
                        "Name" => Some(r.name.clone()),
                        "Type" => Some(
                            if r.kind == 'r' {
                                "table"
                            } else {
                                "materialized view"
                            }
                            .into(),
                        ),
                        "Owner" => Some("kappa".into()),
                        "Persistence" => Some("permanent".into()),
                        "Access method" => Some("kappa".into()),
                        _ => None,
                    })
                    .collect(),
            );
        }
        return Some(text_rows(&fields, rows).map(|r| (fields, r)));
    }
    // \d NAME, step 1: which relations match the name.
    if sql.contains("SELECT c.oid,\n  n.nspname,\n  c.relname") {
        let pattern = name_pattern(sql);
        let fields = text_fields(&["oid", "nspname", "relname"]);
        let rows = rels()
            .await
            .into_iter()
            .filter(|r| pattern.as_ref().is_none_or(|p| matches(p, &r.name)))
            .map(|r| {
                vec![
                    Some(oid(&r.name).to_string()),
                    Some("public".into()),
                    Some(r.name),
                ]
            })
            .collect();
        return Some(text_rows(&fields, rows).map(|r| (fields, r)));
    }
    // \d NAME, step 2: the relation's kind and flags.
    if sql.contains("SELECT c.relchecks, c.relkind") {
        let id = quoted_oid(sql, "WHERE c.oid =")?;
        let fields = text_fields(&[
            "relchecks",
            "relkind",
            "relhasindex",
            "relhasrules",
            "relhastriggers",
            "relrowsecurity",
            "relforcerowsecurity",
            "relhasoids",
            "relispartition",
            "?column?",
            "reltablespace",
            "reloftype",
            "relpersistence",
            "relreplident",
            "amname",
        ]);
        let rows = rels()
            .await
            .into_iter()
            .filter(|r| oid(&r.name) == id)
            .map(|r| {
                let s = |v: &str| Some(v.to_string());
                vec![
                    s("0"),
                    Some(r.kind.to_string()),
                    s("f"),
                    s("f"),
                    s("f"),
                    s("f"),
                    s("f"),
                    s("f"),
                    s("f"),
                    s(""),
                    s("0"),
                    s(""),
                    s("p"),
                    s("d"),
                    s("kappa"),
                ]
            })
            .collect();
        return Some(text_rows(&fields, rows).map(|r| (fields, r)));
    }
    // \d NAME, step 3: the columns.
    if sql.contains("FROM pg_catalog.pg_attribute a") && sql.contains("pg_catalog.format_type") {
        let id = quoted_oid(sql, "a.attrelid =")?;
        let fields = text_fields(&[
            "attname",
            "format_type",
            "?column?",
            "attnotnull",
            "attcollation",
            "attidentity",
            "attgenerated",
        ]);
        let mut rows = Vec::new();
        for r in rels().await.into_iter().filter(|r| oid(&r.name) == id) {
            for f in r.schema.fields() {
                rows.push(vec![
                    Some(f.name().clone()),
                    Some(format_type(f.data_type())),
                    None,
                    Some(if f.is_nullable() { "f" } else { "t" }.into()),
                    None,
                    Some(String::new()),
                    Some(String::new()),
                ]);
            }
        }
        return Some(text_rows(&fields, rows).map(|r| (fields, r)));
    }
    // \d NAME, the rest: policies, statistics, publications, inheritance
    // and partitions, of which Kappa has none.
    for none in [
        "pg_catalog.pg_policy",
        "pg_catalog.pg_statistic_ext",
        "pg_catalog.pg_publication",
        "pg_catalog.pg_inherits",
        "pg_catalog.pg_trigger",
        "pg_catalog.pg_index",
        "pg_catalog.pg_constraint",
        "pg_catalog.pg_rewrite",
    ] {
        if sql.contains(none) {
            let fields = text_fields(&["?column?"]);
            return Some(Ok((fields, Vec::new())));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_patterns() {
        assert!(matches("^(tx)$", "tx"));
        assert!(!matches("^(tx)$", "tx2"));
        assert!(matches("^(t.*)$", "tx2"));
        assert!(matches("^(t.)$", "tx"));
        assert!(!matches("^(t.)$", "t"));
    }

    #[test]
    fn aliases_in_order() {
        let sql = r#"SELECT n.nspname as "Schema", c.relname as "Name", x as "Type" FROM"#;
        assert_eq!(aliases(sql), ["Schema", "Name", "Type"]);
        assert_eq!(
            quoted_oid("WHERE c.oid = '16385';", "WHERE c.oid ="),
            Some(16385)
        );
    }
}
