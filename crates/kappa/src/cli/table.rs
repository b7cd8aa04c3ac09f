//! Query results as an aligned table (as psql prints them).

use serde_json::Value;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{"columns": [{"name"}], "rows": [[...]]}` as a table with a row count.
pub fn render(result: &Value) -> String {
    let names: Vec<String> = result["columns"]
        .as_array()
        .map(|c| c.iter().map(|c| cell(&c["name"])).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = result["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| {
                    row.as_array()
                        .map(|v| v.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in &rows {
        for (i, v) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(v.chars().count());
            }
        }
    }
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!(" {v:<w$} "))
            .collect::<Vec<_>>()
            .join("|")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&names));
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+"),
    );
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&format!(
        "({} row{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let v = serde_json::json!({"columns":[{"name":"account"},{"name":"n"}],"rows":[["a",12],["bbbbbbbbb",null]]});
        assert_eq!(
            super::render(&v),
            " account   | n\n-----------+----\n a         | 12\n bbbbbbbbb |\n(2 rows)\n"
        );
    }
}
