//! Every AMQP value the bus puts on the wire, built in one place so that its shape can be
//! checked against the Azure Service Bus AMQP protocol guide and request/response reference.

use fe2o3_amqp::types::definitions::{Error as AmqpError, ErrorCondition, Fields};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId,
    Properties, Source,
};
use fe2o3_amqp::types::primitives::{
    Array, Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value,
};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;

/// The claims-based-security node tokens are put to.
pub const CBS: &str = "$cbs";
/// Token type of a SAS token.
pub const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
/// The session filter's name (the filter-set key) and descriptor name.
pub const SESSION_FILTER: &str = "com.microsoft:session-filter";
/// The session filter's descriptor code, `00000013:7000000C`.
pub const SESSION_FILTER_CODE: u64 = 0x0000_0013_7000_000C;
/// Link property (milliseconds, a uint) bounding how long Service Bus holds a session receiver's
/// attach for a session to become free; also the condition of the detach that refuses it then.
pub const TIMEOUT: &str = "com.microsoft:timeout";
/// Condition of a rejection that dead-letters.
pub const DEAD_LETTER: &str = "com.microsoft:dead-letter";
/// Operation renewing message locks (non-session entities).
pub const RENEW_LOCK: &str = "com.microsoft:renew-lock";
/// Operation renewing a session's lock.
pub const RENEW_SESSION_LOCK: &str = "com.microsoft:renew-session-lock";
/// The test broker's message-count request (not a Service Bus operation).
pub const MESSAGE_COUNT: &str = "liveops:message-count";
/// Message annotation carrying the partition key.
pub const PARTITION_KEY: &str = "x-opt-partition-key";
/// Application property with the player key (the session id holds it too, on Azure).
pub const KEY_PROPERTY: &str = "liveops-key";
/// Application property that routes a replayed dead letter to one subscription only (a
/// subscription rule on Azure, see the crate docs).
pub const REPLAY_PROPERTY: &str = "liveops-replay-group";

/// `<topic>/Subscriptions/<group>`: the subscription a consumer group reads.
pub fn subscription(topic: &str, group: &str) -> String {
    format!("{topic}/Subscriptions/{group}")
}

/// `<topic>/Subscriptions/<group>/$deadletterqueue`: the group's dead-letter sub-queue.
pub fn dead_letter_queue(topic: &str, group: &str) -> String {
    format!("{}/$deadletterqueue", subscription(topic, group))
}

/// `<entity>/$management`: an entity's request/response node.
pub fn management(entity: &str) -> String {
    format!("{entity}/$management")
}

/// `amqp://<host>/<entity>`: the audience a token for an entity is put for.
pub fn audience(host: &str, entity: &str) -> String {
    format!("amqp://{host}/{entity}")
}

fn app_properties(pairs: Vec<(&str, SimpleValue)>) -> ApplicationProperties {
    let mut map = OrderedMap::new();
    for (k, v) in pairs {
        map.insert(k.to_owned(), v);
    }
    ApplicationProperties(map)
}

fn request(
    id: &str,
    reply_to: &str,
    props: Vec<(&str, SimpleValue)>,
    body: Value,
) -> Message<Body<Value>> {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String(id.to_owned())),
            reply_to: Some(reply_to.to_owned()),
            ..Properties::default()
        }),
        application_properties: Some(app_properties(props)),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    }
}

/// The CBS `put-token` request: `operation`, `type`, `name` (the audience) and `expiration`
/// (unix ms, a timestamp) as application properties, the token as an amqp-value string body.
pub fn put_token(
    id: &str,
    reply_to: &str,
    audience: &str,
    token: &str,
    expiry_ms: i64,
) -> Message<Body<Value>> {
    request(
        id,
        reply_to,
        vec![
            ("operation", SimpleValue::String("put-token".into())),
            ("type", SimpleValue::String(SAS_TOKEN_TYPE.into())),
            ("name", SimpleValue::String(audience.into())),
            (
                "expiration",
                SimpleValue::Timestamp(Timestamp::from_milliseconds(expiry_ms)),
            ),
        ],
        Value::String(token.to_owned()),
    )
}

/// The lock token of a delivery with tag `tag`: Service Bus's delivery tag is the lock token's
/// GUID in .NET byte order (first three fields little-endian), so the bytes are reordered into
/// the AMQP uuid's (RFC 4122) order, as the Azure SDKs do; `None` unless the tag has 16 bytes.
pub fn lock_token(tag: &[u8]) -> Option<[u8; 16]> {
    let bytes: [u8; 16] = tag.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(bytes).into_bytes())
}

/// A management request renewing message locks: `operation` = `com.microsoft:renew-lock`, body
/// a map with `lock-tokens` (an array of uuids).
pub fn renew_lock(id: &str, reply_to: &str, lock_tokens: &[[u8; 16]]) -> Message<Body<Value>> {
    let tokens: Vec<Value> = lock_tokens
        .iter()
        .map(|t| Value::Uuid((*t).into()))
        .collect();
    let mut body = OrderedMap::new();
    body.insert(
        Value::String("lock-tokens".into()),
        Value::Array(Array::from(tokens)),
    );
    request(
        id,
        reply_to,
        vec![("operation", SimpleValue::String(RENEW_LOCK.into()))],
        Value::Map(body),
    )
}

/// A management request renewing a session's lock: body a map with `session-id`.
pub fn renew_session_lock(id: &str, reply_to: &str, session_id: &str) -> Message<Body<Value>> {
    let mut body = OrderedMap::new();
    body.insert(
        Value::String("session-id".into()),
        Value::String(session_id.to_owned()),
    );
    request(
        id,
        reply_to,
        vec![("operation", SimpleValue::String(RENEW_SESSION_LOCK.into()))],
        Value::Map(body),
    )
}

/// The test broker's message-count request (an extension; Service Bus reports counts over its
/// HTTPS management API only).
pub fn message_count(id: &str, reply_to: &str) -> Message<Body<Value>> {
    request(
        id,
        reply_to,
        vec![("operation", SimpleValue::String(MESSAGE_COUNT.into()))],
        Value::Null,
    )
}

/// The source of a receiver on `address`; with `session` (`Some(None)`: the next available
/// session, `Some(Some(id))`: that session) it carries the session filter, a value described by
/// [`SESSION_FILTER_CODE`] holding the session id or null.
pub fn source(address: &str, session: Option<Option<&str>>) -> Source {
    let builder = Source::builder().address(address.to_owned());
    match session {
        None => builder.build(),
        Some(id) => {
            let value = id.map_or(Value::Null, |s| Value::String(s.to_owned()));
            let described = Described {
                descriptor: Descriptor::Code(SESSION_FILTER_CODE),
                value,
            };
            let mut filter = OrderedMap::new();
            filter.insert(
                Symbol::from(SESSION_FILTER),
                Value::Described(Box::new(described)),
            );
            builder.filter(filter).build()
        }
    }
}

/// The attach properties of a session receiver: wait up to `wait_ms` for a session.
pub fn session_wait(wait_ms: u32) -> Fields {
    let mut fields = Fields::new();
    fields.insert(Symbol::from(TIMEOUT), Value::Uint(wait_ms));
    fields
}

/// Whether a detach error is Service Bus's "no session became free in time".
pub fn is_timeout(error: &AmqpError) -> bool {
    matches!(&error.condition, ErrorCondition::Custom(c) if c.as_str() == TIMEOUT)
}

/// The rejection error that dead-letters a message, with `DeadLetterReason` and
/// `DeadLetterErrorDescription` in its info.
pub fn dead_letter_error(reason: &str, description: &str) -> AmqpError {
    let mut info = Fields::new();
    info.insert(
        Symbol::from("DeadLetterReason"),
        Value::String(reason.to_owned()),
    );
    info.insert(
        Symbol::from("DeadLetterErrorDescription"),
        Value::String(description.to_owned()),
    );
    AmqpError {
        condition: ErrorCondition::Custom(Symbol::from(DEAD_LETTER)),
        description: Some(description.to_owned()),
        info: Some(Box::new(info)),
    }
}

/// What the bus publishes: `message-id` = the message id (duplicate detection), the key as
/// application property, and on Azure `group-id` (the session id) and the
/// `x-opt-partition-key` annotation both = the key. `replay_to` routes a replay to one group.
pub fn outgoing(
    id: &str,
    key: &str,
    payload: &[u8],
    sessions: bool,
    replay_to: Option<&str>,
) -> Message<Body<Value>> {
    let mut props = vec![(KEY_PROPERTY, SimpleValue::String(key.to_owned()))];
    if let Some(g) = replay_to {
        props.push((REPLAY_PROPERTY, SimpleValue::String(g.to_owned())));
    }
    let annotations = sessions.then(|| {
        let mut a = OrderedMap::new();
        a.insert(
            OwnedKey::from(Symbol::from(PARTITION_KEY)),
            Value::String(key.to_owned()),
        );
        MessageAnnotations(a)
    });
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: annotations,
        properties: Some(Properties {
            message_id: (!id.is_empty()).then(|| MessageId::String(id.to_owned())),
            group_id: sessions.then(|| key.to_owned()),
            ..Properties::default()
        }),
        application_properties: Some(app_properties(props)),
        body: Body::Data(vec![Data(Binary::from(payload.to_vec()))].into()),
        footer: None,
    }
}

/// The body of an amqp-value response.
pub fn value_body(body: &Body<Value>) -> Option<&Value> {
    match body {
        Body::Value(AmqpValue(v)) => Some(v),
        _ => None,
    }
}

/// The bytes of a data body (all sections joined).
pub fn data_body(body: &Body<Value>) -> Option<Vec<u8>> {
    match body {
        Body::Data(sections) => Some(sections.iter().flat_map(|d| d.0.to_vec()).collect()),
        Body::Value(AmqpValue(Value::Binary(b))) => Some(b.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn prop<'a>(m: &'a Message<Body<Value>>, name: &str) -> &'a SimpleValue {
        m.application_properties
            .as_ref()
            .unwrap()
            .0
            .get(&name.to_owned())
            .unwrap()
    }

    #[test]
    fn put_token_carries_operation_type_name_and_expiration() {
        let m = put_token(
            "req-1",
            "cbs-reply",
            "amqp://ns.servicebus.windows.net/events.ingested",
            "SharedAccessSignature sr=x",
            1_767_225_600_000,
        );
        assert_eq!(
            prop(&m, "operation"),
            &SimpleValue::String("put-token".into())
        );
        assert_eq!(
            prop(&m, "type"),
            &SimpleValue::String("servicebus.windows.net:sastoken".into())
        );
        assert_eq!(
            prop(&m, "name"),
            &SimpleValue::String("amqp://ns.servicebus.windows.net/events.ingested".into())
        );
        assert_eq!(
            prop(&m, "expiration"),
            &SimpleValue::Timestamp(Timestamp::from_milliseconds(1_767_225_600_000))
        );
        assert_eq!(m.application_properties.as_ref().unwrap().0.len(), 4);
        assert_eq!(
            value_body(&m.body),
            Some(&Value::String("SharedAccessSignature sr=x".into()))
        );
        let p = m.properties.as_ref().unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("req-1".into())));
        assert_eq!(p.reply_to.as_deref(), Some("cbs-reply"));
    }

    #[test]
    fn the_session_filter_is_described_by_its_code_and_holds_the_id_or_null() {
        let s = source(
            "events.accepted/Subscriptions/progression",
            Some(Some("player_7")),
        );
        assert_eq!(
            s.address.as_deref(),
            Some("events.accepted/Subscriptions/progression")
        );
        let filter = s.filter.unwrap();
        assert_eq!(filter.len(), 1);
        let Value::Described(d) = filter
            .get(&Symbol::from("com.microsoft:session-filter"))
            .unwrap()
        else {
            panic!("not described");
        };
        assert_eq!(d.descriptor, Descriptor::Code(0x0000_0013_7000_000C));
        assert_eq!(d.value, Value::String("player_7".into()));
        let next = source("t/Subscriptions/g", Some(None)).filter.unwrap();
        let Value::Described(d) = next.get(&Symbol::from(SESSION_FILTER)).unwrap() else {
            panic!("not described");
        };
        assert_eq!(
            d.value,
            Value::Null,
            "null asks for the next available session"
        );
        assert!(
            source("t/Subscriptions/g", None).filter.is_none(),
            "no filter without sessions"
        );
        // The encoded filter starts with the described-type constructor 0x00 and the ulong code.
        let bytes = serde_amqp::to_vec(&Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(SESSION_FILTER_CODE),
            value: Value::Null,
        })))
        .unwrap();
        assert_eq!(bytes, [0x00, 0x80, 0, 0, 0, 0x13, 0x70, 0, 0, 0x0c, 0x40]);
    }

    #[test]
    fn entity_paths_follow_service_bus_addressing() {
        assert_eq!(
            subscription("events.ingested", "fairness"),
            "events.ingested/Subscriptions/fairness"
        );
        assert_eq!(
            dead_letter_queue("events.ingested", "fairness"),
            "events.ingested/Subscriptions/fairness/$deadletterqueue"
        );
        assert_eq!(
            management("events.ingested/Subscriptions/fairness"),
            "events.ingested/Subscriptions/fairness/$management"
        );
        assert_eq!(
            audience("ns.servicebus.windows.net", "events.flagged"),
            "amqp://ns.servicebus.windows.net/events.flagged"
        );
    }

    #[test]
    fn renew_lock_sends_the_lock_tokens_as_a_uuid_array() {
        let t = [7_u8; 16];
        let m = renew_lock("r1", "mgmt-reply", &[t]);
        assert_eq!(
            prop(&m, "operation"),
            &SimpleValue::String("com.microsoft:renew-lock".into())
        );
        let Some(Value::Map(body)) = value_body(&m.body) else {
            panic!("not a map")
        };
        let Value::Array(tokens) = body.get(&Value::String("lock-tokens".into())).unwrap() else {
            panic!("not an array");
        };
        assert_eq!(tokens.0, vec![Value::Uuid(t.into())]);
        let s = renew_session_lock("r2", "mgmt-reply", "player_7");
        assert_eq!(
            prop(&s, "operation"),
            &SimpleValue::String("com.microsoft:renew-session-lock".into())
        );
        let Some(Value::Map(body)) = value_body(&s.body) else {
            panic!("not a map")
        };
        assert_eq!(
            body.get(&Value::String("session-id".into())),
            Some(&Value::String("player_7".into()))
        );
    }

    #[test]
    fn a_lock_token_is_the_delivery_tag_read_as_a_dotnet_guid() {
        let tag: Vec<u8> = (0..=15).collect();
        let expected = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        assert_eq!(lock_token(&tag), Some(expected));
        let m = renew_lock("r1", "mgmt-reply", &[lock_token(&tag).unwrap()]);
        let Some(Value::Map(body)) = value_body(&m.body) else {
            panic!("not a map")
        };
        let Value::Array(tokens) = body.get(&Value::String("lock-tokens".into())).unwrap() else {
            panic!("not an array");
        };
        assert_eq!(tokens.0, vec![Value::Uuid(expected.into())]);
        assert_eq!(
            lock_token(&tag[..8]),
            None,
            "a tag that is not a GUID has no token"
        );
    }

    #[test]
    fn a_dead_letter_rejection_names_its_reason() {
        let e = dead_letter_error("MaxDeliveryCountExceeded", "delivered 10 times");
        assert_eq!(
            e.condition,
            ErrorCondition::Custom(Symbol::from("com.microsoft:dead-letter"))
        );
        let info = e.info.unwrap();
        assert_eq!(
            info.get(&Symbol::from("DeadLetterReason")),
            Some(&Value::String("MaxDeliveryCountExceeded".into()))
        );
        assert_eq!(
            info.get(&Symbol::from("DeadLetterErrorDescription")),
            Some(&Value::String("delivered 10 times".into()))
        );
    }

    #[test]
    fn published_messages_carry_id_session_and_partition_key_on_azure_only() {
        let m = outgoing("evt-1", "player_7", b"payload", true, None);
        let p = m.properties.as_ref().unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("evt-1".into())));
        assert_eq!(p.group_id.as_deref(), Some("player_7"), "session-id = key");
        let a = &m.message_annotations.as_ref().unwrap().0;
        assert_eq!(
            a.get(&OwnedKey::from(Symbol::from(PARTITION_KEY))),
            Some(&Value::String("player_7".into()))
        );
        assert_eq!(data_body(&m.body).unwrap(), b"payload");
        let plain = outgoing("evt-1", "player_7", b"payload", false, Some("fairness"));
        assert!(plain.message_annotations.is_none());
        assert_eq!(plain.properties.as_ref().unwrap().group_id, None);
        let props = &plain.application_properties.as_ref().unwrap().0;
        assert_eq!(
            props.get(&KEY_PROPERTY.to_owned()),
            Some(&SimpleValue::String("player_7".into()))
        );
        assert_eq!(
            props.get(&REPLAY_PROPERTY.to_owned()),
            Some(&SimpleValue::String("fairness".into()))
        );
    }
}
