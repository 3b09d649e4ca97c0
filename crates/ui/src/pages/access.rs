//! TODO
use crate::ctx::{Ctx, Nav, Page};
use axum::response::Response;
use maud::html;

/// Page.
pub(crate) async fn page(ctx: Ctx) -> Response {
    ctx.finish(Ok(Page::new("access", Nav::None, html! { p { "todo" } })))
        .await
}
