//! A game client of a running deployment: it signs what it sends like a game server would and
//! reads answers into the services' public view types.

use liveops_core::{Keyring, Verification};
use liveops_fairness::PlayerFairness;
use liveops_leaderboard::PlayerRankView;
use liveops_progression::ProgressView;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{now, Urls};

/// Talks to the services at `urls`, signing with `ring`.
#[derive(Clone)]
pub struct Client {
    pub urls: Urls,
    ring: Keyring,
    http: reqwest::Client,
}

impl Client {
    pub fn new(urls: Urls, ring: &Keyring) -> Self {
        Self {
            urls,
            ring: ring.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// Posts `body` signed with the primary key; the status and the JSON answer (`Null` if none).
    pub async fn post_signed(&self, url: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).expect("json");
        let ts = now();
        let sig = super::sign_post(&self.ring, None, ts, url, &body);
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sig)
            .body(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET url` read as `T`; the status, and `None` if unreachable or not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> (u16, Option<T>) {
        let Ok(r) = self.http.get(url).send().await else {
            return (0, None);
        };
        let status = r.status().as_u16();
        (status, r.json().await.ok())
    }

    /// One event through the gateway.
    pub async fn send(&self, event: &Value) -> (u16, Value) {
        self.post_signed(&format!("{}/events", self.urls.gateway), event)
            .await
    }

    /// Events in one batch through the gateway.
    pub async fn send_batch(&self, events: &[Value]) -> (u16, Value) {
        let url = format!("{}/events/batch", self.urls.gateway);
        self.post_signed(&url, &json!({ "events": events })).await
    }

    /// The player's progression this season, if the service answers.
    pub async fn progress(&self, player: &str) -> Option<ProgressView> {
        let url = format!("{}/players/{player}/progress", self.urls.progression);
        self.get(&url).await.1
    }

    /// The id of the player's first pending reward, once they have one.
    pub async fn pending_reward(&self, player: &str) -> Option<String> {
        let progress = self.progress(player).await?;
        progress
            .pending_rewards
            .into_iter()
            .next()
            .map(|r| r.reward_id)
    }

    /// The player's standing on the current `window` board with `around` neighbours.
    pub async fn rank(
        &self,
        player: &str,
        window: &str,
        around: u32,
    ) -> (u16, Option<PlayerRankView>) {
        let url = format!(
            "{}/leaderboard/players/{player}?window={window}&around={around}",
            self.urls.leaderboard
        );
        self.get(&url).await
    }

    /// The player's fairness standing, if the service answers (operators only: with the
    /// deployment's operator token when it has one).
    pub async fn fairness(&self, player: &str) -> Option<PlayerFairness> {
        let url = format!("{}/fairness/players/{player}", self.urls.fairness);
        let mut req = self.http.get(url);
        if let Some(token) = &self.urls.operator {
            req = req.bearer_auth(token);
        }
        req.send().await.ok()?.json().await.ok()
    }

    /// What the deployment has counted for `player`: season XP and seasonal score (0 if none).
    pub async fn counted(&self, player: &str) -> (u64, u64) {
        let xp = self.progress(player).await.map_or(0, |p| p.xp);
        let score = self
            .rank(player, "seasonal", 0)
            .await
            .1
            .map_or(0, |r| r.score);
        (xp, u64::try_from(score).unwrap_or(0))
    }

    /// Claims `reward` for `player`.
    pub async fn claim(&self, player: &str, reward: &str) -> (u16, Value) {
        let url = format!("{}/rewards/claim", self.urls.progression);
        self.post_signed(&url, &json!({"playerId": player, "rewardId": reward}))
            .await
    }

    /// Whether the progression service says `receipt` is genuine.
    pub async fn verify(&self, receipt: &impl serde::Serialize) -> bool {
        let url = format!("{}/receipts/verify", self.urls.progression);
        let r = self
            .http
            .post(url)
            .json(receipt)
            .send()
            .await
            .expect("verify");
        let v: Verification = r.json().await.expect("a verification");
        v.valid
    }
}
