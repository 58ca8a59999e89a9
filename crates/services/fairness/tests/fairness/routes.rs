//! `GET /fairness/players/{id}` and `GET /fairness/flags`.

use liveops_core::ports::topics;
use liveops_core::EventType;
use liveops_fairness::{FlagList, PlayerFairness};
use serde_json::Value;

use crate::helpers::*;
use liveops_testkit::served;

fn is_rfc3339(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn flags_and_player_standing_are_served() {
    let app = spawn_app().await;
    let cheats = app.three_cheats(40_000).await;
    assert_eq!(app.drain(topics::FLAGGED).await.len(), 3);

    let FlagList { flags } = app.ok("/fairness/flags").await;
    assert_eq!(flags.len(), 3);
    let f = &flags[0];
    assert_eq!(f.player_id, "player_cheat");
    assert_eq!(f.event_type, EventType::BossKill);
    assert!(f.value >= 40_000.0);
    assert!(f.z_score > 3.5);
    assert!(is_rfc3339(&f.at), "{f:?}");
    let ids: Vec<_> = flags.iter().map(|f| f.event_id).collect();
    for c in &cheats {
        assert!(ids.contains(&c.event_id));
    }

    let latest: FlagList = app.ok("/fairness/flags?limit=1").await;
    assert_eq!(latest.flags.len(), 1);

    let standing: PlayerFairness = app.ok("/fairness/players/player_cheat").await;
    assert_eq!(standing.player_id, "player_cheat");
    assert!(standing.blocked);
    assert!(
        standing.blocked_until.as_deref().is_some_and(is_rfc3339),
        "{standing:?}"
    );
    assert_eq!(standing.strikes, 3);
    assert_eq!(standing.flags.len(), 3);
    assert_eq!(standing.flags[0].event_type, EventType::BossKill);
    assert!(standing.flags[0].z_score > 3.5);
    assert!(is_rfc3339(&standing.flags[0].at));
}

#[tokio::test]
async fn a_clean_player_has_a_clean_record() {
    let app = spawn_app().await;
    let standing: PlayerFairness = app.ok("/fairness/players/player_good").await;
    assert_eq!(
        standing,
        PlayerFairness {
            player_id: "player_good".into(),
            blocked: false,
            blocked_until: None,
            strikes: 0,
            flags: vec![],
        }
    );
    // Wire format: an unblocked player's `blockedUntil` is there, as null (not left out).
    let (_, _, raw) = app.get("/fairness/players/player_good").await;
    assert_eq!(raw.get("blockedUntil"), Some(&Value::Null), "{raw}");
    let all: FlagList = app.ok("/fairness/flags").await;
    assert_eq!(all, FlagList { flags: vec![] });
}

#[tokio::test]
async fn bad_requests_are_400_problems() {
    let app = spawn_app().await;
    let cases = [
        ("/fairness/flags?limit=0", "limit"),
        ("/fairness/flags?limit=1001", "limit"),
        ("/fairness/flags?limit=ten", "limit"),
        ("/fairness/flags?limit=-1", "limit"),
        ("/fairness/flags?limit=", "limit"),
        ("/fairness/players/ab", "id"),
        ("/fairness/players/bad%20id", "id"),
        ("/fairness/players/%FF%FE", "id"),
    ];
    for (uri, field) in cases {
        let problem = app.refused(uri, 400).await;
        assert_eq!(problem.field.as_deref(), Some(field), "{uri}: {problem:?}");
    }
}

#[tokio::test]
async fn the_openapi_lists_both_routes() {
    // The document itself, as JSON: its paths are what is checked.
    let doc = serde_json::to_value(liveops_fairness::MODULE.default_openapi().unwrap()).unwrap();
    assert!(doc["paths"]["/fairness/players/{id}"]["get"].is_object());
    assert!(doc["paths"]["/fairness/flags"]["get"].is_object());
}

/// An audit log whose database is down.
struct DownAudit;

#[async_trait::async_trait]
impl liveops_core::ports::Health for DownAudit {
    async fn healthcheck(&self) -> liveops_core::PortResult<()> {
        Err(liveops_core::PortError::Unavailable("audit down".into()))
    }
}

#[async_trait::async_trait]
impl liveops_core::stores::AuditLog for DownAudit {
    async fn record(&self, _: &liveops_core::stores::AuditEntry) -> liveops_core::PortResult<()> {
        Err(liveops_core::PortError::Unavailable("audit down".into()))
    }
    async fn audit(
        &self,
        _: Option<i64>,
        _: u32,
    ) -> liveops_core::PortResult<Vec<liveops_core::stores::ListedAudit>> {
        Err(liveops_core::PortError::Unavailable("audit down".into()))
    }
}

/// An unblock the audit log cannot record is not made: 503, and the player stays blocked with
/// their strikes; once the log is back, the unblock is made and recorded.
#[tokio::test]
async fn an_unblock_the_audit_log_cannot_record_is_not_made() {
    use axum::body::Body;
    use axum::http::Request;

    let app = spawn_app().await;
    app.three_cheats(40_000).await;
    let until = app.blocked_until("player_cheat").await;
    assert!(until.is_some(), "blocked by the cheats");
    // An operator, signed in.
    liveops_testkit::operators::signed_in(app.repo.as_ref(), "op_1", "a token").await;
    let unblock = || {
        Request::delete("/fairness/players/player_cheat/block")
            .header("authorization", "Bearer a token")
            .body(Body::empty())
            .unwrap()
    };
    let mut down = app.state.clone();
    down.audit = std::sync::Arc::new(DownAudit);
    let refused = served::call(&liveops_fairness::router(down), unblock()).await;
    assert_eq!(refused.0, 503, "{:?}", refused.2);
    assert_eq!(
        app.blocked_until("player_cheat").await,
        until,
        "still blocked"
    );
    assert_eq!(app.strikes("player_cheat").await, 3, "strikes kept");

    let done = served::call(&app.router, unblock()).await;
    assert_eq!(done.0, 200, "{:?}", done.2);
    assert_eq!(app.blocked_until("player_cheat").await, None);
    let audit = liveops_core::stores::AuditLog::audit(&*app.repo, None, 10)
        .await
        .unwrap();
    let unblocks: Vec<_> = audit
        .iter()
        .filter(|l| l.entry.action == "player.unblock")
        .collect();
    assert_eq!(unblocks.len(), 1, "{audit:?}");
    assert!(audit[0]
        .entry
        .before
        .as_deref()
        .unwrap_or_default()
        .contains("\"blocked\":true"));
}
