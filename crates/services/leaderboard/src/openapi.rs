//! The leaderboard's OpenAPI document for the configured windows. A board is a window and one of
//! its periods, and a period id's form depends on the window (`2026-11-21` daily, `2026-W47`
//! weekly, `season-4` seasonal): the two query parameters are described together, as one
//! exploded object with one alternative per window, so a request the document calls valid is one
//! the server takes.

use liveops_core::event_schema::{closed, constant, window_of};
use liveops_core::Window;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{OpenApi, Required};

/// The routes that take `window` and `period`.
const BOARD_ROUTES: [&str; 3] = [
    "/leaderboard",
    "/leaderboard/players/{id}",
    "/leaderboard/history",
];

fn period(window: Window) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(window.period_pattern()))
        .description(Some(format!(
            "A {window} period id; absent: the current one (on /leaderboard/history, the latest \
             with a final snapshot)"
        )))
}

/// `window` and `period` together, for `windows` (the first is the default).
fn board(windows: &[Window]) -> Parameter {
    let alternative = |o: ObjectBuilder| closed(o.schema_type(Type::Object));
    let mut alternatives = OneOfBuilder::new();
    for &w in windows {
        alternatives = alternatives.item(alternative(
            ObjectBuilder::new()
                .title(Some(w.as_str()))
                .property("window", constant(w.as_str()))
                .property("period", period(w))
                .required("window"),
        ));
    }
    if let Some(&default) = windows.first() {
        alternatives = alternatives.item(alternative(
            ObjectBuilder::new()
                .title(Some(format!("default window ({default})")))
                .property("period", period(default)),
        ));
    }
    ParameterBuilder::new()
        .name("board")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .description(Some(
            "`window` (one of the configured windows; absent: the first) and `period` (an id of \
             that window's form; absent: the current period)",
        ))
        .schema(Some(alternatives))
        .build()
}

/// Rewrites the generated document for the configured `windows`.
pub(crate) fn for_windows(mut doc: OpenApi, windows: &[Window]) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        let Some(params) = op.parameters.as_mut() else {
            continue;
        };
        if BOARD_ROUTES.contains(&path.as_str()) {
            params.retain(|p| p.name != "window" && p.name != "period");
            params.push(board(windows));
        } else if let Some(p) = params.iter_mut().find(|p| p.name == "window") {
            p.schema = Some(window_of(windows).into());
        }
    }
    doc
}
