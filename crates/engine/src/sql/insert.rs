//! `INSERT INTO topic [(columns)] VALUES (...), ...`: an append. Values are
//! literals; each row becomes one JSON record, checked against the topic's
//! schema like any append.

use crate::EngineError;
use datafusion::sql::sqlparser::ast::{self, Expr, SetExpr, TableObject, UnaryOperator, Value};

/// The parsed parts of an INSERT.
#[derive(Clone, Debug, PartialEq)]
pub struct Insert {
    pub topic: String,
    /// The columns named, if any (else the topic's, in order).
    pub columns: Option<Vec<String>>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

pub fn insert(i: &ast::Insert) -> Result<Insert, EngineError> {
    let TableObject::TableName(name) = &i.table else {
        return Err(EngineError::Syntax("INSERT INTO takes a topic name".into()));
    };
    let Some(SetExpr::Values(values)) = i.source.as_ref().map(|q| q.body.as_ref()) else {
        return Err(EngineError::Unsupported {
            construct: "INSERT without VALUES".into(),
            hint: " (append rows with INSERT INTO topic (columns) VALUES (...), ...)".into(),
        });
    };
    let columns = (!i.columns.is_empty())
        .then(|| i.columns.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let rows = values
        .rows
        .iter()
        .enumerate()
        .map(|(n, row)| {
            row.content
                .iter()
                .map(|e| {
                    literal(e).ok_or_else(|| {
                        EngineError::Syntax(format!(
                            "row {n} of the INSERT: {e} is not a literal (INSERT appends literal values)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Insert {
        topic: name.to_string(),
        columns,
        rows,
    })
}

fn literal(e: &Expr) -> Option<serde_json::Value> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => serde_json::from_str::<serde_json::Number>(n)
                .ok()
                .map(serde_json::Value::Number),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(serde_json::Value::String(s.clone()))
            }
            Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
            Value::Null => Some(serde_json::Value::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            serde_json::Value::Number(n) => {
                serde_json::from_str::<serde_json::Number>(&format!("-{n}"))
                    .ok()
                    .map(serde_json::Value::Number)
            }
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}
