//! A service's routes and their OpenAPI document from one list of handlers: each route's path and
//! method are written once, in its `#[utoipa::path]`, and [`routes!`](crate::routes) serves and
//! documents it.

use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::OpenApiBuilder;
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
