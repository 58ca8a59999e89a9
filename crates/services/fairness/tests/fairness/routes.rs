//! `GET /fairness/players/{id}` and `GET /fairness/flags`.

use liveops_core::ports::topics;
use serde_json::Value;

use crate::helpers::*;

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn flags_and_player_standing_are_served() {
    let app = spawn_app().await;
    let mut events = warm_up();
    let cheats: Vec<_> = (0..3)
        .map(|i| boss_kill("player_cheat", 40_000 + i))
        .collect();
    events.extend(cheats.iter().cloned());
    app.ingest(&events).await;
    app.process().await;
    assert_eq!(app.drain(topics::FLAGGED).await.len(), 3);

    let (status, ct, body) = app.get("/fairness/flags").await;
    assert_eq!((status.as_u16(), ct.as_str()), (200, "application/json"));
    let flags = body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 3);
    let f = &flags[0];
    assert_eq!(f["playerId"], "player_cheat");
    assert_eq!(f["type"], "boss_kill");
    assert!(f["value"].as_f64().unwrap() >= 40_000.0);
    assert!(f["zScore"].as_f64().unwrap() > 3.5);
    assert!(is_rfc3339(&f["at"]), "{f}");
    let ids: Vec<&str> = flags
        .iter()
        .map(|f| f["eventId"].as_str().unwrap())
        .collect();
    for c in &cheats {
        assert!(ids.contains(&c.event_id.to_string().as_str()));
    }

    let (_, _, body) = app.get("/fairness/flags?limit=1").await;
    assert_eq!(body["flags"].as_array().unwrap().len(), 1);

    let (status, _, body) = app.get("/fairness/players/player_cheat").await;
    assert_eq!(status, 200);
    assert_eq!(body["playerId"], "player_cheat");
    assert_eq!(body["blocked"], true);
    assert!(is_rfc3339(&body["blockedUntil"]), "{body}");
    assert_eq!(body["strikes"], 3);
    let flags = body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 3);
    assert_eq!(flags[0]["type"], "boss_kill");
    assert!(flags[0]["zScore"].as_f64().unwrap() > 3.5);
    assert!(is_rfc3339(&flags[0]["at"]));
}

#[tokio::test]
async fn a_clean_player_has_a_clean_record() {
    let app = spawn_app().await;
    let (status, _, body) = app.get("/fairness/players/player_good").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"playerId": "player_good", "blocked": false, "blockedUntil": null,
                           "strikes": 0, "flags": []})
    );
    let (_, _, body) = app.get("/fairness/flags").await;
    assert_eq!(body, serde_json::json!({"flags": []}));
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
        let (status, ct, body) = app.get(uri).await;
        assert_eq!(status, 400, "{uri}: {body}");
        assert_eq!(ct, "application/problem+json", "{uri}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["field"], field, "{uri}: {body}");
    }
}

#[tokio::test]
async fn the_openapi_lists_both_routes() {
    let doc = serde_json::to_value(liveops_fairness::MODULE.default_openapi().unwrap()).unwrap();
    assert!(doc["paths"]["/fairness/players/{id}"]["get"].is_object());
    assert!(doc["paths"]["/fairness/flags"]["get"].is_object());
}
