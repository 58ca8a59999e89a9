//! Keys held in the hot state while work runs: each taken with [`Idempotency::idem_begin`]
//! (answered `Fresh`) for one fingerprint, extended in the background while the work lasts, then
//! completed with an answer or released. A hold dropped unfinished (its future cancelled, its
//! client gone) is released in the background, so no one waits for it to lapse.

use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::{Idempotency, StoredAnswer};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

/// Ownership of hot-state keys taken for one piece of work, extended until it is finished with
/// [`Hold::complete`] or [`Hold::release`], and released in the background if dropped unfinished.
pub struct Hold {
    idem: Arc<dyn Idempotency>,
    /// Each key held, with how long its answer is kept once completed.
    keys: Vec<(String, Duration)>,
    /// The fingerprint (or holder id) the keys were taken for: only those claims are finished.
    print: String,
    finished: bool,
    /// The task extending the keys, stopped when the hold is finished or dropped.
    extending: Option<AbortHandle>,
}

impl Hold {
    /// A hold of no key yet, on keys of `idem` taken for the fingerprint (or holder id) `print`.
    pub fn new(idem: Arc<dyn Idempotency>, print: impl Into<String>) -> Self {
        Self {
            idem,
            keys: Vec::new(),
            print: print.into(),
            finished: false,
            extending: None,
        }
    }

    /// The fingerprint (or holder id) the keys are taken for.
    pub fn print(&self) -> &str {
        &self.print
    }

    /// Adds `key`, taken (`Fresh`) for [`Hold::print`], whose answer is kept `ttl` once completed.
    pub fn add(&mut self, key: impl Into<String>, ttl: Duration) {
        self.keys.push((key.into(), ttl));
    }

    /// Extends every key to `lease` from then (its own TTL if shorter) every `every` from `from`
    /// on, in one background task stopped when the hold is finished or dropped.
    pub fn extend_every(&mut self, every: Duration, lease: Duration, from: Instant) {
        self.stop_extending();
        if self.keys.is_empty() {
            return;
        }
        let keys: Vec<(String, Duration)> = self
            .keys
            .iter()
            .map(|(key, ttl)| (key.clone(), (*ttl).min(lease)))
            .collect();
        let extend = extend_keys(
            Arc::clone(&self.idem),
            keys,
            self.print.clone(),
            every,
            from,
        );
        let task = tokio::spawn(extend.instrument(tracing::Span::current()));
        self.extending = Some(task.abort_handle());
    }

    /// Stops extending the keys (as the hold is finished or dropped).
    fn stop_extending(&mut self) {
        if let Some(task) = self.extending.take() {
            task.abort();
        }
    }

    /// Stores `answer` under every key held, each kept its TTL; a key it cannot be stored under
    /// is logged and left to lapse.
    pub async fn complete(mut self, answer: StoredAnswer) {
        self.finished = true;
        self.stop_extending();
        for (key, ttl) in &self.keys {
            let done = self
                .idem
                .idem_complete(key, &self.print, answer.clone(), *ttl);
            if let Err(error) = done.await {
                tracing::error!(%error, %key, "hold's answer could not be stored");
            }
        }
    }

    /// Gives every key up so others can take them; a key that cannot be is logged.
    pub async fn release(mut self) {
        self.finished = true;
        self.stop_extending();
        release_all(&*self.idem, &self.keys, &self.print).await;
    }
}

/// Extends `keys` (each to its time) for `print` every `every` from `from` on, until aborted; a
/// key found lost (it lapsed anyway: a hot-state outage outlasted it) is logged and no longer
/// extended.
async fn extend_keys(
    idem: Arc<dyn Idempotency>,
    mut keys: Vec<(String, Duration)>,
    print: String,
    every: Duration,
    from: Instant,
) {
    let mut tick = tokio::time::interval_at(from + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !keys.is_empty() {
        tick.tick().await;
        let mut kept = Vec::with_capacity(keys.len());
        for (key, ttl) in keys {
            match idem.idem_extend(&key, &print, ttl).await {
                Ok(true) => kept.push((key, ttl)),
                Ok(false) => tracing::warn!(%key, "hold lapsed before its work was finished"),
                Err(error) => {
                    tracing::warn!(%error, %key, "hold could not be extended");
                    kept.push((key, ttl));
                }
            }
        }
        keys = kept;
    }
}

/// Releases every key of `keys` held for `print`, logging what cannot be.
async fn release_all(idem: &dyn Idempotency, keys: &[(String, Duration)], print: &str) {
    for (key, _) in keys {
        if let Err(error) = idem.idem_release(key, print).await {
            tracing::warn!(%error, %key, "hold could not be released");
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop_extending();
        if self.finished || self.keys.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let idem = Arc::clone(&self.idem);
            let keys = std::mem::take(&mut self.keys);
            let print = std::mem::take(&mut self.print);
            let release = async move { release_all(&*idem, &keys, &print).await };
            rt.spawn(release.instrument(tracing::Span::current()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use liveops_core::ports::IdemState;
    use liveops_memory::MemoryHotState;

    use super::*;

    /// A hold of `key` taken in `idem` for `print`, kept `ttl`.
    async fn held(idem: &Arc<dyn Idempotency>, key: &str, print: &str, ttl: Duration) -> Hold {
        let begun = idem.idem_begin(key, print, ttl).await.unwrap();
        assert_eq!(begun, IdemState::Fresh);
        let mut hold = Hold::new(Arc::clone(idem), print);
        hold.add(key, ttl);
        hold
    }

    #[tokio::test]
    async fn a_hold_dropped_unfinished_is_released_in_the_background() {
        let idem: Arc<dyn Idempotency> = Arc::new(MemoryHotState::new());
        let hold = held(&idem, "k", "mine", Duration::from_secs(60)).await;
        drop(hold);
        let deadline = Instant::now() + Duration::from_secs(5);
        while idem
            .idem_begin("k", "other", Duration::from_secs(60))
            .await
            .unwrap()
            != IdemState::Fresh
        {
            assert!(Instant::now() < deadline, "still held after being dropped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_hold_is_extended_until_completed() {
        let idem: Arc<dyn Idempotency> = Arc::new(MemoryHotState::new());
        let lease = Duration::from_secs(1);
        let mut hold = held(&idem, "k", "mine", lease).await;
        hold.extend_every(Duration::from_millis(100), lease, Instant::now());
        tokio::time::sleep(3 * lease).await;
        let still = idem.idem_begin("k", "mine", lease).await.unwrap();
        assert_eq!(still, IdemState::InFlight, "extended past its lease");
        let answer = StoredAnswer {
            status: 200,
            body: "{}".into(),
        };
        hold.complete(answer.clone()).await;
        let again = idem.idem_begin("k", "mine", lease).await.unwrap();
        assert_eq!(again, IdemState::Done(answer));
    }
}
