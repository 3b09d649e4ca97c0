//! TODO
use crate::ctx::{Ctx, Nav, Page};
use axum::response::Response;
use maud::html;

/// Page.
pub(crate) async fn page(ctx: Ctx) -> Response {
    ctx.finish(Ok(Page::new("graph", Nav::None, html! { p { "todo" } })))
        .await
}
pub(crate) async fn data(ctx: Ctx) -> Response {
    page(ctx).await
}
pub(crate) async fn tables(ctx: Ctx) -> Response {
    page(ctx).await
}
