//! Policies: NOT BUILT YET in this slice; the page says so (see the design note).

use axum::response::Response;
use maud::html;

use crate::ctx::{Ctx, Nav, Page};

/// `GET /ui/policies`.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let body = html! {
        div.notice.warn role="status" {
            p { "The policies page (NetworkPolicies read live through the cluster proxy as you, with allowed and denied hit counts from the flows' policies field) is not built yet." }
            p { "Meanwhile, filter the " a href=(ctx.state.link("/ui/logs/flows")) { "Flows" } " page with " code { "policies.enforced_policies=PREFIX*" } "." }
        }
    };
    ctx.finish(Ok(Page::new("Policies", Nav::Policies, body)))
        .await
}

/// `GET /ui/policies/export` (not built yet: the same notice).
pub(crate) async fn export(ctx: Ctx) -> Response {
    page(ctx).await
}
