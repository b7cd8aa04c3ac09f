//! Recognizes the simplest query there is, `SELECT cols FROM v WHERE k1 =
//! lit AND k2 = lit ...`, so the engine can answer it with one store read
//! instead of planning it (DataFusion's planning costs more than the
//! read). Anything else, even one clause more, is left to DataFusion.

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, Ident, SelectItem, SetExpr, TableFactor, Value,
};

/// A query that reads at most one row of a table by equalities.
#[derive(Clone, Debug, PartialEq)]
pub struct PointQuery {
    pub table: String,
    /// The columns asked for, in order; `None` is `*`.
    pub columns: Option<Vec<String>>,
    /// Column = literal, each column once.
    pub equals: Vec<(String, ScalarValue)>,
}

/// An identifier as DataFusion resolves it: folded to lower case unless
/// quoted.
fn name(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    let Expr::Value(v) = e else { return None };
    match &v.value {
        Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Some(ScalarValue::Int64(Some(i))),
            Err(_) => n.parse::<f64>().ok().map(|f| ScalarValue::Float64(Some(f))),
        },
        Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
        _ => None,
    }
}

fn equalities(e: &Expr, out: &mut Vec<(String, ScalarValue)>) -> Option<()> {
    let Expr::BinaryOp { left, op, right } = e else {
        return None;
    };
    match op {
        BinaryOperator::And => {
            equalities(left, out)?;
            equalities(right, out)
        }
        BinaryOperator::Eq => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(i), v) | (v, Expr::Identifier(i)) => (name(i), literal(v)?),
                _ => return None,
            };
            if out.iter().any(|(c, _)| *c == column) {
                return None;
            }
            out.push((column, value));
            Some(())
        }
        _ => None,
    }
}

/// The point query `q` is, if it is one.
pub fn point_query(q: &ast::Query) -> Option<PointQuery> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name: table,
        alias: None,
        args: None,
        ..
    } = &from.relation
    else {
        return None;
    };
    let [ast::ObjectNamePart::Identifier(table_ident)] = table.0.as_slice() else {
        return None;
    };
    let columns = match select.projection.as_slice() {
        [SelectItem::Wildcard(_)] => None,
        items => Some(
            items
                .iter()
                .map(|i| match i {
                    SelectItem::UnnamedExpr(Expr::Identifier(c)) => Some(name(c)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    let mut equals = Vec::new();
    equalities(select.selection.as_ref()?, &mut equals)?;
    // Nothing else in the query: its canonical text is exactly these parts.
    let projection: Vec<String> = select.projection.iter().map(|p| p.to_string()).collect();
    let canonical = format!(
        "SELECT {} FROM {} WHERE {}",
        projection.join(", "),
        from.relation,
        select.selection.as_ref()?
    );
    if q.to_string() != canonical {
        return None;
    }
    Some(PointQuery {
        table: name(table_ident),
        columns,
        equals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Option<PointQuery> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let ast::Statement::Query(q) = stmt else {
            panic!("not a query")
        };
        point_query(&q)
    }

    #[test]
    fn recognizes_lookups_and_nothing_more() {
        assert_eq!(
            parse("select Balance, n from Balances where account = 'a' and \"Kind\" = 3"),
            Some(PointQuery {
                table: "balances".into(),
                columns: Some(vec!["balance".into(), "n".into()]),
                equals: vec![
                    ("account".into(), ScalarValue::Utf8(Some("a".into()))),
                    ("Kind".into(), ScalarValue::Int64(Some(3))),
                ],
            })
        );
        assert_eq!(
            parse("SELECT * FROM v WHERE 'x' = k").map(|p| (p.columns, p.equals.len())),
            Some((None, 1))
        );
        for other in [
            "SELECT * FROM v WHERE k = 'x' ORDER BY k",
            "SELECT * FROM v WHERE k = 'x' LIMIT 1",
            "SELECT DISTINCT k FROM v WHERE k = 'x'",
            "SELECT k FROM v WHERE k = 'x' OR k = 'y'",
            "SELECT k FROM v WHERE k = 'x' AND k = 'y'",
            "SELECT k FROM v WHERE k > 'x'",
            "SELECT k FROM v WHERE (k = 'x')",
            "SELECT k AS j FROM v WHERE k = 'x'",
            "SELECT k + 1 FROM v WHERE k = 1",
            "SELECT k FROM v AS w WHERE k = 'x'",
            "SELECT k FROM s.v WHERE k = 'x'",
            "SELECT k FROM v, w WHERE k = 'x'",
            "SELECT k FROM v WHERE k = NULL",
            "SELECT k FROM v WHERE k = -1",
            "SELECT k FROM v",
            "WITH w AS (SELECT 1) SELECT k FROM v WHERE k = 'x'",
            "SELECT k FROM v WHERE k = 'x' GROUP BY k",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
