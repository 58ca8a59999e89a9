//! The one text form of an instant in every answer: RFC 3339 in UTC, with as many fractional
//! digits as the instant needs (none for whole seconds, three for milliseconds).

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 text of a unix-millisecond instant (`2026-12-01T12:00:00.500Z`, `2026-12-01T12:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Like [`rfc3339`], but `None` for 0, the "never" of stored timestamps.
pub fn rfc3339_or_never(ms: i64) -> Option<String> {
    (ms != 0).then(|| rfc3339(ms))
}

/// Unix ms `keep` before `now_ms`: what was written earlier is past a retention of `keep`.
pub fn cutoff(now_ms: i64, keep: std::time::Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_638_360_000_500), "2021-12-01T12:00:00.500Z");
        assert_eq!(rfc3339_or_never(0), None);
    }
}
