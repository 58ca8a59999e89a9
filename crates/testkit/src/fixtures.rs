//! Events for tests: the reference events of `../shared/sample_events/` and small builders, each
//! with `ts` set to now so the gateway's timestamp window accepts them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use liveops_core::ports::{Board, ScoreDelta, ScoreTotal};
use liveops_core::Window;
use serde_json::{json, Value};

/// Server time now, unix seconds.
pub fn now_s() -> i64 {
    liveops_core::now_ms() / 1000
}

/// A reference event (`boss_kill`, `drop_claimed`, `progression`) from `shared/sample_events`,
/// beside the repository, with `ts` set to now.
pub fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/sample_events")
        .join(format!("{name}.json"));
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the reference events live in ../shared/sample_events)",
            path.display()
        )
    });
    let mut v: Value = serde_json::from_str(&raw).expect("a sample event is JSON");
    v["ts"] = json!(now_s());
    v
}

/// An XP gain of `delta` for `player`.
pub fn progression(player: &str, delta: u64) -> Value {
    json!({"type": "progression", "playerId": player, "ts": now_s(),
        "payload": {"deltaXp": delta, "activity": "quest"}})
}

/// A boss kill by `player` worth `points`.
pub fn boss_kill(player: &str, points: u64) -> Value {
    json!({"type": "boss_kill", "playerId": player, "ts": now_s(),
        "payload": {"bossId": "dragon_lord", "tier": 3, "points": points}})
}

/// A claimed drop of `item` for `player`.
pub fn drop_claimed(player: &str, item: &str) -> Value {
    json!({"type": "drop_claimed", "playerId": player, "ts": now_s(),
        "payload": {"dropId": item, "weight": 0.5, "source": "chest"}})
}

/// The `window` board of `period`.
pub fn board(window: Window, period: &str) -> Board {
    Board {
        window,
        period: period.to_owned(),
    }
}

/// A score change of `delta` for `player` on `board`.
pub fn score_delta(board: &Board, player: &str, delta: i64) -> ScoreDelta {
    ScoreDelta {
        board: board.clone(),
        player_id: player.to_owned(),
        delta,
    }
}

/// `player`'s total of `total` on `board`.
pub fn score_total(board: &Board, player: &str, total: i64) -> ScoreTotal {
    ScoreTotal {
        board: board.clone(),
        player_id: player.to_owned(),
        total,
    }
}

/// The variable `var` of the test servers' env files (plain, TLS or cloud), or a panic saying
/// how to start them: tests that need a real server never skip silently.
pub fn server_env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: start the test servers and source their env file \
             (scripts/services.sh start: /tmp/liveops-services/env; scripts/services-tls.sh: \
             /tmp/liveops-services-tls/env; scripts/services-cloud.sh: /tmp/liveops-cloud/env)"
        ),
    }
}

/// `liveops-draw-v1` as the independent reference (`scripts/liveops_draw_v1.py`, Python's
/// standard library only) computes it: `request` is one draw (`seed`, `entrants`, `winners`) or
/// a list of them, the answer likewise.
pub fn reference_draw(request: &Value) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/liveops_draw_v1.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the reference draw");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(out.status.success(), "the reference draw failed");
    serde_json::from_slice(&out.stdout).expect("json")
}
