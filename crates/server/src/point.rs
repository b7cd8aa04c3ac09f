//! A point in the log as clients write it: a token (`kt1-...`), a log time
//! in microseconds (an event id), or a timestamp. One reader for SSE
//! (`after`, `as_of`, `Last-Event-ID`), SUBSCRIBE and the CLI.

use kappa_log::{LogTime, Token};

pub fn parse_point(s: &str) -> Result<LogTime, String> {
    let s = s.trim();
    if s.starts_with("kt1-") {
        return s
            .parse::<Token>()
            .map(|t| t.log_time())
            .map_err(|e| format!("{s:?} is not a Kappa token: {e}"));
    }
    if let Ok(micros) = s.parse::<u64>() {
        return Ok(LogTime(micros));
    }
    kappa_engine::schema::parse_timestamp(s)
        .filter(|m| *m >= 0)
        .map(|m| LogTime(m as u64))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a point in the log: give a token (kt1-...), a log time in microseconds, or a timestamp such as 2026-01-01T00:00:00Z"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form() {
        assert_eq!(parse_point("42"), Ok(LogTime(42)));
        assert_eq!(parse_point("kt1-2a"), Ok(LogTime(42)));
        assert_eq!(
            parse_point("2026-01-01T00:00:00Z"),
            Ok(LogTime(1_767_225_600_000_000))
        );
        assert!(parse_point("yesterday").is_err());
    }
}
