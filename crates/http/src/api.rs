//! A service's routes and their OpenAPI document from one list of handlers: each route's path and
//! method are written once, in its `#[utoipa::path]`, and [`routes!`](crate::routes) serves and
//! documents it.

use serde_json::Value;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{OpenApi, OpenApiBuilder, RefOr};
use utoipa::Modify;
use utoipa_axum::router::OpenApiRouter;

use crate::BearerScheme;

/// The start of a service's routes: no route yet, and a document naming its tag.
pub fn service_routes<S: Clone + Send + Sync + 'static>(
    tag: &str,
    description: &str,
) -> OpenApiRouter<S> {
    let tag = TagBuilder::new()
        .name(tag)
        .description(Some(description))
        .build();
    OpenApiRouter::with_openapi(OpenApiBuilder::new().tags(Some([tag])).build())
}

/// [`service_routes`] whose document also declares the operators' bearer scheme, for services
/// with routes behind [`Operator`](crate::Operator).
pub fn operator_routes<S: Clone + Send + Sync + 'static>(
    tag: &str,
    description: &str,
) -> OpenApiRouter<S> {
    let mut routes = service_routes(tag, description);
    BearerScheme.modify(routes.get_openapi_mut());
    routes
}

/// Closes each object variant of the `oneOf` component `name` (`additionalProperties: false`):
/// utoipa cannot say so for an internally tagged enum whose variants deny unknown fields.
pub fn close_variants(mut doc: OpenApi, name: &str) -> OpenApi {
    if let Some(RefOr::T(Schema::OneOf(one_of))) = component(&mut doc, name) {
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = item {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
    doc
}

/// Adds the JSON Schema keyword `keyword` (such as `oneOf` for a rule between fields) to the
/// object component `name`: utoipa has no field for it, but writes an object's extensions map as
/// its own keys.
pub fn add_keyword(mut doc: OpenApi, name: &str, keyword: &str, value: Value) -> OpenApi {
    if let Some(RefOr::T(Schema::Object(object))) = component(&mut doc, name) {
        object
            .extensions
            .get_or_insert_with(Extensions::default)
            .insert(keyword.to_owned(), value);
    }
    doc
}

fn component<'a>(doc: &'a mut OpenApi, name: &str) -> Option<&'a mut RefOr<Schema>> {
    doc.components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    use utoipa::openapi::{ComponentsBuilder, OpenApiBuilder, RefOr};
    use utoipa::{PartialSchema, ToSchema};

    use super::{add_keyword, close_variants};

    /// A tagged enum whose variants refuse unknown fields, as `Reward` does.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "kind", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Shape {
        Circle { radius: u32 },
        Square { side: u32 },
    }

    /// A document whose one component is `schema`, named `name`.
    fn document(name: &str, schema: RefOr<Schema>) -> utoipa::openapi::OpenApi {
        let components = ComponentsBuilder::new().schema(name, schema).build();
        OpenApiBuilder::new().components(Some(components)).build()
    }

    fn closed(doc: &utoipa::openapi::OpenApi) -> Vec<bool> {
        let schemas = &doc.components.as_ref().expect("components").schemas;
        let Some(RefOr::T(Schema::OneOf(one_of))) = schemas.get("Shape") else {
            panic!("Shape is not a oneOf: {:?}", schemas.keys());
        };
        one_of
            .items
            .iter()
            .map(|item| match item {
                RefOr::T(Schema::Object(o)) => matches!(
                    o.additional_properties.as_deref(),
                    Some(AdditionalProperties::FreeForm(false))
                ),
                _ => false,
            })
            .collect()
    }

    #[test]
    fn close_variants_marks_each_variant_of_the_named_schema_closed() {
        let doc = document("Shape", Shape::schema());
        assert_eq!(closed(&doc), [false, false], "utoipa leaves them open");
        assert_eq!(
            closed(&close_variants(doc.clone(), "Other")),
            [false, false]
        );
        assert_eq!(closed(&close_variants(doc, "Shape")), [true, true]);
    }

    /// A plain object, as `SendRequest` is.
    #[derive(Deserialize, ToSchema)]
    #[allow(dead_code)]
    struct Pair {
        left: Option<u32>,
        right: Option<u32>,
    }

    #[test]
    fn add_keyword_writes_the_keyword_into_the_named_object_as_json_schema() {
        let doc = document("Pair", Pair::schema());
        let rule = serde_json::json!([{ "required": ["left"] }, { "required": ["right"] }]);
        let served = |doc: utoipa::openapi::OpenApi| {
            serde_json::to_value(doc).expect("serialises")["components"]["schemas"]["Pair"].clone()
        };
        assert_eq!(served(doc.clone())["oneOf"], serde_json::Value::Null);
        let pair = served(add_keyword(doc.clone(), "Pair", "oneOf", rule.clone()));
        assert_eq!(pair["oneOf"], rule);
        assert_eq!(
            pair["properties"]["left"]["type"][0], "integer",
            "the rest stays"
        );
        let other = served(add_keyword(doc, "Other", "oneOf", rule));
        assert_eq!(other["oneOf"], serde_json::Value::Null);
    }
}
