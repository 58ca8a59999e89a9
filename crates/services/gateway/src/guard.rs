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
        408 => "timeout",
        413 => "too_large",
        _ => "invalid",
    };
    dropped(reason, 1);
}

/// Verdicts on the events of one player.
type Verdicts = Vec<Result<(), Problem>>;

/// Screens `n` events of `player`, in order: all refused with 403 while the player is blocked;
/// otherwise admitted while the rate limit has room, the rest refused with 429. One result per
/// event; `Err` only when hot state fails, and then none of the `n` was counted as dropped.
pub(crate) async fn screen(
    state: &GatewayState,
    player: &str,
    n: usize,
    now_ms: i64,
) -> Result<Verdicts, PortError> {
    let mut verdicts = screen_all(state, &[(player, n)], now_ms).await?;
    Ok(verdicts.pop().unwrap_or_default())
}

/// [`screen`] for each `(player, n)` of `players` (distinct players), in at most three
/// hot-state calls however many players: their blocks, then every unblocked player's events
/// counted at once, then, for those without room for all, one hit per event. `Err` only when
/// hot state fails, and then none of the events was counted as dropped.
pub(crate) async fn screen_all(
    state: &GatewayState,
    players: &[(&str, usize)],
    now_ms: i64,
) -> Result<Vec<Verdicts>, PortError> {
    let names: Vec<&str> = players.iter().map(|&(player, _)| player).collect();
    let blocks = if names.is_empty() {
        Vec::new()
    } else {
        state.blocks.blocked_until_each(&names).await?
    };
    answered(&blocks, names.len(), "blocks")?;
    let max = state.config.rate_limit_max;
    let open: Vec<(&str, usize)> = players
        .iter()
        .zip(&blocks)
        .filter(|(_, until)| until.is_none())
        .map(|(&player, _)| player)
        .collect();
    let all: Vec<(&str, u32)> = open
        .iter()
        .map(|&(p, n)| (p, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect();
    let first = rate_hits(state, &all, max).await?;
    answered(&first, all.len(), "rate windows")?;
    // Not room for all of them: one hit each, in order, admitted while room lasts (a player
    // refused once stays refused for the rest of the call).
    let short = |(&(_, n), decision): (&(&str, usize), &RateDecision)| {
        n > 1 && *decision != RateDecision::Allowed
    };
    let singles: Vec<(&str, u32)> = open
        .iter()
        .zip(&first)
        .filter(|&pair| short(pair))
        .flat_map(|(&(player, n), _)| std::iter::repeat_n((player, 1), n))
        .collect();
    let one_by_one = rate_hits(state, &singles, max).await?;
    answered(&one_by_one, singles.len(), "rate windows")?;
    let mut one_by_one = one_by_one.into_iter();

    // Every call answered: the verdicts, and the drops counted once.
    let mut first = first.into_iter();
    let mut out = Vec::with_capacity(players.len());
    for (&(player, n), until) in players.iter().zip(blocks) {
        if let Some(until) = until {
            dropped("blocked", n as u64);
            out.push(
                (0..n)
                    .map(|_| Err(blocked(player, until, now_ms)))
                    .collect(),
            );
            continue;
        }
        let refused = RateDecision::Limited { retry_after_s: 1 };
        let decision = first.next().unwrap_or(refused);
        let decisions: Vec<RateDecision> = match decision {
            RateDecision::Allowed => vec![decision; n],
            _ if n == 1 => vec![decision],
            _ => one_by_one.by_ref().take(n).collect(),
        };
        out.push(
            decisions
                .into_iter()
                .map(|decision| match decision {
                    RateDecision::Allowed => Ok(()),
                    RateDecision::Limited { retry_after_s } => {
                        dropped("rate", 1);
                        Err(rate_limited(player, retry_after_s, max))
                    }
                })
                .collect(),
        );
    }
    Ok(out)
}

/// Ok if a batched call gave one answer per question asked (`asked`), else corrupt state.
fn answered<T>(answers: &[T], asked: usize, what: &str) -> Result<(), PortError> {
    if answers.len() == asked {
        return Ok(());
    }
    let got = answers.len();
    Err(PortError::Corrupt(format!(
        "hot state answered {got} of {asked} {what}"
    )))
}

/// [`RateLimiter::rate_hits`](liveops_core::ports::RateLimiter::rate_hits), with no call for
/// no hits.
async fn rate_hits(
    state: &GatewayState,
    hits: &[(&str, u32)],
    max: u32,
) -> Result<Vec<RateDecision>, PortError> {
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    state.rates.rate_hits(hits, max).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use liveops_core::ports::{Blocklist, Health, PortResult, RateLimiter, Strike};
    use liveops_core::{KeyStore, Keyring};
    use liveops_http::SignatureCheck;
    use liveops_memory::{MemoryBus, MemoryHotState};

    use super::*;
    use crate::GatewayConfig;

    /// Memory hot state counting the block reads and rate hits that reach it (each a round
    /// trip on a remote store).
    #[derive(Default)]
    struct Counted {
        hot: MemoryHotState,
        calls: AtomicUsize,
    }

    impl Counted {
        fn call(&self) -> &MemoryHotState {
            self.calls.fetch_add(1, Ordering::Relaxed);
            &self.hot
        }
    }

    #[async_trait]
    impl Health for Counted {
        async fn healthcheck(&self) -> PortResult<()> {
            Ok(())
        }
    }

    #[async_trait]
    impl RateLimiter for Counted {
        async fn rate_hit(&self, player: &str, n: u32, max: u32) -> PortResult<RateDecision> {
            self.call().rate_hit(player, n, max).await
        }

        async fn rate_hits(&self, hits: &[(&str, u32)], max: u32) -> PortResult<Vec<RateDecision>> {
            self.call().rate_hits(hits, max).await
        }
    }

    /// Only what screening calls; the rest is never reached.
    #[async_trait]
    impl Blocklist for Counted {
        async fn block(&self, _: &str, _: i64, _: i64) -> PortResult<bool> {
            unreachable!("screening blocks no one")
        }

        async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>> {
            self.call().blocked_until(player).await
        }

        async fn blocked_until_each(&self, players: &[&str]) -> PortResult<Vec<Option<i64>>> {
            self.call().blocked_until_each(players).await
        }

        async fn add_strike(&self, _: &str, _: Strike<'_>) -> PortResult<u32> {
            unreachable!("screening records no strike")
        }

        async fn strike_windows(
            &self,
            _: &str,
            _: i64,
            _: Duration,
        ) -> PortResult<Vec<(i64, u32)>> {
            unreachable!("screening reads no strike")
        }

        async fn strikes(&self, _: &str, _: i64, _: Duration) -> PortResult<u32> {
            unreachable!("screening reads no strike")
        }

        async fn unblock(&self, _: &str, _: Duration) -> PortResult<()> {
            unreachable!("screening unblocks no one")
        }
    }

    /// A gateway whose blocks and rate windows are `hot`, `max` events a second each.
    fn gateway(hot: Arc<Counted>, max: u32) -> GatewayState {
        let ring = Keyring::new(vec![(
            "k1".into(),
            b"k1-secret-0123456789abcdef0123456789".to_vec(),
        )]);
        GatewayState {
            config: Arc::new(GatewayConfig {
                rate_limit_max: max,
                ..GatewayConfig::default()
            }),
            signatures: SignatureCheck {
                keys: Arc::new(KeyStore::new(ring.unwrap())),
                tolerance_s: 300,
                accept_v1: true,
            },
            bus: Arc::new(MemoryBus::default()),
            idem: Arc::new(MemoryHotState::new()),
            rates: hot.clone(),
            blocks: hot,
        }
    }

    /// The statuses of verdicts (200 for an admitted event).
    fn statuses(verdicts: &[Result<(), Problem>]) -> Vec<u16> {
        let status = |v: &Result<(), Problem>| v.as_ref().map_or_else(|p| p.status, |()| 200);
        verdicts.iter().map(status).collect()
    }

    #[tokio::test]
    async fn a_batch_of_500_players_is_screened_in_three_calls() {
        let hot = Arc::new(Counted::default());
        let now = liveops_core::now_ms();
        hot.hot.block("p3", now, now + 60_000).await.unwrap();
        let state = gateway(hot.clone(), 2);
        let names: Vec<String> = (0..500).map(|i| format!("p{i}")).collect();
        let players: Vec<(&str, usize)> = names
            .iter()
            .map(|p| (p.as_str(), if p == "p7" || p == "p3" { 4 } else { 1 }))
            .collect();
        let verdicts = screen_all(&state, &players, now).await.unwrap();
        assert_eq!(
            hot.calls.load(Ordering::Relaxed),
            3,
            "blocks, rate windows, one hit per event of p7"
        );
        assert_eq!(verdicts.len(), 500);
        assert_eq!(statuses(&verdicts[3]), [403; 4], "blocked before rated");
        assert_eq!(statuses(&verdicts[7]), [200, 200, 429, 429]);
        assert_eq!(verdicts[7][2].as_ref().unwrap_err().retry_after, Some(1));
        for (i, v) in verdicts
            .iter()
            .enumerate()
            .filter(|(i, _)| ![3, 7].contains(i))
        {
            assert_eq!(statuses(v), [200], "p{i}");
        }
        // Room for everyone: two calls; no one asked: none.
        let before = hot.calls.load(Ordering::Relaxed);
        let others = screen_all(&state, &players[8..], now).await.unwrap();
        assert!(others.iter().all(|v| statuses(v) == [200]));
        assert_eq!(hot.calls.load(Ordering::Relaxed) - before, 2);
        assert!(screen_all(&state, &[], now).await.unwrap().is_empty());
        assert_eq!(hot.calls.load(Ordering::Relaxed) - before, 2);
    }

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
