//! Errors as PostgreSQL clients see them: the API's classification mapped
//! to SQLSTATE codes, with the position of a syntax error.

use crate::error::ApiError;
use pgwire::error::{ErrorInfo, PgWireError};

/// The SQLSTATE for an error code of the API.
pub fn sqlstate(e: &ApiError) -> &'static str {
    let m = e.message.as_str();
    match e.code {
        "syntax_error" => "42601",
        "not_found" => "42P01",
        "invalid_sql" if m.contains("table") && m.contains("not found") => "42P01",
        "invalid_sql" if m.contains("column") || m.contains("field") => "42703",
        "invalid_sql" => "42000",
        "unsupported" => "0A000",
        "schema_mismatch" => "22P02",
        "already_exists" => "42P07",
        "conflict" => "40001",
        "as_of_out_of_range" => "22023",
        "timeout" => "57014",
        "too_many_records" => "54000",
        "bad_request" => "22023",
        // object_not_in_prerequisite_state; cannot_connect_now.
        "refused" => "55000",
        "unavailable" => "57P03",
        "bad_snapshot" => "22023",
        _ => "XX000",
    }
}

pub fn to_pg(e: ApiError, sql: &str) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), sqlstate(&e).into(), e.message.clone());
    info.position = position(&e.message, sql).map(|p| p.to_string());
    if e.code == "conflict"
        && let Some(current) = &e.current
    {
        info.detail = Some(format!("current: {current}"));
    }
    PgWireError::UserError(Box::new(info))
}

pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// `... at Line: L, Column: C` as a 1-based character position in `sql`.
fn position(message: &str, sql: &str) -> Option<usize> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    let mut pos = 0;
    for (n, l) in sql.split('\n').enumerate() {
        if n + 1 == line {
            return Some(pos + column.min(l.chars().count() + 1));
        }
        pos += l.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_count_characters_over_lines() {
        let sql = "SELECT 1\nFROM t WHER x";
        assert_eq!(super::position("x at Line: 2, Column: 8", sql), Some(17));
        assert_eq!(super::position("x at Line: 1, Column: 1", sql), Some(1));
        assert_eq!(super::position("no position", sql), None);
    }
}
