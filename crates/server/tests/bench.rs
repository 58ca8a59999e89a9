//! The bench tools run and report (CI runs this; the numbers live in `docs/BENCHMARKS.md`).
//! Tiny sizes, a second or two per phase: these check that every mode works end to end and that
//! the JSON report says what happened, not how fast it was.

mod common;

use std::process::Command;

use common::campaign::{ADMIN_EMAIL, ADMIN_PASSWORD};
use common::{spawn_app, succeed, TestApp, SECRET};
use liveops::bench::{measure, BenchOpts, Mode, Phase, Report};
use liveops::config::Given;

fn config() -> Given {
    Given::from_args(["--hmac-secret", SECRET, "--log-level", "warn"]).expect("args")
}

/// The admin flags of a product that has (or, spawned, creates) the bench's operator.
const ADMIN: [&str; 4] = [
    "--admin-email",
    ADMIN_EMAIL,
    "--admin-password",
    ADMIN_PASSWORD,
];

/// [`config`] with the operator the claims and entries modes log in as.
fn config_with_admin() -> Given {
    let mut args = vec!["--hmac-secret", SECRET, "--log-level", "warn"];
    args.extend(ADMIN);
    Given::from_args(args).expect("args")
}

fn tiny() -> BenchOpts {
    BenchOpts {
        players: 300,
        connections: 4,
        duration: 1.5,
        warmup: 0.3,
        probes: 2,
        probe_every_ms: 20,
        drain_timeout: 30.0,
        ..BenchOpts::default()
    }
}

/// The report survives a JSON round trip (what `--json` prints is what the docs are built from).
fn round_trip(report: &Report) -> Report {
    let json = serde_json::to_string(report).expect("json");
    serde_json::from_str(&json).expect("the report parses back")
}

/// Measures `opts` with `config`: the report, after a [`round_trip`].
async fn run(config: &Given, opts: &BenchOpts) -> Report {
    round_trip(&measure(config, opts).await.expect("bench runs"))
}

/// Asserts that measuring `opts` with `config` is refused before anything runs, naming `what`.
async fn assert_refused(config: &Given, opts: &BenchOpts, what: &str) {
    let refused = measure(config, opts).await.expect_err(what);
    assert!(refused.to_string().contains(what), "{refused}");
}

/// Runs `opts`, a mode that logs in as the operator, against the ceiling and the spawned
/// product: each runs one phase, `name`, answered `ok_status` and refusing nothing, the
/// product's with a ratio to the ceiling; without an operator the run is refused before
/// anything runs. Answers the report.
async fn assert_operator_mode_spawned(opts: BenchOpts, name: &str, ok_status: &str) -> Report {
    let opts = BenchOpts {
        spawn: true,
        ceiling: true,
        ..opts
    };
    let report = run(&config_with_admin(), &opts).await;
    assert_eq!((report.ceiling.len(), report.system.len()), (1, 1));
    for p in report.ceiling.iter().chain(&report.system) {
        assert_eq!(p.name, name);
        assert_accepting(p, ok_status);
        // Every request was signed for its own path: none refused.
        assert_eq!(p.rejected, 0, "{p:?}");
    }
    assert!(report.system[0].ratio_to_ceiling.is_some());
    // Without an operator there is nothing to log in as: refused before anything runs.
    assert_refused(&config(), &opts, "ADMIN_EMAIL").await;
    report
}

/// Runs `mode`, logged in as the operator, for 50 players against `app`'s URL: asserts it is
/// refused until the flag `consent` (what it does to a real product's players) is given by
/// `give`, then answers the report.
async fn run_on_url(
    app: &TestApp,
    mode: Mode,
    consent: &str,
    give: impl FnOnce(&mut BenchOpts),
) -> Report {
    let mut opts = BenchOpts {
        mode,
        url: Some(app.base.clone()),
        players: 50,
        ..tiny()
    };
    assert_refused(&config_with_admin(), &opts, consent).await;
    give(&mut opts);
    run(&config_with_admin(), &opts).await
}

fn assert_accepting(p: &Phase, ok_status: &str) {
    assert!(p.requests > 0, "{p:?}");
    assert!(p.accepted > 0, "{p:?}");
    assert!(p.status.get(ok_status).copied().unwrap_or(0) > 0, "{p:?}");
    assert_eq!(p.transport_errors, 0, "{p:?}");
    assert!(p.accepted_per_s > 0.0, "{p:?}");
    assert!(
        p.latency_ms.p50 > 0.0 && p.latency_ms.p99 >= p.latency_ms.p50,
        "{p:?}"
    );
    assert!(p.latency_ms.max >= p.latency_ms.p99, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_events_against_the_ceiling_and_the_spawned_product() {
    let opts = BenchOpts {
        spawn: true,
        ceiling: true,
        ..tiny()
    };
    let report = run(&config(), &opts).await;
    assert_eq!(report.mode, "ingest");
    assert_eq!(report.target, "spawn");
    assert_eq!(report.ceiling.len(), 1);
    assert_accepting(&report.ceiling[0], "202");
    assert_eq!(report.system.len(), 1);
    let system = &report.system[0];
    assert_accepting(system, "202");
    // Every event the generator sent was valid and unique: nothing refused.
    assert_eq!(system.rejected, 0, "{system:?}");
    let ratio = system
        .ratio_to_ceiling
        .as_ref()
        .expect("ratio to the ceiling");
    assert!(ratio.throughput > 0.0, "{ratio:?}");
    let pipeline = report.pipeline.as_ref().expect("pipeline figures");
    assert!(pipeline.visibility.samples > 0, "{pipeline:?}");
    assert_eq!(pipeline.visibility.timeouts, 0, "{pipeline:?}");
    assert!(pipeline.visibility.both_ms.p50 > 0.0, "{pipeline:?}");
    assert!(
        pipeline.drain_s.is_some(),
        "the backlog drained: {pipeline:?}"
    );
    assert!(
        pipeline.sustained_events_per_s.unwrap_or(0.0) > 0.0,
        "{pipeline:?}"
    );
    assert!(
        report.machine.rss_mib.unwrap_or(0.0) > 0.0,
        "{:?}",
        report.machine
    );
    assert!(report.table().contains("ceiling"), "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_batches_at_a_fixed_rate_and_prints_json() {
    let out = succeed(Command::new(env!("CARGO_BIN_EXE_liveops")).args([
        "bench",
        "--spawn",
        "--ceiling",
        "--json",
        "--batch",
        "50",
        "--rate",
        "2000",
        "--players",
        "300",
        "--connections",
        "4",
        "--duration",
        "1.5",
        "--warmup",
        "0.3",
        "--probes",
        "1",
        "--hmac-secret",
        SECRET,
    ]));
    let report: Report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    for p in report.ceiling.iter().chain(&report.system) {
        assert_accepting(p, "200");
        assert_eq!(p.events_sent, p.requests * 50, "{p:?}");
        assert_eq!(p.target_rate, Some(2000.0), "{p:?}");
        // A fixed rate, not flat out: about 2000 events/s (40 requests/s) over 1.5 s.
        assert!(p.requests <= 80, "{p:?}");
    }
    assert_eq!(report.system[0].rejected, 0, "{:?}", report.system[0]);
    assert!(report.pipeline.expect("pipeline").visibility.samples > 0);
}

/// Also where the configuration names the embedded repository and bus through the files a
/// running server reads (`DB_URL_FILE`, `BUS_CONN_FILE`): the spawned product keeps its own in
/// a temporary folder, and nothing is written to those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_preloaded_board_of_the_spawned_product() {
    let opts = BenchOpts {
        mode: Mode::Read,
        spawn: true,
        ceiling: true,
        players: 5_000,
        ..tiny()
    };
    let live = tempfile::tempdir().expect("tempdir");
    let (db, bus) = (live.path().join("liveops.db"), live.path().join("bus.db"));
    let (db_file, bus_file) = (live.path().join("db-url"), live.path().join("bus-conn"));
    std::fs::write(&db_file, format!("sqlite://{}", db.display())).expect("db url");
    std::fs::write(&bus_file, bus.display().to_string()).expect("bus conn");
    let mut args = vec!["--hmac-secret", SECRET, "--log-level", "warn"];
    let files = [db_file.to_str(), bus_file.to_str()].map(|f| f.expect("utf-8"));
    args.extend(["--db-url-file", files[0], "--bus-conn-file", files[1]]);
    let report = run(&Given::from_args(args).expect("args"), &opts).await;
    assert!(
        !db.exists() && !bus.exists(),
        "the running server's files untouched"
    );
    assert_eq!(report.mode, "read");
    let names: Vec<&str> = report.system.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["top100", "rank"]);
    assert_eq!(report.ceiling.len(), 2);
    for p in report.ceiling.iter().chain(&report.system) {
        assert_accepting(p, "200");
        assert_eq!(p.rejected, 0, "{p:?}");
    }
    assert!(report.system.iter().all(|p| p.ratio_to_ceiling.is_some()));
    let startup = report.startup.expect("startup figures");
    assert_eq!(startup.seed, "repository");
    assert_eq!(startup.seeded_players, 5_000);
    assert!(startup.ready_s.is_some_and(|r| r > 0.0), "{startup:?}");
    assert!(report.pipeline.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_against_a_url_seed_the_board_over_http() {
    let app = spawn_app(&[]).await;
    let opts = BenchOpts {
        mode: Mode::Read,
        url: Some(app.base.clone()),
        players: 1_200,
        ..tiny()
    };
    let report = run(&config(), &opts).await;
    assert_eq!(report.target, app.base);
    let startup = report.startup.clone().expect("seeding figures");
    assert_eq!(startup.seed, "http");
    assert_eq!(startup.seeded_players, 1_200);
    for p in &report.system {
        assert_accepting(p, "200");
    }
    // The seeded players really are on the board.
    let top = app.leaderboard("daily").await;
    assert!(top.entries.len() >= 1000, "{top:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_one_broadcast_against_the_ceiling_and_the_spawned_product() {
    let opts = BenchOpts {
        mode: Mode::Claims,
        ..tiny()
    };
    let report = assert_operator_mode_spawned(opts, "claim", "200").await;
    assert_eq!(report.mode, "claims");
    for p in report.ceiling.iter().chain(&report.system) {
        // Every claim named the broadcast.
        assert_eq!(p.status.keys().collect::<Vec<_>>(), ["200"], "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_against_a_url_leave_each_player_the_broadcast_claimed() {
    let app = spawn_app(&ADMIN).await;
    // A real product's players would all get the gift: not without saying so.
    let consent = |opts: &mut BenchOpts| opts.broadcast_to_all = true;
    let report = run_on_url(&app, Mode::Claims, "--broadcast-to-all", consent).await;
    let claims = &report.system[0];
    assert_accepting(claims, "200");
    assert_eq!(claims.rejected, 0, "{claims:?}");
    // The players claimed in turn: the first 50 claims (warm-up included) went to all 50.
    for p in [0, 1, 49] {
        let inbox = app.get(&format!("/players/bench_{p}/inbox")).await;
        let messages = inbox.body["messages"].as_array().expect("messages").clone();
        assert_eq!(messages.len(), 1, "bench_{p}: {}", inbox.body);
        assert_eq!(messages[0]["title"], "Bench gift");
        assert!(
            messages[0]["claimedAt"].is_string(),
            "bench_{p}: {}",
            inbox.body
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_into_one_campaign_against_the_ceiling_and_the_spawned_product() {
    let opts = BenchOpts {
        mode: Mode::Entries,
        // Each player enters once: more players than entries, so none enters again.
        players: 1_000_000,
        ..tiny()
    };
    // Every entry went into the live campaign.
    let report = assert_operator_mode_spawned(opts, "enter", "201").await;
    assert_eq!(report.mode, "entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_against_a_url_enter_each_player_into_the_campaign_opened() {
    let app = spawn_app(&ADMIN).await;
    // A real product's players would all see the campaign: not without saying so.
    let consent = |opts: &mut BenchOpts| opts.open_campaign = true;
    let report = run_on_url(&app, Mode::Entries, "--open-campaign", consent).await;
    let entries = &report.system[0];
    assert!(entries.requests > 0, "{entries:?}");
    assert_eq!(entries.transport_errors, 0, "{entries:?}");
    // Past the 50th entry (within the warm-up) the players enter again, which the campaign
    // (once each) refuses, or answers from the entry when the very same signed request comes
    // again within its second.
    let statuses: Vec<_> = entries.status.keys().collect();
    assert!(
        statuses
            .iter()
            .all(|s| ["200", "201", "409"].contains(&s.as_str())),
        "{entries:?}"
    );
    // The players entered in turn: the first 50 entries (warm-up included) were all 50's.
    for p in [0, 1, 49] {
        let listed = app.get(&format!("/players/bench_{p}/campaigns")).await;
        let campaigns = listed.body["campaigns"]
            .as_array()
            .expect("campaigns")
            .clone();
        let bench: Vec<_> = campaigns
            .iter()
            .filter(|c| c["title"] == "Bench entries")
            .collect();
        assert_eq!(bench.len(), 1, "bench_{p}: {}", listed.body);
        assert_eq!(bench[0]["entered"], true, "bench_{p}: {}", listed.body);
    }
    app.shutdown().await;
}

/// A server that never answers fails the run: every request met a transport error.
#[test]
fn the_cli_fails_when_no_request_is_answered() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let out = Command::new(env!("CARGO_BIN_EXE_liveops"))
        .args([
            "bench",
            "--url",
            &url,
            "--players",
            "10",
            "--connections",
            "1",
        ])
        .args(["--duration", "0.5", "--warmup", "0", "--probes", "0"])
        .args(["--hmac-secret", SECRET, "--log-level", "warn"])
        .output()
        .expect("runs");
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
