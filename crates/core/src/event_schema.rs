//! The OpenAPI schema of [`Event`], built from the same [`Limits`] and patterns that
//! [`crate::event::validate_event`] enforces, so the document says exactly what is accepted: one
//! shape per event type, every field's bounds, and no unknown fields.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::event::{Event, EventType, Limits, LABEL_PATTERN, PLAYER_ID_PATTERN};
use crate::Window;

/// `object` closed to unknown properties (`additionalProperties: false`), built.
pub fn closed(object: ObjectBuilder) -> Object {
    object
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
}

fn integer(min: i64, max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
}

fn label(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(LABEL_PATTERN))
        .description(Some(description))
}

/// A string schema that can only be `value`.
pub fn constant(value: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
}

/// A string naming one of `windows` (the ranked ones, `LB_WINDOWS`).
pub fn window_of(windows: &[Window]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(windows.iter().map(|w| w.as_str())))
}

/// The payload of one event type.
fn payload(kind: EventType, l: &Limits) -> Object {
    let o = ObjectBuilder::new().schema_type(Type::Object);
    closed(match kind {
        EventType::Progression => o
            .property(
                "deltaXp",
                integer(1, l.max_delta_xp).description(Some("XP gained")),
            )
            .property("activity", label("What earned it (`quest_completion`)"))
            .required("deltaXp")
            .required("activity"),
        EventType::BossKill => o
            .property("bossId", label("Which boss"))
            .property(
                "tier",
                integer(1, l.max_tier).description(Some("Difficulty tier")),
            )
            .property(
                "points",
                integer(0, l.max_points).description(Some("Points awarded")),
            )
            .required("bossId")
            .required("tier")
            .required("points"),
        EventType::DropClaimed => o
            .property("dropId", label("The item dropped"))
            .property(
                "weight",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0))
                    .maximum(Some(1.0))
                    .description(Some("Drop weight (rarity)")),
            )
            .property("source", label("Where it dropped from (`raid_chest`)"))
            .required("dropId")
            .required("weight")
            .required("source"),
    })
}

/// One event of type `kind`.
fn event(kind: EventType, l: &Limits) -> Object {
    closed(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some(kind.as_str()))
            .property("type", constant(kind.as_str()))
            .property(
                "playerId",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(PLAYER_ID_PATTERN))
                    .description(Some("Who played")),
            )
            .property(
                "ts",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some(
                        "Client time, unix seconds: at most 24 h before (less where EVENT_RETENTION is under 24 h 5 min: its length less 5 min) and 5 min after server time",
                    )),
            )
            .property(
                "messageId",
                label(
                    "Optional: the client's id for this event. Two equal events sent in the same \
                     second need different ids to count twice (their signatures would be equal); \
                     events of one player with the same id are applied once if resent \
                     within EVENT_RETENTION (7 days by default) of the first being applied, and \
                     count again after it.",
                ),
            )
            .property("payload", payload(kind, l))
            .required("type")
            .required("playerId")
            .required("ts")
            .required("payload"),
    )
}

impl PartialSchema for Event {
    fn schema() -> RefOr<Schema> {
        let l = Limits::default();
        let mut one_of = OneOfBuilder::new().description(Some("A gameplay event"));
        for kind in EventType::ALL {
            one_of = one_of.item(event(kind, &l));
        }
        one_of.into()
    }
}

impl ToSchema for Event {}

/// The body of a batch: `{"events": [...]}` or a bare array of 1..=`max` items. Items are
/// judged one by one, each getting its own result (202, or the problem that refused it), so any
/// JSON value is a well-formed item here; what an event must be is [`Event`]'s schema.
pub fn batch_schema(max: usize) -> RefOr<Schema> {
    let items = || {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
            .min_items(Some(1))
            .max_items(Some(max))
    };
    OneOfBuilder::new()
        .item(closed(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("events", items())
                .required("events"),
        ))
        .item(items())
        .description(Some(
            "1..=500 events, each judged on its own (a result per event)",
        ))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_carries_the_validation_bounds() {
        let doc = serde_json::to_value(Event::schema()).expect("json");
        let progression = &doc["oneOf"][0];
        assert_eq!(progression["additionalProperties"], false);
        let delta = &progression["properties"]["payload"]["properties"]["deltaXp"];
        assert_eq!(
            delta["maximum"].as_f64(),
            Some(Limits::default().max_delta_xp as f64)
        );
        assert_eq!(delta["minimum"].as_f64(), Some(1.0));
        assert_eq!(
            doc["oneOf"][1]["properties"]["payload"]["properties"]["bossId"]["pattern"],
            LABEL_PATTERN
        );
    }
}
