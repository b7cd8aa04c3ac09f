//! Durations, sizes and retention policies written as text (`7d`,
//! `10GB`, `forever`), as the CLI flags and `CREATE TOPIC ... WITH (...)`
//! take them.

use crate::Retention;

/// `500ms`, `90s`, `30m`, `12h`, `7d` (also `7 days`, `12 hours`) to
/// milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 500ms, 90s, 30m, 12h or 7d"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "second" | "seconds" => 1_000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(format!("{s:?} has an unknown unit; use ms, s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `1000B`, `64KB`, `10MB`, `1GB`, `512MiB`, `1GiB` to bytes.
pub fn size_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 10GB or 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit; use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `forever`, a duration (by age) or a size (by bytes per partition).
pub fn retention(s: &str) -> Result<Retention, String> {
    if s.trim().eq_ignore_ascii_case("forever") {
        return Ok(Retention::Forever);
    }
    if let Ok(ms) = duration_ms(s) {
        return Ok(Retention::AgeMs(ms));
    }
    size_bytes(s).map(Retention::BytesPerPartition).map_err(|_| {
        format!("retention {s:?} is not understood; use forever, a duration (7d, 12h) or a size per partition (10GB)")
    })
}

/// The policy as text that [`retention`] reads back.
pub fn retention_text(r: Retention) -> String {
    match r {
        Retention::Forever => "forever".into(),
        Retention::AgeMs(ms) => format!("{ms}ms"),
        Retention::BytesPerPartition(b) => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_retention() {
        assert_eq!(duration_ms("7d"), Ok(604_800_000));
        assert_eq!(duration_ms("7 days"), Ok(604_800_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert!(duration_ms("7 fortnights").is_err());
        assert!(duration_ms("d").is_err());
        assert_eq!(size_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(retention("forever"), Ok(Retention::Forever));
        assert_eq!(retention("12h"), Ok(Retention::AgeMs(43_200_000)));
        assert_eq!(
            retention("10MB"),
            Ok(Retention::BytesPerPartition(10_000_000))
        );
        assert!(retention("soon").is_err());
        for r in [
            Retention::Forever,
            Retention::AgeMs(5),
            Retention::BytesPerPartition(7),
        ] {
            assert_eq!(retention(&retention_text(r)), Ok(r));
        }
    }
}
