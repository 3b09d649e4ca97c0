//! Service graph: NOT BUILT YET in this slice; the page says so (see the design note).

use axum::response::Response;
use maud::html;

use crate::ctx::{Ctx, Nav, Page};

/// `GET /ui/graph`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let body = html! {
        div.notice.warn role="status" {
            p { "The service graph (namespaces expanding to workloads, built from the log store's terms aggregations and drawn with the vendored cytoscape.js and dagre) is not built yet." }
            p { "Meanwhile the " a href=(ctx.state.link("/ui/overview")) { "Overview" } " lists the top denied source → destination pairs and the "
                a href=(ctx.state.link("/ui/logs/flows")) { "Flows" } " page filters by any field." }
        }
    };
    ctx.finish(Ok(Page::new("Service graph", Nav::Graph, body)))
        .await
}

/// `GET /ui/graph/data` (not built yet: the same notice).
pub(crate) async fn data(ctx: Ctx) -> Response {
    page(ctx).await
}

/// `GET /ui/graph/tables` (not built yet: the same notice).
pub(crate) async fn tables(ctx: Ctx) -> Response {
    page(ctx).await
}
