//! Parsing of durations, sizes and times given on the command line.

use kappa_log::LogTime;

pub use kappa_log::units::{duration_ms, retention, size_bytes};

/// RFC 3339 (`2026-01-01T00:00:00Z`, fractions and offsets allowed) or
/// microseconds since the epoch.
pub fn time(s: &str) -> Result<LogTime, String> {
    if let Ok(micros) = s.parse::<u64>() {
        return Ok(LogTime(micros));
    }
    rfc3339_micros(s)
        .filter(|m| *m >= 0)
        .map(|m| LogTime(m as u64))
        .ok_or_else(|| format!("{s:?} is not a time; use RFC 3339 (2026-01-01T00:00:00Z) or microseconds since the epoch"))
}

fn rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<6}", &frac[..digits.min(6)]);
        micros = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_micros() {
        assert_eq!(
            time("2026-01-01T00:00:00Z"),
            Ok(LogTime(1_767_225_600_000_000))
        );
        assert_eq!(
            time("2026-01-01T01:00:00.5+01:00"),
            Ok(LogTime(1_767_225_600_500_000))
        );
        assert_eq!(time("42"), Ok(LogTime(42)));
        assert_eq!(
            LogTime(1_767_225_600_000_001).to_rfc3339(),
            "2026-01-01T00:00:00.000001Z"
        );
        assert!(time("2026-13-01T00:00:00Z").is_err());
        assert!(time("yesterday").is_err());
    }
}
