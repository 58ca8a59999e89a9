//! A bounded stream of events that retries until accepted, and the check that every accepted
//! event counts exactly once: what the outage and crash tests share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveops_core::Keyring;
use liveops_leaderboard::PlayerRankView;

use super::{kill, now, xp, xp_now, Urls, SECRET};

/// What the clients saw: 503s, other failures (timeouts, refused connections), the slowest answer.
#[derive(Default)]
pub struct Counts {
    pub unavailable: AtomicU64,
    pub other: AtomicU64,
    pub slowest_ms: AtomicU64,
}

/// Each player sends `per_player` events one after another, each with its own Idempotency-Key,
/// retrying the same request until it gets 202 or 208 (as a real client should). Returns the XP
/// and leaderboard score each player must end with.
pub async fn stream(
    base: String,
    players: usize,
    per_player: u64,
    counts: Arc<Counts>,
) -> HashMap<String, (u64, u64)> {
    let ring = Keyring::single(SECRET).expect("key");
    let mut tasks = Vec::new();
    for p in 0..players {
        let (ring, base, counts) = (ring.clone(), base.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let player = format!("player_outage_{p}");
            let (mut want_xp, mut want_score) = (0, 0);
            for i in 0..per_player {
                let (ev, x, pts) = if i % 4 == 0 {
                    (kill(&player, 100 + i), 0, 100 + i)
                } else {
                    (xp(&player, 5 + i), 5 + i, 0)
                };
                let key = format!("{player}-{i}");
                // A retry resends the same event (only the signature's timestamp is new): an
                // Idempotency-Key names one body, and an answer lost in the outage (a 503 or a
                // dropped connection after the bus took it) must not become a second event.
                let body = serde_json::to_vec(&ev).expect("json");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let body = body.clone();
                    let ts = now();
                    let sent = Instant::now();
                    let res = client
                        .post(format!("{base}/events"))
                        .header("x-timestamp", ts.to_string())
                        .header(
                            "x-signature",
                            ring.sign_request(None, ts, "POST", "/events", &body)
                                .expect("sign"),
                        )
                        .header("idempotency-key", &key)
                        .body(body)
                        .send()
                        .await;
                    counts
                        .slowest_ms
                        .fetch_max(sent.elapsed().as_millis() as u64, Ordering::Relaxed);
                    match res.map(|r| r.status().as_u16()) {
                        Ok(202 | 208) => break,
                        Ok(503) => {
                            counts.unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(409 | 422) | Err(_) => {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(s) => panic!("{player}: unexpected status {s}"),
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{player}: event {i} never accepted"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                want_xp += x;
                want_score += x + pts;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (player, (want_xp, want_score))
        }));
    }
    let mut out = HashMap::new();
    for t in tasks {
        let (player, want) = t.await.expect("client task");
        out.insert(player, want);
    }
    out
}

/// Waits until every player shows exactly the XP and score of the events that were accepted,
/// never more, and stays there (read again after a bus redelivery could have come).
pub async fn assert_exactly_once(urls: &Urls, want: &HashMap<String, (u64, u64)>) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (player, (want_xp, want_score)) in want {
        loop {
            let (xp, score) = counted(&client, urls, player).await;
            assert!(
                xp <= *want_xp && score <= *want_score,
                "{player}: counted twice: xp {xp}/{want_xp} score {score}/{want_score}"
            );
            if xp == *want_xp && score == *want_score {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{player}: xp {xp}/{want_xp} score {score}/{want_score} never caught up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Stays exact: nothing is applied again later, also after the tests' 5-second visibility
    // timeout has passed for a batch delivered before a kill.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (player, want) in want {
        assert_eq!(
            counted(&client, urls, player).await,
            *want,
            "{player}: (xp, score)"
        );
    }
}

/// A player's XP and seasonal score as served now (0 where not read).
async fn counted(client: &reqwest::Client, urls: &Urls, player: &str) -> (u64, u64) {
    let xp = xp_now(client, &urls.progression, player)
        .await
        .unwrap_or_default();
    let board = &urls.leaderboard;
    let rank: Option<PlayerRankView> = client
        .get(format!(
            "{board}/leaderboard/players/{player}?window=seasonal&around=0"
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .ok();
    (xp, rank.map_or(0, |r| u64::try_from(r.score).unwrap_or(0)))
}
