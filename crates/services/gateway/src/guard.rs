//! The per-player checks every event passes before it is published (blocks, then the rate
//! limit), and the gateway's drop and ingest counters.

use liveops_core::ports::{PortError, RateDecision};
use liveops_http::{rfc3339, Problem, Throttled};

use crate::GatewayState;

/// Counts events the gateway refused, by reason.
pub(crate) fn dropped(reason: &'static str, n: u64) {
    metrics::counter!("dropped_events_total", "reason" => reason).increment(n);
}

/// Counts accepted events of one type.
pub(crate) fn ingested(kind: &'static str) {
    metrics::counter!("events_ingested_total", "type" => kind).increment(1);
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

/// The answer to a hot-state failure met while holding keys or screening: the `n` events it
/// refuses are counted and logged as a bus outage's are (503; 500 for state read back corrupt).
pub(crate) fn hot_state_failed(error: PortError, n: u64) -> Problem {
    match &error {
        PortError::Unavailable(_) => {
            static LOG: Throttled = Throttled::new(10_000);
            if let Some(left_out) = LOG.admit() {
                tracing::warn!(%error, events = n, left_out, "hot state unavailable; refused");
            }
            dropped("unavailable", n);
        }
        PortError::Corrupt(_) => {
            tracing::error!(%error, events = n, "hot state corrupt; refused");
            dropped("internal", n);
        }
    }
    Problem::from(error)
}

/// Counts a refused request by the reason its problem gives (body, signature or idempotency
/// faults refused before any event was looked at).
pub(crate) fn refused(problem: &Problem) {
    let reason = match problem.status {
        401 => "unauthorized",
        413 => "too_large",
        _ => "invalid",
    };
    dropped(reason, 1);
}

/// Screens `n` events of `player`, in order: all refused with 403 while the player is blocked;
/// otherwise admitted while the rate limit has room, the rest refused with 429. One result per
/// event; `Err` only when hot state fails, and then none of the `n` was counted as dropped.
pub(crate) async fn screen(
    state: &GatewayState,
    player: &str,
    n: usize,
    now_ms: i64,
) -> Result<Vec<Result<(), Problem>>, PortError> {
    if let Some(until) = state.blocks.blocked_until(player).await? {
        dropped("blocked", n as u64);
        return Ok((0..n)
            .map(|_| Err(blocked(player, until, now_ms)))
            .collect());
    }
    let max = state.config.rate_limit_max;
    let all = u32::try_from(n).unwrap_or(u32::MAX);
    match state.rates.rate_hit(player, all, max).await? {
        RateDecision::Allowed => return Ok(vec![Ok(()); n]),
        RateDecision::Limited { retry_after_s } if n == 1 => {
            dropped("rate", 1);
            return Ok(vec![Err(rate_limited(player, retry_after_s, max))]);
        }
        RateDecision::Limited { .. } => {}
    }
    // Not room for all of them: take them one by one, in order, while room lasts.
    let mut out = Vec::with_capacity(n);
    let mut limited: Option<u64> = None;
    for _ in 0..n {
        if limited.is_none() {
            match state.rates.rate_hit(player, 1, max).await? {
                RateDecision::Allowed => {
                    out.push(Ok(()));
                    continue;
                }
                RateDecision::Limited { retry_after_s } => limited = Some(retry_after_s),
            }
        }
        dropped("rate", 1);
        out.push(Err(rate_limited(player, limited.unwrap_or(1), max)));
    }
    Ok(out)
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
    fn problems_carry_retry_after() {
        let p = rate_limited("player_1", 0, 5);
        assert_eq!((p.status, p.retry_after), (429, Some(1)));
        let p = blocked("player_1", 70_000, 10_000);
        assert_eq!((p.status, p.retry_after), (403, Some(60)));
    }
}
