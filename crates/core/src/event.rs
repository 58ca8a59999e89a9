//! Gameplay events: the wire format clients send, its validation, and the envelope carried on the bus.
//!
//! Validation happens once, at the gateway; everything downstream works on the typed [`Event`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Bounds applied to every event field (ARCHITECTURE §4 defaults).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest `progression.deltaXp`.
    pub max_delta_xp: u64,
    /// Largest `boss_kill.points`.
    pub max_points: u64,
    /// Largest `boss_kill.tier`.
    pub max_tier: u64,
    /// How far in the past `ts` may be, in seconds.
    pub max_age_s: i64,
    /// How far in the future `ts` may be, in seconds.
    pub max_skew_s: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_delta_xp: 100_000,
            max_points: 1_000_000,
            max_tier: 10,
            max_age_s: 24 * 3600,
            max_skew_s: 300,
        }
    }
}

/// The kinds of gameplay event the product understands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// XP earned from an activity.
    Progression,
    /// A boss defeated, worth points.
    BossKill,
    /// A loot drop the player claimed.
    DropClaimed,
}

impl EventType {
    /// Every event type, for metrics and per-type state.
    pub const ALL: [EventType; 3] = [Self::Progression, Self::BossKill, Self::DropClaimed];

    /// The wire name (`"boss_kill"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progression => "progression",
            Self::BossKill => "boss_kill",
            Self::DropClaimed => "drop_claimed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What a player id looks like, as a regular expression (also the OpenAPI pattern).
pub const PLAYER_ID_PATTERN: &str = "^[A-Za-z0-9_]{3,50}$";

/// What an id or label (`bossId`, `dropId`, `source`, `activity`, `rewardId`) looks like.
pub const LABEL_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,64}$";

/// A player id: `^[A-Za-z0-9_]{3,50}$`, checked on construction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_]{3,50}$")]
pub struct PlayerId(String);

impl PlayerId {
    /// Validates a player id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_len = (3..=50).contains(&s.len());
        let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok_len && ok_chars {
            Ok(Self(s.to_owned()))
        } else {
            Err("must match ^[A-Za-z0-9_]{3,50}$".into())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PlayerId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<PlayerId> for String {
    fn from(p: PlayerId) -> String {
        p.0
    }
}

impl std::fmt::Display for PlayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Is `s` a valid id or label (`bossId`, `dropId`, `source`, `activity`): 1..=64 of `[A-Za-z0-9_.:-]`.
pub fn is_label(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// XP earned from an activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressionPayload {
    /// XP gained, 1..=100 000.
    pub delta_xp: u32,
    /// What earned it (`quest_completion`).
    pub activity: String,
}

/// A boss kill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BossKillPayload {
    /// Which boss.
    pub boss_id: String,
    /// Difficulty tier, 1..=10.
    pub tier: u8,
    /// Points awarded, 0..=1 000 000.
    pub points: u32,
}

/// A loot drop the player claimed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DropClaimedPayload {
    /// The item dropped.
    pub drop_id: String,
    /// Drop weight (rarity), 0.0..=1.0.
    pub weight: f64,
    /// Where it dropped from (`raid_chest`).
    pub source: String,
}

/// The payload of an event, tagged by its type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum Payload {
    /// `type: progression`.
    Progression(ProgressionPayload),
    /// `type: boss_kill`.
    BossKill(BossKillPayload),
    /// `type: drop_claimed`.
    DropClaimed(DropClaimedPayload),
}

/// A validated gameplay event as the client sent it. Its OpenAPI schema is written out in
/// [`crate::event_schema`] from the same [`Limits`] the validation uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Who played.
    pub player_id: PlayerId,
    /// Client time, unix seconds (informational; windows use server time).
    pub ts: i64,
    /// The client's id for this event (`messageId`, a label): events of one player with the same
    /// id are applied once, and equal events with different ids are different events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub payload: Payload,
}

impl Event {
    /// The event's type.
    pub fn kind(&self) -> EventType {
        match self.payload {
            Payload::Progression(_) => EventType::Progression,
            Payload::BossKill(_) => EventType::BossKill,
            Payload::DropClaimed(_) => EventType::DropClaimed,
        }
    }

    /// Leaderboard score this event adds: `boss_kill.points + progression.deltaXp`.
    pub fn score(&self) -> i64 {
        match &self.payload {
            Payload::Progression(p) => i64::from(p.delta_xp),
            Payload::BossKill(b) => i64::from(b.points),
            Payload::DropClaimed(_) => 0,
        }
    }

    /// The number fairness watches for anomalies (the points an event carries), if any.
    pub fn anomaly_value(&self) -> Option<f64> {
        match &self.payload {
            Payload::Progression(p) => Some(f64::from(p.delta_xp)),
            Payload::BossKill(b) => Some(f64::from(b.points)),
            Payload::DropClaimed(_) => None,
        }
    }
}

/// Why an event was rejected: the JSON path of the offending field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidEvent {
    /// JSON path of the field (`payload.deltaXp`), or `body` for the document itself.
    pub field: String,
    /// What is wrong, for a human.
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Limits {
    /// These limits with the oldest `ts` taken no older than consumers remember an event's id
    /// (`retention`, less the future skew a first copy may have had): an event older than that
    /// could be resent after its id was forgotten and be applied twice.
    pub fn within_retention(self, retention: std::time::Duration) -> Self {
        let kept = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        Self {
            max_age_s: self
                .max_age_s
                .min(kept.saturating_sub(self.max_skew_s))
                .max(0),
            ..self
        }
    }
}

/// Reads raw bytes as the JSON document of one event (its fields are checked by
/// [`validate_event`]).
pub fn event_json(body: &[u8]) -> Result<Value, InvalidEvent> {
    serde_json::from_slice(body).map_err(|e| invalid("body", format!("not valid JSON: {e}")))
}

/// Parses and validates one event from raw JSON bytes.
pub fn parse_event(body: &[u8], limits: &Limits, now_s: i64) -> Result<Event, InvalidEvent> {
    validate_event(&event_json(body)?, "", limits, now_s)
}

/// Validates one event already parsed as JSON; `prefix` is prepended to field paths (`events[3].`).
pub fn validate_event(
    value: &Value,
    prefix: &str,
    limits: &Limits,
    now_s: i64,
) -> Result<Event, InvalidEvent> {
    let path = |f: &str| format!("{prefix}{f}");
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(&path("body"), "must be a JSON object"))?;
    check_keys(
        obj,
        &["type", "playerId", "ts", "messageId", "payload"],
        &path(""),
    )?;

    let kind_s = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&path("type"), "required string"))?;
    let kind = EventType::parse(kind_s).ok_or_else(|| {
        invalid(
            &path("type"),
            format!(
                "unknown event type {kind_s:?}: expected progression, boss_kill or drop_claimed"
            ),
        )
    })?;
    let player = obj
        .get("playerId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&path("playerId"), "required string"))?;
    let player_id = PlayerId::parse(player).map_err(|r| invalid(&path("playerId"), r))?;
    let ts = int_in(obj, "ts", i64::MIN as i128, i64::MAX as i128, &path("ts"))? as i64;
    if ts < now_s - limits.max_age_s {
        return Err(invalid(
            &path("ts"),
            format!("more than {} s in the past", limits.max_age_s),
        ));
    }
    if ts > now_s + limits.max_skew_s {
        return Err(invalid(
            &path("ts"),
            format!("more than {} s in the future", limits.max_skew_s),
        ));
    }
    let message_id = match obj.get("messageId") {
        None => None,
        Some(_) => Some(label(obj, "messageId", &path("messageId"))?),
    };
    let pay = obj
        .get("payload")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(&path("payload"), "required object"))?;
    let pp = |f: &str| path(&format!("payload.{f}"));
    let payload = match kind {
        EventType::Progression => {
            check_keys(pay, &["deltaXp", "activity"], &path("payload."))?;
            Payload::Progression(ProgressionPayload {
                delta_xp: int_in(
                    pay,
                    "deltaXp",
                    1,
                    limits.max_delta_xp.into(),
                    &pp("deltaXp"),
                )? as u32,
                activity: label(pay, "activity", &pp("activity"))?,
            })
        }
        EventType::BossKill => {
            check_keys(pay, &["bossId", "tier", "points"], &path("payload."))?;
            Payload::BossKill(BossKillPayload {
                boss_id: label(pay, "bossId", &pp("bossId"))?,
                tier: int_in(pay, "tier", 1, limits.max_tier.into(), &pp("tier"))? as u8,
                points: int_in(pay, "points", 0, limits.max_points.into(), &pp("points"))? as u32,
            })
        }
        EventType::DropClaimed => {
            check_keys(pay, &["dropId", "weight", "source"], &path("payload."))?;
            let weight = pay
                .get("weight")
                .and_then(Value::as_f64)
                .ok_or_else(|| invalid(&pp("weight"), "required number"))?;
            if !(0.0..=1.0).contains(&weight) {
                return Err(invalid(&pp("weight"), "must be between 0.0 and 1.0"));
            }
            Payload::DropClaimed(DropClaimedPayload {
                drop_id: label(pay, "dropId", &pp("dropId"))?,
                weight,
                source: label(pay, "source", &pp("source"))?,
            })
        }
    };
    Ok(Event {
        player_id,
        ts,
        message_id,
        payload,
    })
}

fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), InvalidEvent> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        // An empty name is shown quoted, so the problem still names a field.
        Some(k) if k.is_empty() => Err(invalid(&format!("{prefix}\"\""), "unknown field")),
        Some(k) => Err(invalid(&format!("{prefix}{k}"), "unknown field")),
        None => Ok(()),
    }
}

fn int_in(
    obj: &Map<String, Value>,
    key: &str,
    min: i128,
    max: i128,
    path: &str,
) -> Result<i128, InvalidEvent> {
    let v = obj
        .get(key)
        .ok_or_else(|| invalid(path, "required integer"))?;
    let n = as_whole(v).ok_or_else(|| invalid(path, "must be an integer"))?;
    if n < min || n > max {
        return Err(invalid(path, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// Deserializes an `i64` of seconds from a JSON integer or a whole number written with a
/// fraction (`982.0`), as JSON Schema's `integer` allows, within ±2^53 however it is written
/// (where a number with a fraction is still exact; what the document declares).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    const EXACT: i128 = 1 << 53;
    as_whole(&Value::deserialize(d)?)
        .filter(|n| n.abs() <= EXACT)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom("must be a whole number of seconds within ±2^53"))
}

/// Deserializes an integer field of a request body the way its OpenAPI `integer` reads: a JSON
/// integer or a whole number written with a fraction (`59.0`), in the range of `T`.
pub fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    let v = Value::deserialize(d)?;
    let n = as_whole(&v).ok_or_else(|| serde::de::Error::custom("must be an integer"))?;
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
}

/// The value of a JSON number that is a whole number, written with a fraction or not.
fn as_whole(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
        .or_else(|| v.as_f64().and_then(integral))
}

/// A JSON number written with a fraction that is still a whole number (`400.0`), as JSON Schema's
/// `integer` allows, exactly representable in a double.
pub fn integral(f: f64) -> Option<i128> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i128)
}

fn label(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, InvalidEvent> {
    let s = obj
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "required string"))?;
    if !is_label(s) {
        return Err(invalid(
            path,
            "must be 1..=64 characters of [A-Za-z0-9_.:-]",
        ));
    }
    Ok(s.to_owned())
}

/// An accepted event as carried on the bus: the event plus what the gateway assigned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// UUIDv7 assigned by the gateway; every consumer dedupes on it.
    pub event_id: Uuid,
    /// Server receive time, unix milliseconds; windows and seasons are computed from it.
    pub received_at: i64,
    /// The validated event.
    #[serde(flatten)]
    pub event: Event,
    /// W3C `traceparent` of the span that published the event, when traces are exported: the
    /// consumers' spans for the event continue its trace. Absent from messages of versions that
    /// did not export traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// Encodes for the bus.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes from the bus.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The bus message that carries it: its event id as the message id (buses with duplicate
    /// detection drop a re-published copy), keyed by its player (one player's events stay in
    /// order).
    pub fn to_message(&self) -> crate::ports::Message {
        crate::ports::Message {
            id: self.event_id.to_string(),
            key: self.event.player_id.as_str().to_owned(),
            payload: self.encode().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receipt's timestamp is read within ±2^53 however it is written, as the document
    /// declares: beyond, a plain integer is refused like one written with an exponent.
    #[test]
    fn whole_seconds_are_read_within_two_to_the_53() {
        #[derive(serde::Deserialize)]
        struct At(#[serde(deserialize_with = "whole_number")] i64);
        let read = |json: &str| serde_json::from_str::<At>(json).map(|a| a.0).ok();
        assert_eq!(read("9007199254740992"), Some(1 << 53));
        assert_eq!(read("-9007199254740992"), Some(-(1 << 53)));
        assert_eq!(read("1e15"), Some(1_000_000_000_000_000));
        assert_eq!(read("1700000000.0"), Some(1_700_000_000));
        assert_eq!(read("9007199254740993"), None);
        assert_eq!(read("-9007199254740993"), None);
        assert_eq!(read("1e16"), None);
        assert_eq!(read("1.5"), None);
    }

    #[test]
    fn the_oldest_ts_taken_stays_within_what_consumers_remember() {
        let limits =
            |secs: u64| Limits::default().within_retention(std::time::Duration::from_secs(secs));
        assert_eq!(limits(7 * 86_400).max_age_s, 86_400);
        assert_eq!(limits(86_400 + 300).max_age_s, 86_400);
        assert_eq!(limits(12 * 3_600).max_age_s, 12 * 3_600 - 300);
        assert_eq!(limits(601).max_age_s, 301);
        assert_eq!(limits(0).max_age_s, 0);
        assert_eq!(limits(601).max_skew_s, 300);
    }

    const NOW: i64 = 1_638_360_000;

    fn parse(s: &str) -> Result<Event, InvalidEvent> {
        parse_event(s.as_bytes(), &Limits::default(), NOW)
    }

    #[test]
    fn accepts_every_sample_shape() {
        let e = parse(r#"{"type":"boss_kill","playerId":"player_67890","ts":1638360000,"payload":{"bossId":"dragon_lord","tier":5,"points":2500}}"#).unwrap();
        assert_eq!(e.score(), 2500);
        let e = parse(r#"{"type":"drop_claimed","playerId":"player_abcde","ts":1638360000,"payload":{"dropId":"epic_sword_001","weight":0.05,"source":"raid_chest"}}"#).unwrap();
        assert_eq!(e.kind(), EventType::DropClaimed);
        let e = parse(r#"{"type":"progression","playerId":"player_12345","ts":1638360000,"payload":{"deltaXp":150,"activity":"quest_completion"}}"#).unwrap();
        assert_eq!(e.score(), 150);
    }

    #[test]
    fn names_the_offending_field() {
        // An event of `kind` from player_1 at NOW with `payload`.
        let of = |kind: &str, payload: &str| {
            format!(r#"{{"type":"{kind}","playerId":"player_1","ts":{NOW},"payload":{payload}}}"#)
        };
        let cases = [
            (
                r#"{"type":"progression","playerId":"p1","ts":1638360000,"payload":{"deltaXp":1,"activity":"a"}}"#.to_owned(),
                "playerId",
            ),
            (of("progression", r#"{"deltaXp":0,"activity":"a"}"#), "payload.deltaXp"),
            (of("progression", r#"{"deltaXp":100001,"activity":"a"}"#), "payload.deltaXp"),
            (of("progression", r#"{"deltaXp":1.5,"activity":"a"}"#), "payload.deltaXp"),
            (of("boss_kill", r#"{"bossId":"b","tier":11,"points":1}"#), "payload.tier"),
            (of("boss_kill", r#"{"bossId":"b","tier":1,"points":-1}"#), "payload.points"),
            (of("boss_kill", r#"{"bossId":"b c","tier":1,"points":1}"#), "payload.bossId"),
            (of("drop_claimed", r#"{"dropId":"d","weight":1.5,"source":"s"}"#), "payload.weight"),
            (of("teleport", "{}"), "type"),
            (
                r#"{"type":"progression","playerId":"player_1","ts":1638000000,"payload":{"deltaXp":1,"activity":"a"}}"#.to_owned(),
                "ts",
            ),
            (
                r#"{"type":"progression","playerId":"player_1","ts":1638370000,"payload":{"deltaXp":1,"activity":"a"}}"#.to_owned(),
                "ts",
            ),
            (of("progression", r#"{"deltaXp":1,"activity":"a","x":1}"#), "payload.x"),
            ("[1,2]".to_owned(), "body"),
            (r#"{"type":"#.to_owned(), "body"),
        ];
        for (body, field) in cases {
            assert_eq!(parse(&body).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn envelope_round_trips() {
        let e = parse(r#"{"type":"boss_kill","playerId":"player_67890","ts":1638360000,"payload":{"bossId":"dragon_lord","tier":5,"points":2500}}"#).unwrap();
        let mut env = Envelope {
            event_id: Uuid::now_v7(),
            received_at: 1,
            event: e,
            traceparent: None,
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        assert!(!String::from_utf8_lossy(&env.encode()).contains("traceparent"));
        env.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
    }

    #[test]
    fn envelopes_of_older_versions_still_decode() {
        let old = br#"{"eventId":"01890a5d-ac96-774b-bcce-b302099a8057","receivedAt":1700000000000,"type":"boss_kill","playerId":"player_1","ts":1700000000,"payload":{"bossId":"b","tier":1,"points":5}}"#;
        let env = Envelope::decode(old).unwrap();
        assert_eq!(env.traceparent, None);
        assert_eq!(env.event.score(), 5);
    }
}
