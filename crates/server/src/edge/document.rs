//! What the OpenAPI document says every operation may answer before its route (the edge's
//! bounds, [`super`]).

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use super::UNBOUNDED;

/// Declares in `spec` what any operation may answer before its route: 408 and 413 where it
/// takes a body, or may be forwarded to the process that serves it (whose forwarder reads any
/// body sent, up to 2 MiB: every service route), and 503 with `Retry-After` past the in-flight
/// bound (the operations routes aside), each only where the operation does not declare that
/// status already.
pub fn document(spec: &mut OpenApi) {
    let problem = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build()
    };
    let answer = |description: &str| {
        let answer = ResponseBuilder::new().description(description);
        answer
            .content("application/problem+json", problem())
            .build()
    };
    let timeout = answer("The body did not arrive within the server's HTTP_BODY_TIMEOUT");
    let too_large = answer(
        "The body is larger than the route takes (payload-too-large); one over 2 MiB, also on a \
         route that takes none, when this process forwards the request to the one serving it",
    );
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    let busy = ResponseBuilder::new()
        .description("Too many requests in progress on this server; retry after Retry-After")
        .content("application/problem+json", problem())
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("Seconds to wait before retrying"))
                .build(),
        )
        .build();
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        let service = !UNBOUNDED.contains(&path.as_str());
        for op in operations.into_iter().flatten() {
            let answers = &mut op.responses.responses;
            if op.request_body.is_some() || service {
                for (status, answer) in [("408", &timeout), ("413", &too_large)] {
                    let answer = || RefOr::T(answer.clone());
                    answers.entry(status.into()).or_insert_with(answer);
                }
            }
            if service {
                answers
                    .entry("503".into())
                    .or_insert_with(|| RefOr::T(busy.clone()));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn every_operation_declares_the_refusals_before_its_route() {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
        use utoipa::openapi::request_body::RequestBody;
        use utoipa::openapi::{PathsBuilder, ResponseBuilder as Answer};
        let own = Answer::new().description("a backend is down").build();
        let post = OperationBuilder::new()
            .request_body(Some(RequestBody::new()))
            .build();
        let read = OperationBuilder::new().response("503", own).build();
        let probe = OperationBuilder::new().build();
        let mut spec = OpenApi::new(
            utoipa::openapi::Info::new("t", "1"),
            PathsBuilder::new()
                .path("/events", PathItem::new(HttpMethod::Post, post))
                .path("/leaderboard", PathItem::new(HttpMethod::Get, read))
                .path("/healthz", PathItem::new(HttpMethod::Get, probe)),
        );
        document(&mut spec);
        let statuses = |path: &str, get: bool| {
            let item = &spec.paths.paths[path];
            let op = if get { &item.get } else { &item.post };
            let answers = &op.as_ref().unwrap().responses.responses;
            answers.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(statuses("/events", false), ["408", "413", "503"]);
        assert_eq!(statuses("/leaderboard", true), ["408", "413", "503"]);
        assert!(statuses("/healthz", true).is_empty());
        let json = serde_json::to_value(&spec).unwrap();
        let kept = &json["paths"]["/leaderboard"]["get"]["responses"]["503"];
        assert_eq!(kept["description"], "a backend is down");
        let busy = &json["paths"]["/events"]["post"]["responses"]["503"];
        assert_eq!(busy["headers"]["Retry-After"]["schema"]["type"], "integer");
    }
}
