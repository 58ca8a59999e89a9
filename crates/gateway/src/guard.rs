//! The checks every ingestion request passes before its events are looked at: body size, the
//! HMAC signature, and the per-player block and rate checks.

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use liveops_core::ports::RateDecision;
use liveops_core::Problem;

use crate::GatewayState;

/// A verified request signature in canonical form (trimmed, lower case): what the replay guard
/// remembers, so re-casing the hex cannot slip a replay through.
pub(crate) struct Signature(pub(crate) String);

/// Counts events the gateway refused, by reason.
pub(crate) fn dropped(reason: &'static str, n: u64) {
    metrics::counter!("dropped_events_total", "reason" => reason).increment(n);
}

/// Counts accepted events of one type.
pub(crate) fn ingested(kind: &'static str) {
    metrics::counter!("events_ingested_total", "type" => kind).increment(1);
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            dropped("too_large", 1);
            Problem::too_large(limit)
        } else {
            tracing::debug!(error = %inner, "request body could not be read");
            dropped("invalid", 1);
            Problem::invalid("body", "the request body could not be read")
        }
    })
}

/// A header as text; a header that is present but not visible ASCII reads as empty, so it fails
/// its check instead of looking absent.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// Checks the request signature and returns it in canonical form (trimmed, lower case), the
/// identity the replay guard remembers.
pub(crate) fn verify_signature(
    state: &GatewayState,
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<Signature, Problem> {
    let sig = header(headers, "x-signature");
    state
        .config
        .keyring
        .verify_request(
            header(headers, "x-key-id"),
            header(headers, "x-timestamp"),
            sig,
            body,
            now_s,
            state.config.signature_tolerance_s,
        )
        .map_err(|e| {
            dropped("unauthorized", 1);
            Problem::unauthorized(e.to_string())
        })?;
    Ok(Signature(
        sig.unwrap_or_default().trim().to_ascii_lowercase(),
    ))
}

/// RFC 3339 text of a unix-millisecond instant.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// 403 for a player blocked until `until_ms`.
pub(crate) fn blocked(player: &str, until_ms: i64, now_ms: i64) -> Problem {
    let mut p = Problem::new(
        403,
        "blocked",
        "Player blocked",
        format!(
            "player {player} is blocked until {} by fairness checks",
            rfc3339(until_ms)
        ),
    );
    p.retry_after = Some(secs_until(until_ms, now_ms));
    p
}

/// 429 for a player over the rate limit.
pub(crate) fn rate_limited(player: &str, retry_after_s: u64, max: u32) -> Problem {
    let retry = retry_after_s.max(1);
    let mut p = Problem::new(
        429,
        "rate-limited",
        "Too many events",
        format!("player {player} sent more than {max} events per second; retry after {retry} s"),
    );
    p.retry_after = Some(retry);
    p
}

/// Whole seconds from `now_ms` to `until_ms`, rounded up, at least 1.
fn secs_until(until_ms: i64, now_ms: i64) -> u64 {
    let ms = until_ms.saturating_sub(now_ms).max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// The block and rate checks for one event of `player`.
pub(crate) async fn screen(state: &GatewayState, player: &str, now_ms: i64) -> Result<(), Problem> {
    if let Some(until) = state.hot.blocked_until(player).await? {
        dropped("blocked", 1);
        return Err(blocked(player, until, now_ms));
    }
    let max = state.config.rate_limit_max;
    match state.hot.rate_hit(player, 1, max).await? {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after_s } => {
            dropped("rate", 1);
            Err(rate_limited(player, retry_after_s, max))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(secs_until(10_001, 10_000), 1);
        assert_eq!(secs_until(11_000, 10_000), 1);
        assert_eq!(secs_until(11_001, 10_000), 2);
        assert_eq!(secs_until(5_000, 10_000), 1);
    }

    #[test]
    fn instants_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_638_360_000_500), "2021-12-01T12:00:00.500Z");
    }

    #[test]
    fn problems_carry_retry_after() {
        let p = rate_limited("player_1", 0, 5);
        assert_eq!((p.status, p.retry_after), (429, Some(1)));
        let p = blocked("player_1", 70_000, 10_000);
        assert_eq!((p.status, p.retry_after), (403, Some(60)));
    }
}
