//! Tokens: opaque strings naming a position of the log.

use crate::{LogError, LogTime};
use std::fmt;
use std::str::FromStr;

/// A position of the log, returned by every append. A read carrying a token
/// sees every record up to it.
///
/// The string form is opaque to users but stable: `kt1-` followed by the log
/// time in lowercase hexadecimal. The prefix carries a format version so that
/// other backends (Kafka: a vector of partition offsets) can add their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token {
    log_time: LogTime,
}

const PREFIX: &str = "kt1-";

impl Token {
    pub fn at(log_time: LogTime) -> Self {
        Token { log_time }
    }

    /// Every record with a log time at or before this one is covered.
    pub fn log_time(&self) -> LogTime {
        self.log_time
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{:x}", self.log_time.0)
    }
}

impl FromStr for Token {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| LogError::InvalidToken {
            token: s.to_string(),
            reason: why.to_string(),
        };
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("it does not start with \"kt1-\""))?;
        if hex.is_empty() || hex.len() > 16 {
            return Err(invalid("wrong length"));
        }
        let value = u64::from_str_radix(hex, 16).map_err(|_| invalid("not hexadecimal"))?;
        Ok(Token::at(LogTime(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = Token::at(LogTime(1_767_225_600_000_001));
        assert_eq!(t.to_string().parse::<Token>().unwrap(), t);
        for bad in ["", "kt1-", "kt2-10", "kt1-zz", "kt1-11111111111111111"] {
            assert!(bad.parse::<Token>().is_err(), "{bad:?} should not parse");
        }
    }
}
