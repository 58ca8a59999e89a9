//! Typed events as the gateway puts them on the bus ([`Envelope`]s), for the tests of the
//! services that consume them: who, what and when (`at_ms`, server time in milliseconds).

use liveops_core::event::{BossKillPayload, DropClaimedPayload, ProgressionPayload};
use liveops_core::{Envelope, Event, Payload, PlayerId};
use uuid::Uuid;

/// `payload` by `player`, received at `at_ms` and sent the same second, with a fresh event id.
pub fn envelope(player: &str, payload: Payload, at_ms: i64) -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: at_ms,
        event: Event {
            player_id: PlayerId::parse(player).unwrap(),
            ts: at_ms.div_euclid(1000),
            message_id: None,
            payload,
        },
        traceparent: None,
    }
}

/// A boss kill worth `points`.
pub fn kill(points: u32) -> Payload {
    Payload::BossKill(BossKillPayload {
        boss_id: "dragon_lord".into(),
        tier: 5,
        points,
    })
}

/// An XP gain of `delta` from a quest.
pub fn xp(delta: u32) -> Payload {
    Payload::Progression(ProgressionPayload {
        delta_xp: delta,
        activity: "quest".into(),
    })
}

/// A claimed drop of `item` from a raid chest.
pub fn drop(item: &str) -> Payload {
    Payload::DropClaimed(DropClaimedPayload {
        drop_id: item.into(),
        weight: 0.05,
        source: "raid_chest".into(),
    })
}
