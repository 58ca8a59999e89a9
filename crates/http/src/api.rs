//! A service's routes and their OpenAPI document from one list of handlers: each route's path and
//! method are written once, in its `#[utoipa::path]`, and [`routes!`](crate::routes) serves and
//! documents it.

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
    let schema = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name));
    if let Some(RefOr::T(Schema::OneOf(one_of))) = schema {
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = item {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    use utoipa::openapi::{ComponentsBuilder, OpenApiBuilder, RefOr};
    use utoipa::{PartialSchema, ToSchema};

    use super::close_variants;

    /// A tagged enum whose variants refuse unknown fields, as `Reward` does.
    #[derive(Deserialize, ToSchema)]
    #[serde(tag = "kind", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Shape {
        Circle { radius: u32 },
        Square { side: u32 },
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
        let doc = OpenApiBuilder::new()
            .components(Some(
                ComponentsBuilder::new()
                    .schema("Shape", Shape::schema())
                    .build(),
            ))
            .build();
        assert_eq!(closed(&doc), [false, false], "utoipa leaves them open");
        assert_eq!(
            closed(&close_variants(doc.clone(), "Other")),
            [false, false]
        );
        assert_eq!(closed(&close_variants(doc, "Shape")), [true, true]);
    }
}
