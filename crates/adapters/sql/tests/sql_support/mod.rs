//! Shared by the PostgreSQL and MySQL test files: reading the server URL from the environment,
//! rewriting its address or database, and a TCP proxy that plays a database outage.

#![allow(dead_code)] // each test file uses its own share
#![allow(clippy::unwrap_used)] // tests may unwrap

pub mod sealed;
pub mod server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use liveops_core::ports::{Board, PortError, RankEntry, ScoreDelta};
use liveops_core::stores::{
    InboxBelow, InboxMessage, InboxPage, InboxStore, ItemGrant, Keyed, KeyedOutcome, ListedMessage,
    ProgressCommit, PurgeRound, RequestKey, RequestKeys, Snapshot,
};
use liveops_core::Window;
use liveops_sql::Repository;
use uuid::Uuid;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The URL in `var`, or a panic naming the variable: these tests never skip silently.
pub fn server_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: these tests need a real server \
             (`scripts/services.sh start`, then `source /tmp/liveops-services/env`)"
        ),
    }
}

/// A suffix unique to this run, for database names and ids.
pub fn suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// `scheme://user:pass@host:port/db?params` in parts: (before the address, the address,
/// the path and query after it).
fn split(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, address) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    (
        format!("{scheme}://{userinfo}"),
        address.to_owned(),
        tail.to_owned(),
    )
}

/// The server's address (`host:port`) in `url`.
pub fn address(url: &str) -> String {
    split(url).1
}

/// `url` with its address replaced.
pub fn with_address(url: &str, address: &str) -> String {
    let (head, _, tail) = split(url);
    format!("{head}{address}{tail}")
}

/// `url` with its database replaced (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (head, address, tail) = split(url);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{head}{address}/{db}{query}")
}

/// `url` with another scheme.
pub fn with_scheme(url: &str, scheme: &str) -> String {
    let (_, rest) = url.split_once("://").unwrap();
    format!("{scheme}://{rest}")
}

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards to the server.
    Up,
    /// The server is gone: open connections are closed, new ones closed at once.
    Down,
    /// The server hangs: open connections go silent, new ones are accepted and never answered.
    Frozen,
}

/// A TCP proxy in front of a database server, switched between [`Mode`]s by the test.
pub struct Proxy {
    /// Where clients connect (`127.0.0.1:port`).
    pub address: String,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = tokio::net::lookup_host(upstream)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (mode, watcher) = watch::channel(Mode::Up);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mode = watcher.clone();
                let now = *mode.borrow();
                match now {
                    Mode::Up => {
                        tokio::spawn(pipe(client, upstream, mode));
                    }
                    Mode::Down => drop(client),
                    Mode::Frozen => {
                        tokio::spawn(hold(client, mode));
                    }
                }
            }
        });
        Proxy {
            address,
            mode,
            accept,
        }
    }

    /// Switches mode.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set(Mode::Down);
        self.accept.abort();
    }
}

/// Forwards one connection until it ends or the mode leaves `Up`; frozen, it holds both sockets
/// silent until the outage ends, then closes them.
async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let left_up = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
        m = mode.wait_for(|m| *m != Mode::Up) => m.ok().map(|m| *m),
    };
    if left_up == Some(Mode::Frozen) {
        let _ = mode.wait_for(|m| *m != Mode::Frozen).await;
    }
    let _ = client.shutdown().await;
}

/// Holds a connection accepted while frozen, answering nothing, until the mode changes.
async fn hold(client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m != Mode::Frozen).await;
    drop(client);
}

/// Polls `check` until it returns true, for at most `limit`; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Ids differing only in case are different players, and ties and lists sort by bytes
/// (upper case before lower case), as on SQLite.
pub async fn ids_are_case_sensitive_and_sorted_by_bytes(repo: &dyn Repository) {
    let s = suffix();
    let (upper, lower) = (format!("Case_{s}"), format!("case_{s}"));
    let board = Board {
        window: Window::Daily,
        period: format!("case-{s}"),
    };
    let delta = |player: &str| ScoreDelta {
        board: board.clone(),
        player_id: player.to_owned(),
        delta: 10,
    };
    repo.commit_scores(
        &format!("case_{s}"),
        &[Uuid::now_v7()],
        &[delta(&upper), delta(&lower)],
    )
    .await
    .unwrap();
    // Two players (scores come in no particular order; callers rank them).
    let mut scores = repo.board_scores(&board).await.unwrap();
    scores.sort();
    assert_eq!(scores, [(upper.clone(), 10), (lower.clone(), 10)]);

    let grant = |item: &str| ItemGrant {
        player_id: upper.clone(),
        item: item.to_owned(),
        quantity: 1,
    };
    let commit = ProgressCommit {
        event_ids: vec![Uuid::now_v7()],
        items: vec![grant("sword"), grant("Sword"), grant("axe")],
        ..Default::default()
    };
    repo.commit_progress(&format!("case_{s}"), &commit)
        .await
        .unwrap();
    let items: Vec<String> = repo
        .progress(&upper, 1)
        .await
        .unwrap()
        .inventory
        .into_iter()
        .map(|i| i.item)
        .collect();
    assert_eq!(items, ["Sword", "axe", "sword"]);
    assert!(repo.progress(&lower, 1).await.unwrap().inventory.is_empty());
}

/// A hall-of-fame snapshot of 1000 long entries (more than 64 KiB of JSON) round-trips.
pub async fn large_snapshots_round_trip(repo: &dyn Repository) {
    let s = suffix();
    let snapshot = Snapshot {
        window: Window::Seasonal,
        period: format!("big-{s}"),
        taken_at_ms: 1,
        is_final: true,
        entries: (0..1000)
            .map(|i| RankEntry {
                rank: i + 1,
                player_id: format!("player_with_a_rather_long_name_{i:05}_{s}"),
                score: 1_000_000_000 - i as i64,
            })
            .collect(),
    };
    assert!(serde_json::to_string(&snapshot.entries).unwrap().len() > 65_535);
    repo.save_snapshot(&snapshot).await.unwrap();
    let board = Board {
        window: snapshot.window,
        period: snapshot.period.clone(),
    };
    assert_eq!(repo.snapshot(&board).await.unwrap(), Some(snapshot));
}

/// Through `proxy`: with the server down or hung, calls answer `Unavailable` within a few
/// seconds and change nothing; once it is back, the same repository works again by itself.
pub async fn outage_then_recovery(repo: &dyn Repository, proxy: &Proxy) {
    let s = suffix();
    let consumer = format!("outage_{s}");
    let player = format!("p{s}");
    let board = Board {
        window: Window::Daily,
        period: format!("outage-{s}"),
    };
    let delta = |n: i64| ScoreDelta {
        board: board.clone(),
        player_id: player.clone(),
        delta: n,
    };
    repo.commit_scores(&consumer, &[Uuid::now_v7()], &[delta(5)])
        .await
        .unwrap();

    for mode in [Mode::Down, Mode::Frozen, Mode::Down] {
        proxy.set(mode);
        let started = Instant::now();
        let health = repo.healthcheck().await;
        let write = repo
            .commit_scores(&consumer, &[Uuid::now_v7()], &[delta(100)])
            .await;
        let read = repo.board_scores(&board).await;
        let took = started.elapsed();
        for (what, r) in [
            ("healthcheck", health),
            ("commit_scores", write.map(|_| ())),
        ] {
            assert!(
                matches!(r, Err(PortError::Unavailable(_))),
                "{mode:?}: {what} gave {r:?}"
            );
        }
        assert!(
            matches!(read, Err(PortError::Unavailable(_))),
            "{mode:?}: board_scores gave {read:?}"
        );
        assert!(
            took < Duration::from_secs(12),
            "{mode:?}: three calls took {took:?}"
        );
        println!("{mode:?}: three calls failed in {took:?}");

        proxy.set(Mode::Up);
        let back = eventually(Duration::from_secs(15), || async {
            repo.healthcheck().await.is_ok()
        })
        .await;
        assert!(back, "no recovery after {mode:?}");
        assert_eq!(
            repo.board_scores(&board).await.unwrap(),
            [(player.clone(), 5)],
            "a failed commit changed something"
        );
    }
}

#[test]
fn urls_are_rewritten_part_by_part() {
    let url = "postgres://u:p@127.0.0.1:15432/liveops?sslmode=disable";
    assert_eq!(address(url), "127.0.0.1:15432");
    assert_eq!(
        with_address(url, "127.0.0.1:1"),
        "postgres://u:p@127.0.0.1:1/liveops?sslmode=disable"
    );
    assert_eq!(
        with_database(url, "other"),
        "postgres://u:p@127.0.0.1:15432/other?sslmode=disable"
    );
    assert_eq!(
        with_scheme(url, "postgresql"),
        "postgresql://u:p@127.0.0.1:15432/liveops?sslmode=disable"
    );
    assert_eq!(with_database("mysql://h:3306", "d"), "mysql://h:3306/d");
}

/// Every spelling in `schemes` of the server at `url` opens a repository on that server (what it
/// writes, `direct` reads), and `foreign`, another backend's scheme, is refused.
pub async fn picks_backend_by_scheme(
    url: &str,
    schemes: &[&str],
    direct: &dyn Repository,
    foreign: Option<&str>,
) {
    for scheme in schemes {
        let repo = liveops_sql::connect_repository(&with_scheme(url, scheme))
            .await
            .unwrap();
        repo.migrate().await.unwrap();
        repo.healthcheck().await.unwrap();
        let board = Board {
            window: Window::Daily,
            period: format!("scheme-{}", suffix()),
        };
        let delta = ScoreDelta {
            board: board.clone(),
            player_id: "scheme_player".into(),
            delta: 7,
        };
        repo.commit_scores("scheme_test", &[Uuid::now_v7()], &[delta])
            .await
            .unwrap();
        assert_eq!(
            direct.board_scores(&board).await.unwrap(),
            [("scheme_player".to_owned(), 7)],
            "{scheme}"
        );
    }
    if let Some(foreign) = foreign {
        assert!(
            liveops_sql::connect_repository(&with_scheme(url, foreign))
                .await
                .is_err(),
            "{foreign} spoke to this server"
        );
    }
}

/// Opening (`open`) a port nobody listens on fails as unavailable within 5 s, without the
/// credentials in the message.
pub async fn opening_a_missing_server_fails_fast<R, F, Fut>(url: &str, open: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<R, PortError>>,
{
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let started = Instant::now();
    let Err(err) = open(with_address(url, &format!("127.0.0.1:{port}"))).await else {
        panic!("opened a server that is not there");
    };
    assert!(matches!(err, PortError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("liveops:liveops"), "{err}");
}

/// On a database of its own (the purge sweeps every consumer): processed event ids and fairness
/// verdicts written before the cutoff go, in steps over several thousand keys and several
/// consumers, and those written after it stay, whatever the order of their ids; so do fairness
/// flags, by their own cutoff.
pub async fn purge_removes_only_rows_past_the_cutoff(repo: &dyn Repository) {
    use liveops_core::stores::FairnessCommit;
    // Ids of the later writes sort before, between and after those of the earlier ones.
    let ids: Vec<Uuid> = (0..5000).map(|_| Uuid::now_v7()).collect();
    let new: Vec<Uuid> = ids.iter().step_by(10).copied().collect();
    let old: Vec<Uuid> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!((old.len(), new.len()), (4500, 500));
    let (a, b) = (
        format!("purge_a_{}", suffix()),
        format!("purge_b_{}", suffix()),
    );
    let progress = |ids: &[Uuid]| ProgressCommit {
        event_ids: ids.to_vec(),
        ..Default::default()
    };
    let verdicts = |ids: &[Uuid]| FairnessCommit {
        verdicts: ids.iter().map(|id| (*id, false)).collect(),
        at_ms: liveops_core::now_ms(),
        ..Default::default()
    };
    repo.commit_progress(&a, &progress(&old)).await.unwrap();
    repo.commit_progress(&b, &progress(&old[..10]))
        .await
        .unwrap();
    repo.commit_fairness(&verdicts(&old)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = liveops_core::now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    repo.commit_progress(&a, &progress(&new)).await.unwrap();
    repo.commit_fairness(&verdicts(&new)).await.unwrap();
    // An operator's keyed create each side of the cutoff: the earlier key goes with the rows.
    let keys = [cutoff - 10, cutoff + 10].map(|at_ms| {
        let key = RequestKey {
            operator_id: format!("op_purge_{}", suffix()),
            key: "k".into(),
            route: "POST /campaigns".into(),
            request_hash: "h".into(),
        };
        (at_ms, key)
    });
    for (at_ms, key) in &keys {
        let c = liveops_testkit::conformance::live::campaign("purge");
        let audit = liveops_core::stores::AuditEntry {
            at_ms: *at_ms,
            actor: "purge@example.com".into(),
            action: "campaign.create".into(),
            target: c.id.clone(),
            before: None,
            after: None,
        };
        let keyed = Keyed {
            key: key.clone(),
            answer: c.id.clone(),
        };
        let made = repo
            .create_campaign(Some(&keyed), &c, &audit)
            .await
            .unwrap();
        assert_eq!(made, KeyedOutcome::Written);
    }

    assert_eq!(
        repo.purge_before(cutoff - 60_000, walking()).await.unwrap(),
        0
    );
    assert_eq!(repo.processed(&a, &ids).await.unwrap().len(), 5000);

    let purged = repo.purge_before(cutoff, walking()).await.unwrap();
    assert_eq!(purged, 4500 + 10 + 4500 + 1);
    assert_eq!(
        repo.answered(&keys[0].1).await.unwrap(),
        None,
        "the earlier key"
    );
    assert!(
        repo.answered(&keys[1].1).await.unwrap().is_some(),
        "the later key"
    );
    let left = repo.processed(&a, &ids).await.unwrap();
    assert_eq!(
        left,
        new.iter().copied().collect(),
        "only the later ids stay"
    );
    assert!(repo.processed(&b, &ids).await.unwrap().is_empty());
    let judged = repo.verdicts(&ids).await.unwrap();
    assert_eq!(
        judged
            .into_iter()
            .map(|(id, _, _)| id)
            .collect::<std::collections::HashSet<_>>(),
        new.iter().copied().collect()
    );
    // A purged id is no longer known: applying it again is a new event (hence the retention).
    repo.commit_progress(&a, &progress(&old[..1]))
        .await
        .unwrap();

    // Two full steps of one consumer, the first all kept and the second mostly past the cutoff
    // (the walk goes on past a step it keeps, and ends on the empty read after the last full one).
    let c = format!("purge_c_{}", suffix());
    let mut walked: Vec<Uuid> = (0..2 * PURGE_KEYS).map(|_| Uuid::now_v7()).collect();
    walked.sort_unstable(); // key order (bytes sort as their hex text does)
    let (kept, gone) = walked.split_at(PURGE_KEYS + PURGE_KEYS / 4);
    repo.commit_progress(&c, &progress(gone)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later_cutoff = liveops_core::now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    repo.commit_progress(&c, &progress(kept)).await.unwrap();
    // Also past it now: `a`'s later rows and its id applied again, the later verdicts and key.
    let purged = repo.purge_before(later_cutoff, walking()).await.unwrap();
    assert_eq!(purged, gone.len() as u64 + 500 + 1 + 500 + 1);
    assert_eq!(
        repo.processed(&c, &walked).await.unwrap(),
        kept.iter().copied().collect(),
        "the second step's earlier rows go, the first step's stay"
    );

    // Flags go by a retention of their own (`FLAG_RETENTION`), along their time: more than a
    // step before the cutoff, a step ending among the flags of one instant, one at the cutoff.
    let flag_cutoff = later_cutoff - 30 * 86_400_000;
    let flag = |at_ms: i64| liveops_core::stores::Flag {
        event_id: Uuid::now_v7(),
        player_id: "purge_flags".into(),
        event_type: liveops_core::EventType::BossKill,
        value: 1_000_000.0,
        z_score: 9.5,
        at_ms,
    };
    let flags: Vec<_> = (0..PURGE_KEYS as i64 + 500)
        .map(|i| flag(flag_cutoff - 5_000 + i))
        .chain((0..700).map(|_| flag(flag_cutoff - 1)))
        .chain([flag(flag_cutoff)])
        .collect();
    let commit = FairnessCommit {
        flags,
        ..Default::default()
    };
    repo.commit_fairness(&commit).await.unwrap();
    let all = (PURGE_KEYS + 500 + 700 + 1) as u32;
    assert_eq!(repo.purge_before(later_cutoff, walking()).await.unwrap(), 0);
    assert_eq!(
        repo.purge_flags(flag_cutoff - 5_000, walking())
            .await
            .unwrap(),
        0
    );
    assert_eq!(repo.flags(None, all).await.unwrap().len(), all as usize);
    let purged = repo.purge_flags(flag_cutoff, walking()).await.unwrap();
    assert_eq!(purged, u64::from(all) - 1);
    let left = repo.flags(None, all).await.unwrap();
    assert_eq!(
        left.iter().map(|f| f.at_ms).collect::<Vec<_>>(),
        [flag_cutoff]
    );
}

/// An hour in ms, for the purges' rounds.
const HOUR: i64 = 3_600_000;
/// A day in ms, for the spans purges keep.
const DAY: i64 = 24 * HOUR;

/// A purge's round now that walks whatever walked before.
pub fn walking() -> PurgeRound {
    PurgeRound::walking(liveops_core::now_ms())
}

/// On a database of its own, `a` and `b` two processes on it: a table walked by a purge is not
/// walked again, by either, in a round less than the period later (its rows past the cutoff stay,
/// none counted), while the purges of other tables, of another board window and of a process
/// keeping its rows for another span walk theirs; a round a period after the walk (its tick a
/// little early) walks it again. Then [`a_late_older_walk_leaves_the_newer_one`] and
/// [`a_walk_longer_than_its_period_is_not_followed_at_once`].
pub async fn purges_walk_once_a_period(a: &dyn Repository, b: &dyn Repository) {
    let round = |at_ms: i64| PurgeRound {
        at_ms,
        every: Duration::from_secs(3600),
    };
    let rows = PurgeRows::new(a, b, "purge_period");
    // Everything written is past it: a minute after the round (rows kept for -60 s).
    let cutoff = |at_ms: i64| at_ms + 60_000;
    let start = liveops_core::now_ms();

    let ids = rows.written().await;
    assert_eq!(
        a.purge_before(cutoff(start), round(start)).await.unwrap(),
        3
    );
    assert_eq!(rows.left(ids).await, 0);
    let ids = rows.written().await;
    for (repo, later) in [(b, HOUR / 2), (a, HOUR / 2), (b, HOUR - HOUR / 10)] {
        let at = start + later;
        assert_eq!(
            repo.purge_before(cutoff(at), round(at)).await.unwrap(),
            0,
            "{later} ms on"
        );
    }
    assert_eq!(
        rows.left(ids.clone()).await,
        3,
        "not walked: every row stays"
    );
    // The flags are walked apart from the per-event rows.
    a.commit_fairness(&rows.flagged(1)).await.unwrap();
    assert_eq!(
        b.purge_flags(cutoff(start + HOUR / 2), round(start + HOUR / 2))
            .await
            .unwrap(),
        1
    );
    // A period after the walk, its round's tick 10 s early on its clock: walked.
    let again = start + HOUR - 10_000;
    assert_eq!(
        b.purge_before(cutoff(again), round(again)).await.unwrap(),
        3
    );
    assert_eq!(rows.left(ids).await, 0);
    let ids = rows.written().await;
    assert_eq!(
        a.purge_before(cutoff(again + 1), round(again + 1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(rows.left(ids.clone()).await, 3);
    // A process keeping its rows for another span (its EVENT_RETENTION) is not spared by that
    // walk: it left the rows such a process deletes.
    let other = cutoff(again + 1) + 60_000;
    assert_eq!(a.purge_before(other, round(again + 1)).await.unwrap(), 3);
    assert_eq!(rows.left(ids).await, 0);

    // Each window's scores are walked apart: the weekly boards in the round the daily ones were.
    let s = suffix();
    let boards = [Window::Daily, Window::Weekly].map(|window| Board {
        window,
        period: format!("!{s}-a"),
    });
    let deltas: Vec<ScoreDelta> = boards
        .iter()
        .map(|board| ScoreDelta {
            board: board.clone(),
            player_id: "player_1".into(),
            delta: 5,
        })
        .collect();
    let ids: Vec<Uuid> = deltas.iter().map(|_| Uuid::now_v7()).collect();
    a.commit_scores(&rows.consumer, &ids, &deltas)
        .await
        .unwrap();
    // Boards kept `days` days before the round at `at`.
    let kept = |at: i64, days: i64| at - days * DAY;
    let before = format!("!{s}-c");
    for window in [Window::Daily, Window::Weekly] {
        let purged = b
            .purge_scores(window, &before, kept(start, 400), round(start))
            .await
            .unwrap();
        assert_eq!(purged, 1, "{window}");
    }
    // A pod keeping the boards as long is spared the walk; one keeping them for another span
    // (`LB_SCORES_RETENTION_DAYS` changing) is not: it deletes what that walk left.
    let left = Board {
        window: Window::Daily,
        period: format!("!{s}-c"),
    };
    a.commit_scores(
        &rows.consumer,
        &[Uuid::now_v7()],
        &[ScoreDelta {
            board: left.clone(),
            player_id: "player_1".into(),
            delta: 5,
        }],
    )
    .await
    .unwrap();
    let (later, before) = (start + HOUR / 2, format!("!{s}-d"));
    let daily = |days: i64| a.purge_scores(Window::Daily, &before, kept(later, days), round(later));
    assert_eq!(daily(400).await.unwrap(), 0, "kept as long: spared");
    assert_eq!(a.board_size(&left).await.unwrap(), 1);
    assert_eq!(daily(300).await.unwrap(), 1, "kept for another span");
    assert_eq!(a.board_size(&left).await.unwrap(), 0);

    a_late_older_walk_leaves_the_newer_one(&rows).await;
    a_walk_longer_than_its_period_is_not_followed_at_once(&rows).await;
}

/// An older round's walk written after a newer one's (a slower walk, or as here a process whose
/// clock is behind) leaves the newer one recorded: a round less than a period after the newer
/// one is spared, though it comes more than a period after the older one.
pub async fn a_late_older_walk_leaves_the_newer_one(rows: &PurgeRows<'_>) {
    let flags = |repo, at| purge_flags_kept(repo, 1, at);
    let newer = liveops_core::now_ms() + 2 * HOUR;
    rows.a.commit_fairness(&rows.flagged(2)).await.unwrap();
    assert_eq!(flags(rows.a, newer).await, 1, "the newer walk");
    rows.a.commit_fairness(&rows.flagged(3)).await.unwrap();
    // Its record is ahead of this round's clock, so this round walks, and ends after it.
    assert_eq!(flags(rows.b, newer - HOUR).await, 1, "the older walk");
    rows.a.commit_fairness(&rows.flagged(4)).await.unwrap();
    assert_eq!(
        flags(rows.a, newer + HOUR / 2).await,
        0,
        "spared by the newer walk"
    );
    assert_eq!(flags(rows.a, newer + HOUR).await, 1, "a period on");
}

/// A walk that took longer than its period (its round two hours before its end) spares the
/// rounds less than a period after its end, not only after its round: the next round of its
/// process, come at once, does not walk again, nor another process's half a period on; a round
/// a period after the end walks.
pub async fn a_walk_longer_than_its_period_is_not_followed_at_once(rows: &PurgeRows<'_>) {
    let flags = |repo, at| purge_flags_kept(repo, 2, at);
    rows.a.commit_fairness(&rows.flagged(5)).await.unwrap();
    let round = liveops_core::now_ms() - 2 * HOUR;
    assert_eq!(flags(rows.a, round).await, 1, "the long walk");
    let ended = liveops_core::now_ms();
    rows.a.commit_fairness(&rows.flagged(6)).await.unwrap();
    for (repo, at) in [(rows.a, ended), (rows.b, ended + HOUR / 2)] {
        assert_eq!(flags(repo, at).await, 0, "{} ms after its end", at - ended);
    }
    // A period after its end, the tick 10 s early: walked.
    let again = ended + HOUR - 10_000;
    assert_eq!(flags(rows.b, again).await, 1, "a period after its end");
}

/// The flags `repo` purges in the hourly round at `at`, keeping them `days` days (each check a
/// span of its own, so a record of its own).
async fn purge_flags_kept(repo: &dyn Repository, days: i64, at: i64) -> u64 {
    let round = PurgeRound {
        at_ms: at,
        every: Duration::from_secs(3600),
    };
    repo.purge_flags(at - days * DAY, round).await.unwrap()
}

/// Rows for the purge checks: processed ids and flags of one consumer, written through `a`
/// (one process) and read through `b` (another).
pub struct PurgeRows<'r> {
    a: &'r dyn Repository,
    b: &'r dyn Repository,
    /// The consumer (and flagged player) the rows are written under.
    pub consumer: String,
}

impl<'r> PurgeRows<'r> {
    /// Rows under a consumer named `prefix` and a fresh suffix.
    pub fn new(a: &'r dyn Repository, b: &'r dyn Repository, prefix: &str) -> Self {
        Self {
            a,
            b,
            consumer: format!("{prefix}_{}", suffix()),
        }
    }

    /// Three processed ids, written now.
    pub async fn written(&self) -> Vec<Uuid> {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let commit = ProgressCommit {
            event_ids: ids.clone(),
            ..Default::default()
        };
        self.a
            .commit_progress(&self.consumer, &commit)
            .await
            .unwrap();
        ids
    }

    /// How many of `ids` are still recorded.
    pub async fn left(&self, ids: Vec<Uuid>) -> usize {
        self.b.processed(&self.consumer, &ids).await.unwrap().len()
    }

    /// A commit raising one flag at `at_ms`.
    pub fn flagged(&self, at_ms: i64) -> liveops_core::stores::FairnessCommit {
        liveops_core::stores::FairnessCommit {
            flags: vec![liveops_core::stores::Flag {
                event_id: Uuid::now_v7(),
                player_id: self.consumer.clone(),
                event_type: liveops_core::EventType::BossKill,
                value: 1.0,
                z_score: 9.5,
                at_ms,
            }],
            ..Default::default()
        }
    }
}

/// The player whose inbox [`inbox_pages`] reads.
pub const INBOX_READER: &str = "inbox_reader";

/// 20 000 messages to 200 other players, 500 to [`INBOX_READER`] and 500 to every player, sent
/// as operators send them (a batch at a time, so in order) with the two kinds spread among the
/// others: the rows an inbox page's plan is chosen for.
pub async fn fill_inboxes(repo: &dyn InboxStore) {
    let messages = (0..21_000).map(|i| InboxMessage {
        player_id: match i % 42 {
            0 => Some(INBOX_READER.to_owned()),
            1 => None,
            _ => Some(format!("player_{}", i % 200)),
        },
        ..plain_message(format!("msg_plan_{i:05}"), 1_000 + i, 4_000_000_000_000)
    });
    send_all(repo, messages).await;
}

/// A message to everyone, without attachments, created and expiring at the times given.
fn plain_message(message_id: String, created_at_ms: i64, expires_at_ms: i64) -> InboxMessage {
    InboxMessage {
        message_id,
        player_id: None,
        campaign_id: None,
        title: "Plan".into(),
        body: "Rows for the planner".into(),
        attachments: vec![],
        created_at_ms,
        expires_at_ms,
    }
}

/// Sends `messages`, a thousand at a time.
async fn send_all(repo: &dyn InboxStore, messages: impl Iterator<Item = InboxMessage>) {
    let audit = liveops_testkit::conformance::live::audit("inbox.send", "players");
    let messages: Vec<InboxMessage> = messages.collect();
    for batch in messages.chunks(1_000) {
        let sent = repo.send_messages(None, batch, &audit).await.unwrap();
        assert!(matches!(sent, KeyedOutcome::Written), "{sent:?}");
    }
}

/// Each kind of inbox page [`INBOX_READER`] asks for (the first, one below a position, one below
/// a message named by an old cursor), its statement as the repository sends it with its
/// parameters written in: the page's size 100, live at 2 000.
pub fn inbox_pages() -> Vec<String> {
    let player = format!("'{INBOX_READER}'");
    let kinds = [
        (None, None),
        (Some(InboxBelow::Position(15_000)), Some("15000")),
        (
            Some(InboxBelow::Message("msg_plan_15000")),
            Some("'msg_plan_15000'"),
        ),
    ];
    kinds
        .into_iter()
        .map(|(below, value)| {
            // The parameters in order (see `inbox_page_statement`): the player's side, everyone's,
            // then the claims' player and the page's size.
            let mut values = Vec::new();
            for whose in [Some(player.as_str()), None] {
                values.extend(
                    whose
                        .into_iter()
                        .chain(["2000"])
                        .chain(value)
                        .chain(["100"]),
                );
            }
            values.extend([player.as_str(), "100"]);
            let mut values = values.into_iter();
            let sql = liveops_sql::inbox_page_statement(below);
            let mut written = String::new();
            for (i, part) in sql.split('?').enumerate() {
                if i > 0 {
                    written.push_str(values.next().unwrap());
                }
                written.push_str(part);
            }
            assert!(values.next().is_none(), "a value left over: {sql}");
            written
        })
        .collect()
}

/// After [`fill_inboxes`]: 5 000 messages to every player sent later, all expired by 2 000 (as
/// retention keeps them for 90 days), above the 500 live ones.
pub async fn fill_expired_broadcasts(repo: &dyn InboxStore) {
    let messages = (0..5_000).map(|i| plain_message(format!("msg_gone_{i:05}"), 30_000 + i, 1_500));
    send_all(repo, messages).await;
}

/// Keys per step of the repository's purge (`PURGE_STEP`), walked in the test above.
const PURGE_KEYS: usize = 2000;

/// Records a migration one past the newest applied, as a newer release would have applied it
/// (the newest row again under a larger version).
pub const A_NEWER_MIGRATION: &str = "INSERT INTO _sqlx_migrations \
     (version, description, installed_on, success, checksum, execution_time) \
     SELECT version + 1000, 'a newer release', installed_on, success, checksum, execution_time \
     FROM _sqlx_migrations ORDER BY version DESC LIMIT 1";

/// sqlx's migrator of the migrations in `dir` up to `version`: how the release before applied
/// them, each whole file in one request.
pub async fn migrator_up_to(dir: &str, version: i64) -> sqlx::migrate::Migrator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut before = sqlx::migrate::Migrator::new(path).await.unwrap();
    let upto: Vec<_> = before
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    before.migrations = upto.into();
    before
}

/// A migration that carries data of the release before over.
pub enum Upgrade {
    /// 0007 carries 0006's keyed sends over.
    KeyedSends,
    /// 0010 numbers the messages already written in the order they were listed in.
    InboxOrder,
}

/// A database as the release before left it: the migrations in `dir` applied on `pool` up to a
/// version, as sqlx applied them, and rows written as that release wrote them.
pub struct ReleaseBefore<'a, DB: sqlx::Database> {
    /// A pool on the database.
    pub pool: &'a sqlx::Pool<DB>,
    /// The backend's migrations' folder, under the crate.
    pub dir: &'a str,
}

impl<DB> ReleaseBefore<'_, DB>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    /// Runs the migrations up to `version` (which must be one of them).
    async fn migrate_up_to(&self, version: i64) {
        let before = migrator_up_to(self.dir, version).await;
        assert!(
            before.migrations.iter().any(|m| m.version == version),
            "{version} in {}",
            self.dir
        );
        before.run(self.pool).await.unwrap();
    }

    /// `upgrade`'s check: [`Self::keyed_sends_carry_over`] or [`Self::inbox_order_carries_over`].
    pub async fn carries_over<F>(
        &self,
        upgrade: Upgrade,
        migrate: F,
        repo: impl std::ops::Deref<Target = impl RequestKeys + InboxStore + ?Sized>,
    ) where
        F: std::future::Future<Output = Result<(), PortError>>,
    {
        match upgrade {
            Upgrade::KeyedSends => self.keyed_sends_carry_over(migrate, repo).await,
            Upgrade::InboxOrder => self.inbox_order_carries_over(migrate, repo).await,
        }
    }

    /// Runs `sql`, as the release before wrote its rows.
    async fn write(&self, sql: &str) {
        sqlx::raw_sql(sql).execute(self.pool).await.unwrap();
    }

    /// Migration 0010 on a database holding messages: they keep the order they were listed in
    /// (creation time, then id: by bytes), and a message sent after the migration, created before
    /// them all, is listed above them.
    async fn inbox_order_carries_over<F>(
        &self,
        migrate: F,
        repo: impl std::ops::Deref<Target = impl InboxStore + ?Sized>,
    ) where
        F: std::future::Future<Output = Result<(), PortError>>,
    {
        self.migrate_up_to(9).await;
        // Written by the release before: ties on the time told apart by bytes ('B' < 'a').
        let far = liveops_core::now_ms() + 86_400_000;
        for (id, player, at) in [
            ("msg_a", Some("p_1"), 20),
            ("msg_B", Some("p_1"), 20),
            ("msg_c", None, 30),
            ("msg_d", Some("p_2"), 40),
            ("msg_e", Some("p_1"), 10),
        ] {
            let player = player.map_or("NULL".to_owned(), |p| format!("'{p}'"));
            self.write(&format!(
                "INSERT INTO inbox_messages (message_id, player_id, campaign_id, title, body, \
                 attachments, created_at, expires_at) \
                 VALUES ('{id}', {player}, NULL, 'Old', 'Old', '[]', {at}, {far})"
            ))
            .await;
        }
        migrate.await.unwrap();
        let listed = |page: Vec<ListedMessage>| -> Vec<String> {
            page.into_iter().map(|l| l.message.message_id).collect()
        };
        let top = InboxPage {
            limit: 10,
            live_at_ms: None,
            below: None,
        };
        let inbox = listed(repo.inbox("p_1", top).await.unwrap());
        assert_eq!(inbox, ["msg_c", "msg_a", "msg_B", "msg_e"]);
        let later = InboxMessage {
            message_id: "msg_later".into(),
            player_id: Some("p_1".into()),
            campaign_id: None,
            title: "New".into(),
            body: "New".into(),
            attachments: vec![],
            created_at_ms: 1,
            expires_at_ms: far,
        };
        let audit = liveops_testkit::conformance::live::audit("inbox.send", "p_1");
        repo.send_messages(None, std::slice::from_ref(&later), &audit)
            .await
            .unwrap();
        let inbox = listed(repo.inbox("p_1", top).await.unwrap());
        assert_eq!(inbox, ["msg_later", "msg_c", "msg_a", "msg_B", "msg_e"]);
        // Page by page: each below the last of the one before; a cursor of the release before
        // (which named the message) continues below that message.
        let first = repo
            .inbox("p_1", InboxPage { limit: 2, ..top })
            .await
            .unwrap();
        let below = first.last().map(|l| InboxBelow::Position(l.position));
        let second = repo
            .inbox(
                "p_1",
                InboxPage {
                    limit: 2,
                    below,
                    ..top
                },
            )
            .await
            .unwrap();
        assert_eq!(listed(first), ["msg_later", "msg_c"]);
        assert_eq!(listed(second), ["msg_a", "msg_B"]);
        let below = Some(InboxBelow::Message("msg_a"));
        let old_cursor = repo.inbox("p_1", InboxPage { below, ..top }).await.unwrap();
        assert_eq!(listed(old_cursor), ["msg_B", "msg_e"]);
        let below = Some(InboxBelow::Message("msg_gone"));
        let unknown = repo.inbox("p_1", InboxPage { below, ..top }).await.unwrap();
        assert_eq!(
            listed(unknown).len(),
            5,
            "a message not found: from the top"
        );

        // A process of the release before, still writing during a rolling upgrade, names no
        // position: its message is listed once placed, above all, as if written then.
        self.write(&format!(
            "INSERT INTO inbox_messages (message_id, player_id, campaign_id, title, body, \
             attachments, created_at, expires_at) \
             VALUES ('msg_old_release', 'p_1', NULL, 'Old', 'Old', '[]', 50, {far})"
        ))
        .await;
        let newest = InboxMessage {
            message_id: "msg_newest".into(),
            ..later
        };
        repo.send_messages(None, &[newest], &audit).await.unwrap();
        let inbox = listed(repo.inbox("p_1", top).await.unwrap());
        assert_eq!(
            inbox[..2],
            ["msg_newest", "msg_later"],
            "not listed unplaced"
        );
        // 0011's numbering run again by hand (its indexes aside) numbers nothing.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(self.dir);
        let again =
            std::fs::read_to_string(path.join("0011_inbox_positions_numbered.sql")).unwrap();
        let numbering = again
            .split("CREATE INDEX")
            .next()
            .unwrap_or_default()
            .to_owned();
        self.write(&numbering).await;
        assert_eq!(repo.place_messages(1000).await.unwrap(), 1);
        assert_eq!(repo.place_messages(1000).await.unwrap(), 0, "placed once");
        let inbox = listed(repo.inbox("p_1", top).await.unwrap());
        assert_eq!(
            inbox,
            [
                "msg_old_release",
                "msg_newest",
                "msg_later",
                "msg_c",
                "msg_a",
                "msg_B",
                "msg_e"
            ]
        );
    }

    /// Migration 0007 carries the keyed sends of 0006 (`inbox_sends`) over as the answers they gave:
    /// applies the migrations in `dir` up to 0006 on `pool`, keeps a send, then `migrate` (the
    /// repository's own migrations, 0007 among them) and looks the send's key up in `repo`: a send
    /// under it (whatever its digest, taken another way before) gets the answer, another route's
    /// request is refused; a send that a process of the release before writes after the migration
    /// (a rolling upgrade) is found as well, also by the send's own write, and a send of this release
    /// is kept in the old table for such a process's retry to find.
    async fn keyed_sends_carry_over<F>(
        &self,
        migrate: F,
        repo: impl std::ops::Deref<Target = impl RequestKeys + InboxStore + ?Sized>,
    ) where
        F: std::future::Future<Output = Result<(), PortError>>,
    {
        self.migrate_up_to(6).await;
        let keep = |key: &str, ids: &str| {
            format!(
                "INSERT INTO inbox_sends (operator_id, idem_key, request_hash, message_ids, sent_at) \
                 VALUES ('op_1', '{key}', 'old-digest', '{ids}', 5)"
            )
        };
        self.write(&keep("retry-1", r#"["msg_a","msg_b"]"#)).await;
        migrate.await.unwrap();
        let key = |key: &str, route: &str| RequestKey {
            operator_id: "op_1".into(),
            key: key.into(),
            route: route.into(),
            request_hash: "new-digest".into(),
        };
        let send = key("retry-1", "POST /inbox/messages");
        assert_eq!(
            repo.answered(&send).await.unwrap(),
            Some(KeyedOutcome::Replayed(
                r#"{"messageIds":["msg_a","msg_b"]}"#.into()
            ))
        );
        let elsewhere = key("retry-1", "POST /campaigns");
        assert_eq!(
            repo.answered(&elsewhere).await.unwrap(),
            Some(KeyedOutcome::KeyReused)
        );
        // The release before, still serving during the upgrade, keeps a send in its table.
        self.write(&keep("retry-2", r#"["msg_c"]"#)).await;
        let late = key("retry-2", "POST /inbox/messages");
        assert_eq!(
            repo.answered(&late).await.unwrap(),
            Some(KeyedOutcome::Replayed(r#"{"messageIds":["msg_c"]}"#.into()))
        );
        assert_eq!(
            repo.answered(&key("retry-3", "POST /inbox/messages"))
                .await
                .unwrap(),
            None
        );
        // The old process's send committed after this retry's look-up: its write finds it.
        let message = InboxMessage {
            message_id: "msg_new".into(),
            player_id: Some("p_1".into()),
            campaign_id: None,
            title: "Gift".into(),
            body: String::new(),
            attachments: vec![],
            created_at_ms: 5,
            expires_at_ms: 4_000_000_000_000,
        };
        let keyed = |key: RequestKey| Keyed {
            key,
            answer: r#"{"messageIds":["msg_new"]}"#.into(),
        };
        let entry = liveops_testkit::conformance::live::audit("inbox.send", "p_1");
        let send = |k: RequestKey| {
            let (message, entry) = (message.clone(), entry.clone());
            let keyed = keyed(k);
            let repo = &repo;
            async move {
                repo.send_messages(Some(&keyed), &[message], &entry)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            send(late).await,
            KeyedOutcome::Replayed(r#"{"messageIds":["msg_c"]}"#.into())
        );
        assert_eq!(
            repo.message("p_1", "msg_new").await.unwrap(),
            None,
            "nothing sent twice"
        );
        // A send of this release is kept in the old table too: an old process's retry under its key
        // meets it there (here its insert fails on the key) instead of sending again.
        assert_eq!(
            send(key("retry-4", "POST /inbox/messages")).await,
            KeyedOutcome::Written
        );
        assert!(repo.message("p_1", "msg_new").await.unwrap().is_some());
        let retried = sqlx::raw_sql(&keep("retry-4", r#"["msg_d"]"#))
            .execute(self.pool)
            .await;
        assert!(retried.is_err(), "the key is taken in inbox_sends too");
    }
}

/// The time the campaigns of [`fill_campaigns`] are due at.
const DUE_AT: i64 = 5_000_000;

/// Campaigns as years of them leave the table: 3 000 finished (settled, ended, cancelled), 20
/// scheduled and 20 live, half of each due at [`DUE_AT`]: statements that insert them.
pub fn fill_campaigns() -> Vec<String> {
    let row = |i: i64, state: &str, starts: i64, ends: i64| {
        format!(
            "('cmp_plan_{i:05}', 'Plan {i}', 'A campaign among many', {starts}, {ends}, 1, \
             'once', '{{}}', '{state}', NULL, NULL, 'plans@example.com', {i}, {i})"
        )
    };
    let mut rows = Vec::new();
    for i in 0..3_000 {
        let state = ["settled", "ended", "cancelled"][usize::try_from(i % 3).unwrap()];
        rows.push(row(i, state, i * 1_000, i * 1_000 + 500));
    }
    for i in 3_000..3_020 {
        let starts = DUE_AT - 10 + (i % 2) * 20;
        rows.push(row(i, "scheduled", starts, starts + 1_000));
    }
    for i in 3_020..3_040 {
        let ends = DUE_AT - 10 + (i % 2) * 20;
        rows.push(row(i, "live", ends - 1_000, ends));
    }
    rows.chunks(500)
        .map(|chunk| {
            format!(
                "INSERT INTO campaigns (id, title, description, starts_at, ends_at, min_level, \
                 entry_limit, reward, state, seed, commitment, created_by, created_at, \
                 updated_at) VALUES {}",
                chunk.join(", ")
            )
        })
        .collect()
}

/// The scheduler's read ([`liveops_sql::DUE_CAMPAIGNS`]) at [`DUE_AT`], 100 at most.
pub fn due_statement() -> String {
    let values = [DUE_AT, 100, DUE_AT, 100, 100];
    let mut written = String::new();
    for (i, part) in liveops_sql::DUE_CAMPAIGNS.split('?').enumerate() {
        if i > 0 {
            written.push_str(&values[i - 1].to_string());
        }
        written.push_str(part);
    }
    written
}

/// The plan of [`due_statement`] on `pool` (a migrated database), after [`fill_campaigns`] and
/// `analyze` of the campaigns; `explain` asks for it. Checks the statement finds the 20 due.
pub async fn due_campaigns_plan<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    explain: &str,
    analyze: &str,
) -> String
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    for insert in fill_campaigns() {
        sqlx::raw_sql(&insert).execute(pool).await.unwrap();
    }
    let analyze = format!("{analyze} campaigns");
    sqlx::raw_sql(&analyze).execute(pool).await.unwrap();
    let sql = due_statement();
    let (due,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM ({sql}) AS d"))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(due, 20);
    let rows: Vec<(String,)> = sqlx::query_as(&format!("{explain} {sql}"))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}
