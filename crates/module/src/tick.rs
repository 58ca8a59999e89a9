//! The loop every periodic background task runs (the campaign scheduler, settlement, the webhook
//! queue, the decider, the retention purges): one round per tick until stopped, a failing round
//! logged once until one succeeds again, and the metrics an alert needs to see a task that has
//! not succeeded for longer than its period allows ([`Failures`]).

use std::future::Future;
use std::time::Duration;

use liveops_core::ports::Health;
use liveops_core::stores::{Campaign, CampaignPage, CampaignState, CampaignStore};
use liveops_core::{PortError, PortResult};

use crate::ConfigError;

/// How long a round waits for its backend's health check after an item looked like an outage.
pub const HEALTH_WAIT: Duration = Duration::from_secs(5);
/// Items in a row that look like an outage, the backend answering its check, that end a round.
pub const OUTAGE_RUN: usize = 3;

/// A task's period from `var`, in milliseconds: between 50 ms and a minute.
pub fn period(var: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    ConfigError::within(var, ms, 50..=60_000).map(Duration::from_millis)
}
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs `round` every `tick` until `stop` is cancelled, which also cuts a round short (every
/// round is a set of transactions a crash may interrupt anyway). Failing rounds are noted by a
/// [`Failures`] named `failing` (what cannot be done); a failing round is retried on the next
/// tick.
pub async fn every_tick<T, F, Fut>(
    tick: Duration,
    stop: CancellationToken,
    failing: &'static str,
    round: F,
) -> Result<(), PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    every_tick_after(Duration::ZERO, tick, stop, failing, round).await
}

/// [`every_tick`] whose first round waits `first` (a purge that need not run as a process
/// starts, when every replica of a rollout would run it at once).
pub async fn every_tick_after<T, F, Fut>(
    first: Duration,
    tick: Duration,
    stop: CancellationToken,
    failing: &'static str,
    round: F,
) -> Result<(), PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    let never = std::future::pending::<()>;
    every_tick_or_woken(first, tick, never, stop, failing, round).await
}

/// [`every_tick_after`] that also runs a round as soon as `woken()` returns (the keys a round
/// works with changed), the next tick then a whole `tick` later.
pub async fn every_tick_or_woken<T, F, Fut, W, Wake>(
    first: Duration,
    tick: Duration,
    mut woken: W,
    stop: CancellationToken,
    failing: &'static str,
    mut round: F,
) -> Result<(), PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
    W: FnMut() -> Wake,
    Wake: Future<Output = ()>,
{
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + first, tick);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut log = Failures::new(failing, tick.max(first));
    loop {
        // Biased: once stopped, no further round starts even if a tick is due as well.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = timer.tick() => {}
            () = woken() => timer.reset(),
        }
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            r = round() => r,
        };
        log.note(result.map(|_| ()));
    }
}

/// How often a run of failures that changed its error is logged again.
const CHANGED_EVERY: Duration = Duration::from_secs(60);

/// What a background task's rounds are told by. Each failing one is counted
/// (`background_round_failures_total{task}`, `task` being what cannot be done), the first of a
/// run logged as a warning, and again (at most once a minute) when the error changes, so one
/// item that always fails does not hide a second one failing later; the first success after a
/// run as an info line. Every line carries the task as its `task` field. Each success sets
/// `background_round_last_success_timestamp_seconds{task}`, and
/// `background_round_period_seconds{task}` says how often one is expected, so one alert covers
/// an hourly purge as well as a task that runs every second.
#[derive(Debug)]
pub struct Failures {
    /// What cannot be done while it fails.
    what: &'static str,
    /// The error last logged and when, while the run lasts.
    run: Option<(String, tokio::time::Instant)>,
}

impl Failures {
    /// Nothing failing yet, for a task with a round every `period`. The failure counter starts
    /// at 0 (so the first failure shows in an `increase()`), the period is published, and the
    /// start counts as the last success (a task that never succeeds is alerted on as one that
    /// stopped succeeding).
    pub fn new(what: &'static str, period: Duration) -> Self {
        metrics::counter!("background_round_failures_total", "task" => what).increment(0);
        metrics::gauge!("background_round_period_seconds", "task" => what)
            .set(period.as_secs_f64());
        succeeded(what);
        Self { what, run: None }
    }

    /// Takes note of a round's outcome.
    pub fn note(&mut self, outcome: PortResult<()>) {
        let error = match outcome {
            Ok(()) => {
                succeeded(self.what);
                if self.run.take().is_some() {
                    tracing::info!(task = self.what, "{}: recovered", self.what);
                }
                return;
            }
            Err(error) => error,
        };
        metrics::counter!("background_round_failures_total", "task" => self.what).increment(1);
        let text = error.to_string();
        match &self.run {
            None => tracing::warn!(task = self.what, %error, "{}; retrying", self.what),
            Some((last, at)) if *last != text && at.elapsed() >= CHANGED_EVERY => {
                tracing::warn!(task = self.what, %error,
                    "{}; still failing, now with another error", self.what);
            }
            Some(_) => return,
        }
        self.run = Some((text, tokio::time::Instant::now()));
    }
}

/// Records a success of the task `what` now.
fn succeeded(what: &'static str) {
    let now = liveops_core::now_ms() as f64 / 1000.0;
    metrics::gauge!("background_round_last_success_timestamp_seconds", "task" => what).set(now);
}

/// `error` with `item` (a campaign id, a board) in front of its message.
pub fn naming(item: &str, error: PortError) -> PortError {
    match error {
        PortError::Unavailable(m) => PortError::Unavailable(format!("{item}: {m}")),
        PortError::Corrupt(m) => PortError::Corrupt(format!("{item}: {m}")),
    }
}

/// One round over `items` (campaigns, deliveries): `one` runs on each in turn, and how many it
/// did something for (`true`) is returned. An item that fails is passed over (logged at debug),
/// so that one stuck item does not hold up the rest, also when its failure looks like an outage
/// (a call past its time limit on one large item) while `backend` still answers its health check
/// within [`HEALTH_WAIT`]; a `backend` that does not, or [`OUTAGE_RUN`] such failures in a row (a
/// struggling database that still answers the check), end the round at once. The round then
/// fails with the first error, named by its item, which [`every_tick`] logs once per run of
/// failing rounds, however many ticks it lasts.
pub async fn each<T, F, Fut>(
    items: Vec<T>,
    failing: &'static str,
    name: impl Fn(&T) -> &str,
    backend: &dyn Health,
    mut one: F,
) -> PortResult<usize>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = PortResult<bool>>,
{
    let (mut done, mut failed, mut in_a_row) = (0, None, 0);
    for item in items {
        let named = name(&item).to_owned();
        let error = match one(item).await {
            Ok(did) => {
                done += usize::from(did);
                in_a_row = 0;
                continue;
            }
            Err(error @ PortError::Unavailable(_)) => {
                let error = naming(&named, error);
                in_a_row += 1;
                let answers = tokio::time::timeout(HEALTH_WAIT, backend.healthcheck()).await;
                if in_a_row >= OUTAGE_RUN || !matches!(answers, Ok(Ok(()))) {
                    return Err(failed.unwrap_or(error));
                }
                error
            }
            Err(error @ PortError::Corrupt(_)) => {
                in_a_row = 0;
                naming(&named, error)
            }
        };
        tracing::debug!(item = named, %error, "{failing}; passed over");
        failed.get_or_insert(error);
    }
    failed.map_or(Ok(done), Err)
}

/// Where a round over the ended campaigns goes past the first page: every round takes the first
/// page (the newest created, where a campaign that just ended usually is, so it is decided on
/// time) and, while there are more, the next page after the one the round before took, from the
/// second page again after the last. So every ended campaign is visited in turn however many
/// there are (a page of campaigns that keep failing holds up none of the others), and each
/// round reads at most two pages.
#[derive(Debug, Default)]
pub struct Rotation(std::sync::Mutex<Option<(i64, String)>>);

impl Rotation {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(i64, String)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the page past the first starts: after this campaign (creation time and id); `None`
    /// when there is none to read (the first page was short, or the last was just read).
    fn at(&self) -> Option<(i64, String)> {
        self.lock().clone()
    }

    /// Moves the next page's start to after `at` (`None`: no page past the first).
    fn set(&self, at: Option<(i64, String)>) {
        *self.lock() = at;
    }
}

/// `c`'s place in the listing ([`Campaign::position`]), kept past the page it was read in.
fn place(c: &Campaign) -> (i64, String) {
    let (at, id) = c.position();
    (at, id.to_owned())
}

/// Where the page after `page` (asked for `limit`) starts: after its last campaign if it was
/// full; after a short one there is none.
fn after(page: &[Campaign], limit: u32) -> Option<(i64, String)> {
    (page.len() >= limit as usize)
        .then(|| page.last().map(place))
        .flatten()
}

/// A round over the ended campaigns (the decider's and the settler's): the first page of at
/// most `limit` and the page `rotation` is at ([`Rotation`]), [`each`] with `one` on each. The
/// rotation moves past what the round reached: past the whole page when the round ran through
/// (failing campaigns are passed over, so a page that keeps failing does not hold it); past the
/// last campaign it came to when an outage ended the round within that page, so the rest are
/// next (the one or few whose failures ended the round wait for the next cycle: retried first,
/// a run that keeps failing would hold the rotation); not at all when the round ended within
/// the first page, before it came to that page.
pub async fn each_ended<F, Fut>(
    campaigns: &dyn CampaignStore,
    limit: u32,
    rotation: &Rotation,
    failing: &'static str,
    mut one: F,
) -> PortResult<usize>
where
    F: FnMut(Campaign) -> Fut,
    Fut: Future<Output = PortResult<bool>>,
{
    let state = Some(CampaignState::Ended);
    let mut round = campaigns
        .campaigns(CampaignPage::first(state, limit))
        .await?;
    let first = round.len();
    let next = match rotation.at() {
        Some((at, id)) => {
            let page = CampaignPage {
                state,
                limit,
                after: Some((at, id.as_str())),
            };
            let mut more = campaigns.campaigns(page).await?;
            // Past a full page the next one; past the last, the second page again (after the
            // first, if that is still full).
            let next = after(
                if more.len() >= limit as usize {
                    &more
                } else {
                    &round
                },
                limit,
            );
            // Campaigns that ended meanwhile push the pages down: one read twice is taken once.
            more.retain(|c| !round.iter().any(|r| r.id == c.id));
            round.extend(more);
            next
        }
        None => after(&round, limit),
    };
    let (total, mut came_to, mut reached) = (round.len(), 0, None);
    let result = each(
        round,
        failing,
        |c| &c.id,
        campaigns,
        |c: Campaign| {
            came_to += 1;
            if came_to > first {
                reached = Some(place(&c));
            }
            one(c)
        },
    )
    .await;
    if came_to == total {
        rotation.set(next);
    } else if reached.is_some() {
        rotation.set(reached);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A run of failures is logged once, and again when its error changes (at most once a
    /// minute): the error last logged is what the run remembers; a success ends the run.
    #[tokio::test]
    async fn a_run_of_failures_is_told_again_when_its_error_changes() {
        let mut log = Failures::new("cannot test", Duration::from_secs(1));
        let fail = |m: &str| Err(PortError::Unavailable(m.into()));
        log.note(fail("campaign a: stuck"));
        let (first, at) = log.run.clone().expect("a run");
        assert!(first.contains("campaign a"), "{first}");
        // Another error within the minute: not logged again.
        log.note(fail("campaign b: stuck"));
        assert_eq!(log.run.as_ref().map(|r| r.0.as_str()), Some(first.as_str()));
        // A minute on, it is.
        let earlier = at.checked_sub(CHANGED_EVERY).unwrap_or(at);
        log.run = Some((first.clone(), earlier));
        log.note(fail("campaign b: stuck"));
        let (now, _) = log.run.clone().expect("still a run");
        assert!(now.contains("campaign b"), "{now}");
        // The same error again is not news.
        log.note(fail("campaign b: stuck"));
        assert_eq!(log.run.as_ref().map(|r| r.0.as_str()), Some(now.as_str()));
        log.note(Ok(()));
        assert!(log.run.is_none(), "recovered");
    }

    /// A task's metrics exist from its start: its failures at 0 (an `increase()` sees the first
    /// one), its period, and a last success at the start; each success moves it, a failure does
    /// not. Its log lines carry the task as the field `task`.
    #[test]
    fn a_task_publishes_its_period_and_last_success_and_logs_its_name_as_a_field() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let value = |name: &str| {
            liveops_testkit::logs::sample(
                &handle.render(),
                &format!("{name}{{task=\"cannot test\"}}"),
            )
        };
        let logs = liveops_testkit::logs::Captured::start();
        let before = liveops_core::now_ms() as f64 / 1000.0;
        let mut log = metrics::with_local_recorder(&recorder, || {
            Failures::new("cannot test", Duration::from_secs(3600))
        });
        assert_eq!(value("background_round_failures_total"), Some(0.0));
        assert_eq!(value("background_round_period_seconds"), Some(3600.0));
        let started = value("background_round_last_success_timestamp_seconds").expect("set");
        assert!(started >= before.floor(), "{started} < {before}");

        metrics::with_local_recorder(&recorder, || {
            log.note(Err(PortError::Unavailable("down".into())));
        });
        assert_eq!(value("background_round_failures_total"), Some(1.0));
        let failed = logs
            .line("cannot test; retrying")
            .expect("the failure is logged");
        assert_eq!(failed["task"], "cannot test", "{failed}");
        assert_eq!(failed["level"], "WARN", "{failed}");

        // A success later: the gauge moves to it, and the recovery line names the task too.
        std::thread::sleep(Duration::from_millis(1100));
        metrics::with_local_recorder(&recorder, || log.note(Ok(())));
        let succeeded = value("background_round_last_success_timestamp_seconds").expect("set");
        assert!(succeeded > started, "{succeeded} <= {started}");
        let recovered = logs.line("cannot test: recovered").expect("logged");
        assert_eq!(recovered["task"], "cannot test", "{recovered}");
    }

    #[tokio::test]
    async fn rounds_run_until_stopped_and_errors_do_not_end_the_loop() {
        let stop = CancellationToken::new();
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let stopper = stop.clone();
        let run = every_tick(Duration::from_millis(1), stop, "cannot count", move || {
            let counted = counted.clone();
            let stopper = stopper.clone();
            async move {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 5 {
                    stopper.cancel();
                }
                if n % 2 == 1 {
                    Ok(n)
                } else {
                    Err(PortError::Unavailable("even round".into()))
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the loop ends once stopped")
            .expect("a stopped loop ends without error");
        assert_eq!(rounds.load(Ordering::SeqCst), 5);
    }

    /// A backend that answers its health check, or not.
    struct Backend(bool);

    #[async_trait::async_trait]
    impl Health for Backend {
        async fn healthcheck(&self) -> PortResult<()> {
            if self.0 {
                Ok(())
            } else {
                Err(PortError::Unavailable("down".into()))
            }
        }
    }

    /// A round over `items` against a backend that is `up`, each item answered by `answer`:
    /// what the round returned and the items it ran.
    async fn round(
        up: bool,
        items: Vec<i32>,
        answer: impl Fn(i32) -> PortResult<bool>,
    ) -> (PortResult<usize>, Vec<i32>) {
        let mut seen = Vec::new();
        let done = each(
            items,
            "cannot count",
            |_| "n",
            &Backend(up),
            |n: i32| {
                seen.push(n);
                std::future::ready(answer(n))
            },
        )
        .await;
        (done, seen)
    }

    #[tokio::test]
    async fn a_failing_item_is_passed_over_and_an_outage_ends_the_round() {
        let (done, seen) = round(true, vec![1, 2, 3, 4], |n| match n {
            2 => Err(PortError::Corrupt("two".into())),
            _ => Ok(n % 2 == 1),
        })
        .await;
        assert_eq!(done, Err(PortError::Corrupt("n: two".into())));
        assert_eq!(
            seen,
            [1, 2, 3, 4],
            "the items after the failing one still run"
        );
        assert_eq!(round(true, vec![1, 3], |_| Ok(true)).await.0, Ok(2));
        let timed_out = |n| match n {
            1 => Err(PortError::Unavailable("timed out".into())),
            _ => Ok(true),
        };
        // One item's call timed out, the backend answers: the others go on.
        let (done, seen) = round(true, vec![1, 2, 3], timed_out).await;
        assert_eq!(done, Err(PortError::Unavailable("n: timed out".into())));
        assert_eq!(seen, [1, 2, 3], "one slow item does not hold up the rest");
        // The backend does not answer: an outage ends the round.
        let (done, seen) = round(false, vec![1, 2, 3], timed_out).await;
        assert!(matches!(done, Err(PortError::Unavailable(_))));
        assert_eq!(seen, [1], "an outage ends the round");
        // The backend answers its check but every item times out: a few, then the round ends.
        let all_time_out = |_| Err(PortError::Unavailable("timed out".into()));
        let (done, seen) = round(true, (1..=10).collect(), all_time_out).await;
        assert_eq!(done, Err(PortError::Unavailable("n: timed out".into())));
        assert_eq!(seen, [1, 2, 3], "{OUTAGE_RUN} in a row end the round");
    }

    /// Ended campaigns in a list, paged as the stores page them; its health check fails while
    /// `down` is set. Only the listing and the check are used by a round.
    struct Ended {
        all: Vec<Campaign>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Health for Ended {
        async fn healthcheck(&self) -> PortResult<()> {
            match self.down.load(Ordering::SeqCst) {
                true => Err(PortError::Unavailable("down".into())),
                false => Ok(()),
            }
        }
    }

    #[async_trait::async_trait]
    impl CampaignStore for Ended {
        async fn create_campaign(
            &self,
            _: Option<&liveops_core::stores::Keyed>,
            _: &Campaign,
            _: &liveops_core::stores::AuditEntry,
        ) -> PortResult<liveops_core::stores::KeyedOutcome> {
            Err(PortError::Corrupt("not in a round".into()))
        }
        async fn campaign(&self, _: &str) -> PortResult<Option<Campaign>> {
            Err(PortError::Corrupt("not in a round".into()))
        }
        async fn campaigns(&self, page: CampaignPage<'_>) -> PortResult<Vec<Campaign>> {
            let after = |c: &&Campaign| page.after.is_none_or(|at| c.position() < at);
            let limit = page.limit as usize;
            Ok(self.all.iter().filter(after).take(limit).cloned().collect())
        }
        async fn update_campaign(
            &self,
            _: &Campaign,
            _: &Campaign,
            _: &liveops_core::stores::AuditEntry,
            _: Option<&liveops_core::stores::CampaignEvent>,
        ) -> PortResult<bool> {
            Err(PortError::Corrupt("not in a round".into()))
        }
        async fn advance(
            &self,
            _: &str,
            _: CampaignState,
            _: CampaignState,
            _: Option<&liveops_core::stores::CampaignEvent>,
        ) -> PortResult<bool> {
            Err(PortError::Corrupt("not in a round".into()))
        }
        async fn due(&self, _: i64, _: u32) -> PortResult<Vec<Campaign>> {
            Err(PortError::Corrupt("not in a round".into()))
        }
    }

    /// A round over `store` in which the campaigns numbered in `outage` find the store down:
    /// the numbers of the campaigns it came to.
    async fn ended_round(store: &Ended, rotation: &Rotation, outage: &[usize]) -> Vec<usize> {
        let number = |c: &Campaign| c.id.trim_start_matches("c").parse::<usize>().unwrap_or(0);
        let mut came_to = Vec::new();
        let _ = each_ended(store, 10, rotation, "cannot decide", |c| {
            let n = number(&c);
            came_to.push(n);
            store.down.store(outage.contains(&n), Ordering::SeqCst);
            std::future::ready(match outage.contains(&n) {
                true => Err(PortError::Unavailable("down".into())),
                false => Ok(true),
            })
        })
        .await;
        store.down.store(false, Ordering::SeqCst);
        came_to
    }

    #[tokio::test]
    async fn an_outage_holds_the_rotation_where_the_round_stopped() {
        // 33 ended campaigns, c0 the newest; pages of 10.
        let all = (0..33)
            .map(|n: i64| Campaign {
                id: format!("c{n:02}"),
                created_at_ms: 1_000_000 - n,
                state: CampaignState::Ended,
                ..liveops_testkit::conformance::live::campaign("ended")
            })
            .collect();
        let store = Ended {
            all,
            down: false.into(),
        };
        let rotation = Rotation::default();
        let range = |r: std::ops::Range<usize>| r.collect::<Vec<_>>();
        assert_eq!(ended_round(&store, &rotation, &[]).await, range(0..10));
        // The store goes down at c14: the round ends there, and the next one goes on from c15.
        let cut = ended_round(&store, &rotation, &[14]).await;
        assert_eq!(cut, range(0..15));
        let next = ended_round(&store, &rotation, &[]).await;
        assert_eq!(next, [range(0..10), range(15..25)].concat());
        // Down within the first page: the rotating page (c25..) was not come to, so it is next.
        assert_eq!(ended_round(&store, &rotation, &[3]).await, range(0..4));
        let next = ended_round(&store, &rotation, &[]).await;
        assert_eq!(next, [range(0..10), range(25..33)].concat());
        // Past the last page, the second page again.
        let next = ended_round(&store, &rotation, &[]).await;
        assert_eq!(next, [range(0..10), range(10..20)].concat());
    }

    #[test]
    fn periods_are_bounded_and_name_their_variable() {
        assert_eq!(period("T", 50), Ok(Duration::from_millis(50)));
        assert_eq!(period("T", 60_000), Ok(Duration::from_secs(60)));
        for bad in [0, 49, 60_001] {
            let e = period("TICK_MS", bad).unwrap_err();
            assert_eq!(e.to_string(), "TICK_MS: must be between 50 and 60000");
        }
    }

    #[tokio::test]
    async fn a_stop_cuts_a_round_short() {
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        let run = every_tick(Duration::from_millis(1), stop, "cannot wait", move || {
            let stopper = stopper.clone();
            async move {
                stopper.cancel();
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("a round that never ends is cut short by the stop")
            .expect("a stopped loop ends without error");
    }
}
