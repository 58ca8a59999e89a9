//! Extractors whose rejections are [`Problem`]s naming the offending field: JSON bodies, path
//! segments, query strings, and the player id of `/…/players/{id}` routes. Their bounds come
//! from the types (`PlayerId`'s pattern, [`Bounded`] ranges), which also write them into the
//! OpenAPI document, so the spec says exactly what the server enforces.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use liveops_core::PlayerId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Required, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::body::{read_body, BodyLimit};
use crate::Problem;

/// Body limit of a JSON route that set none with [`crate::body_limit`].
const DEFAULT_LIMIT: usize = 64 * 1024;

/// A field path as serde_path_to_error reports it, or `fallback` at the top level.
fn field_of(path: &serde_path_to_error::Path, fallback: &str) -> String {
    let p = path.to_string();
    if p.is_empty() || p == "." || p == "?" {
        fallback.to_owned()
    } else {
        p
    }
}

/// A JSON body, read under the route's limit; answers with it serialized.
#[derive(Clone, Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&read_limited(req).await?).map(Json)
    }
}

/// A request's body, read under its route's limit ([`crate::body_limit`], 64 KiB if none).
pub(crate) async fn read_limited(req: Request) -> Result<bytes::Bytes, Problem> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_LIMIT, |l| l.0);
    read_body(req.into_body(), limit).await
}

/// Parses a JSON body, naming the field that failed. A body read into a struct must be a JSON
/// object (serde would also take the struct's fields as an array, in order, which no schema
/// states).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if expects_object::<T>() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::invalid("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            let field = field_of(e.path(), "body");
            Problem::invalid(&field, e.inner().to_string())
        })
        .and_then(|v| {
            de.end()
                .map(|()| v)
                .map_err(|e| Problem::invalid("body", e.to_string()))
        })
}

/// Whether `T` reads itself as a struct or a map (asked of a deserializer that only records it).
fn expects_object<T: DeserializeOwned>() -> bool {
    use serde::de::value::Error;
    use serde::de::{Error as _, Visitor};

    struct Probe;
    impl<'de> serde::Deserializer<'de> for Probe {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("other"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            Err(Error::custom("object"))
        }
        fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("object"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct enum identifier
            ignored_any
        }
    }
    matches!(T::deserialize(Probe), Err(e) if e.to_string() == "object")
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string decoded into `T`; unknown parameters are ignored.
#[derive(Clone, Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let field = field_of(e.path(), "query");
                Problem::invalid(&field, e.inner().to_string())
            })
    }
}

/// Path segments decoded into `T`.
#[derive(Clone, Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| path_problem(&e))
    }
}

fn path_problem(e: &PathRejection) -> Problem {
    use axum::extract::path::ErrorKind;
    let field = match e {
        PathRejection::FailedToDeserializePathParams(inner) => match inner.kind() {
            ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::DeserializeError { key, .. } => key.clone(),
            _ => "path".to_owned(),
        },
        _ => "path".to_owned(),
    };
    Problem::invalid(&field, format!("bad path: {}", e.body_text()))
}

/// The `{id}` of a player route, checked against `^[A-Za-z0-9_]{3,50}$` (400 naming `id`).
#[derive(Clone, Debug)]
pub struct PlayerPath(pub PlayerId);

impl<S: Send + Sync> FromRequestParts<S> for PlayerPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "id").await?;
        PlayerId::parse(&raw)
            .map(PlayerPath)
            .map_err(|reason| Problem::invalid("id", reason))
    }
}

impl IntoParams for PlayerPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("Player id"))
            .schema(Some(player_id_schema()))
            .build()]
    }
}

crate::id_path! {
    /// The `{id}` of a route naming a stored thing (a campaign, webhook, operator), checked
    /// against `^[A-Za-z0-9_.:-]{1,64}$` (400 naming `id`); the OpenAPI says the same.
    pub IdPath = "id", "Id"
}

/// Checks an id taken from a path or body (`^[A-Za-z0-9_.:-]{1,64}$`), naming `field`.
pub fn check_id(field: &str, value: &str) -> Result<(), Problem> {
    if liveops_core::event::is_label(value) {
        Ok(())
    } else {
        Err(Problem::invalid(
            field,
            "must be 1..=64 characters of [A-Za-z0-9_.:-]",
        ))
    }
}

/// The path parameter `name`, found by name so that a route with several parameters
/// (`/players/{id}/inbox/{messageId}/claim`) can take each with its own extractor.
pub async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, Problem> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| Problem::invalid(name, format!("bad path: {}", e.body_text())))?;
    params
        .iter()
        .find_map(|(key, value)| (key == name).then(|| value.to_owned()))
        .ok_or_else(|| Problem::invalid(name, "missing from the path"))
}

/// The path parameter `name`, checked as an id (`^[A-Za-z0-9_.:-]{1,64}$`, 400 naming it).
pub async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, Problem> {
    let raw = path_param(parts, state, name).await?;
    check_id(name, &raw)?;
    Ok(raw)
}

/// Defines the extractor of a path id named `$param` (`{id}`, `{keyId}`, `{messageId}`):
/// checked against `^[A-Za-z0-9_.:-]{1,64}$` (400 naming `$param`), and documented the same in
/// the OpenAPI (`params(KeyIdPath)`), so no route writes the pattern by hand.
#[macro_export]
macro_rules! id_path {
    ($(#[$meta:meta])* $vis:vis $name:ident = $param:literal, $description:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        $vis struct $name(pub String);

        impl<S: Send + Sync> $crate::__private::FromRequestParts<S> for $name {
            type Rejection = $crate::Problem;

            async fn from_request_parts(
                parts: &mut $crate::__private::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                $crate::path_id(parts, state, $param).await.map($name)
            }
        }

        impl $crate::__private::IntoParams for $name {
            fn into_params(
                _: impl Fn() -> Option<$crate::__private::ParameterIn>,
            ) -> Vec<$crate::__private::Parameter> {
                vec![$crate::id_param($param, $description)]
            }
        }
    };
}

/// A path parameter documented as an id (`^[A-Za-z0-9_.:-]{1,64}$`).
pub fn id_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(id_schema()))
        .build()
}

/// The schema of an id: `^[A-Za-z0-9_.:-]{1,64}$`.
pub fn id_schema() -> RefOr<Schema> {
    string_schema(liveops_core::event::LABEL_PATTERN, 1, 64)
}

/// The schema of a player id: what [`PlayerId::parse`] accepts.
pub fn player_id_schema() -> RefOr<Schema> {
    string_schema(liveops_core::event::PLAYER_ID_PATTERN, 3, 50)
}

/// A string of `pattern`, `min` to `max` characters long.
fn string_schema(pattern: &str, min: usize, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .into()
}

/// An integer in `MIN..=MAX`, refused (400 naming the field) outside it; its schema says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    /// The value, if within bounds.
    pub fn new(v: i64) -> Option<Self> {
        (MIN..=MAX).contains(&v).then_some(Self(v))
    }

    /// The value.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let out_of_range =
            || serde::de::Error::custom(format!("must be an integer between {MIN} and {MAX}"));
        // Query strings hand numbers over as text; JSON as numbers. Accept both, nothing else.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Whole(f64),
            Text(String),
        }
        let v = match Raw::deserialize(d).map_err(|_| out_of_range())? {
            Raw::Int(v) => v,
            Raw::Whole(f) => liveops_core::event::integral(f)
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(out_of_range)?,
            Raw::Text(s) => s.parse::<i64>().map_err(|_| out_of_range())?,
        };
        Self::new(v).ok_or_else(out_of_range)
    }
}

impl<const MIN: i64, const MAX: i64> PartialSchema for Bounded<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(MIN as f64))
            .maximum(Some(MAX as f64))
            .into()
    }
}

impl<const MIN: i64, const MAX: i64> ToSchema for Bounded<MIN, MAX> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_struct_body_must_be_an_object_not_its_fields_in_an_array() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Change {
            role: Option<String>,
            disabled: Option<bool>,
        }
        let refused = parse_json::<Change>(b" [null, null]").expect_err("an array");
        assert_eq!(refused.status, 400);
        assert!(parse_json::<Change>(br#"{"disabled": true}"#).is_ok());
        assert_eq!(parse_json::<Vec<u8>>(b"[1, 2]").ok(), Some(vec![1, 2]));
    }

    #[derive(Debug, Deserialize)]
    struct Q {
        limit: Option<Bounded<1, 10>>,
    }

    fn query(q: &str) -> Result<Q, Problem> {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = field_of(e.path(), "query");
            Problem::invalid(&field, e.inner().to_string())
        })
    }

    #[test]
    fn bounded_query_values_name_their_field() {
        assert_eq!(
            query("limit=10").expect("ok").limit.map(Bounded::get),
            Some(10)
        );
        assert!(query("").expect("ok").limit.is_none());
        for bad in ["limit=0", "limit=11", "limit=x", "limit=1.5"] {
            let p = query(bad).expect_err(bad);
            assert_eq!(
                (p.status, p.field.as_deref()),
                (400, Some("limit")),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, Deserialize)]
        struct B {
            #[allow(dead_code)]
            n: Bounded<1, 5>,
        }
        let p = parse_json::<B>(br#"{"n": 9}"#).expect_err("out of range");
        assert_eq!(p.field.as_deref(), Some("n"));
        let p = parse_json::<B>(b"{").expect_err("syntax");
        assert_eq!(p.field.as_deref(), Some("body"));
    }

    id_path! {
        /// `{messageId}` in the test route.
        MessageId = "messageId", "The message"
    }

    /// Answers `(status, field)` of `POST uri` on a route taking a player and a message id.
    async fn claim(uri: &str) -> (u16, Option<String>) {
        use axum::body::Body;
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let app = axum::Router::new().route(
            "/players/{id}/inbox/{messageId}/claim",
            axum::routing::post(
                |PlayerPath(p): PlayerPath, MessageId(m): MessageId| async move {
                    format!("{}/{m}", p.as_str())
                },
            ),
        );
        let request = axum::http::Request::post(uri)
            .body(Body::empty())
            .expect("request");
        let answer = app.oneshot(request).await.expect("answer");
        let status = answer.status().as_u16();
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        if status == 200 {
            assert_eq!(&body[..], b"player_1/msg_1");
            return (status, None);
        }
        let problem: Problem = serde_json::from_slice(&body).expect("a problem");
        (status, problem.field)
    }

    #[tokio::test]
    async fn path_ids_are_found_by_name_and_refusals_name_them() {
        let ok = claim("/players/player_1/inbox/msg_1/claim").await;
        assert_eq!(ok, (200, None));
        let bad_player = claim("/players/x/inbox/msg_1/claim").await;
        assert_eq!(bad_player, (400, Some("id".to_owned())));
        let bad_message = claim("/players/player_1/inbox/m%20x/claim").await;
        assert_eq!(bad_message, (400, Some("messageId".to_owned())));
        let long = format!("/players/player_1/inbox/{}/claim", "m".repeat(65));
        assert_eq!(claim(&long).await, (400, Some("messageId".to_owned())));
    }

    #[test]
    fn a_named_id_documents_its_own_name_and_pattern() {
        let params = MessageId::into_params(|| None);
        let json = serde_json::to_value(&params).expect("json");
        assert_eq!(json[0]["name"], "messageId");
        assert_eq!(json[0]["in"], "path");
        assert_eq!(
            json[0]["schema"]["pattern"],
            liveops_core::event::LABEL_PATTERN
        );
        assert_eq!(json[0]["schema"]["maxLength"], 64);
    }
}
