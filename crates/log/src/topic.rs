//! Topics: their configuration and what describing one reports.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Log time: microseconds since the Unix epoch, assigned by the log when a
/// record commits. Strictly increasing and unique across one log instance; if
/// appends outrun the wall clock (more than one record per microsecond) log
/// time runs ahead of it and falls back in step when the rate drops.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogTime(pub u64);

impl LogTime {
    pub const ZERO: LogTime = LogTime(0);

    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2026-01-01T00:00:00.000001Z`.
    pub fn to_rfc3339(self) -> String {
        format_rfc3339_micros(self.0 as i64)
    }
}

impl fmt::Display for LogTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Formats microseconds since the epoch as RFC 3339 UTC (proleptic Gregorian).
pub(crate) fn format_rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let sub = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// How long a topic keeps its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep every record (the default).
    #[default]
    Forever,
    /// Drop records whose log time is older than this many milliseconds.
    AgeMs(u64),
    /// Keep at most about this many bytes per partition, dropping the oldest.
    BytesPerPartition(u64),
}

/// What happens to old records besides retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cleanup {
    /// Records are only removed by retention.
    #[default]
    Delete,
    /// Keep the latest record per key; a record with a null value is a
    /// tombstone, removed itself `tombstone_retention_ms` after it was written.
    Compact { tombstone_retention_ms: u64 },
}

/// What a topic is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    pub retention: Retention,
    pub cleanup: Cleanup,
}

impl TopicConfig {
    pub const MAX_PARTITIONS: u32 = 10_000;
    /// Kafka's `delete.retention.ms` default: one day.
    pub const DEFAULT_TOMBSTONE_RETENTION_MS: u64 = 86_400_000;

    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            retention: Retention::Forever,
            cleanup: Cleanup::Delete,
        }
    }
}

/// A topic as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub config: TopicConfig,
    /// When the topic was created.
    pub created: LogTime,
}

/// One partition's extent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The first offset still readable (raised by retention).
    pub start_offset: u64,
    /// The offset the next record will get; `end_offset - start_offset` records
    /// at most are readable (fewer on a compacted topic).
    pub end_offset: u64,
    /// Bytes on disk attributed to this partition (record batches).
    pub bytes: u64,
    /// Log time of the last record, if any.
    pub last_log_time: Option<LogTime>,
}

/// A topic as described: its config and every partition's extent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub info: TopicInfo,
    pub partitions: Vec<PartitionInfo>,
}

/// Topic names follow Kafka's rule: 1 to 249 characters of ASCII letters,
/// digits, `.`, `_` and `-`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters long, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; use ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(LogTime(0).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            LogTime(1_767_225_600_000_001).to_rfc3339(),
            "2026-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            LogTime(951_782_400_000_000).to_rfc3339(),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("transactions.v1-a_b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
