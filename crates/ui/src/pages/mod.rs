//! The pages. Each handler reads through [`crate::ctx::Ctx`]'s API caller only.

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::ctx::Ctx;
use crate::error::UiError;
use crate::url_state::{RANGES, UrlState};

pub(crate) mod access;
pub(crate) mod clusters;
pub(crate) mod graph;
pub(crate) mod logs;
pub(crate) mod overview;
pub(crate) mod picker;
pub(crate) mod policies;
pub(crate) mod signin;

/// `GET /`: the overview, keeping the query.
pub(crate) async fn root(RawQuery(q): RawQuery) -> Response {
    match q {
        Some(q) if !q.is_empty() => Redirect::to(&format!("/ui/overview?{q}")).into_response(),
        _ => Redirect::to("/ui/overview").into_response(),
    }
}

/// Any other `/ui/...` path.
pub(crate) async fn not_found(ctx: Ctx) -> Response {
    let path = ctx.path.clone();
    ctx.finish(Err(UiError::NotFound {
        what: "page",
        name: path,
        hint: "Use the navigation above.".into(),
    }))
    .await
}

/// The filter bar of log pages: time range, `--where` filters (one per line), free text.
/// `errors` are shown next to the input they concern.
pub(crate) fn filter_bar(
    state: &UrlState,
    action: &str,
    placeholder: &str,
    errors: &[String],
    keep: &[(&str, String)],
) -> Markup {
    let range_err = state.range().err();
    let current = state.range().map(|r| r.0).unwrap_or("1h");
    html! {
        form.filters method="get" action=(action) role="search" aria-label="Filters" {
            @if let Some(c) = &state.cluster { input type="hidden" name="cluster" value=(c); }
            @for (k, v) in keep { input type="hidden" name=(k) value=(v); }
            div.field {
                label for="range" { "Time range" }
                select #range name="range" data-autosubmit aria-invalid=[range_err.is_some().then_some("true")] {
                    @for (v, label, _) in RANGES {
                        option value=(v) selected[*v == current] { (label) }
                    }
                }
                @if let Some(e) = &range_err { p.field-error role="alert" { (e) } }
            }
            div.field.grow {
                label for="where" { "Filters " span.muted { "(one per line, as " code { "cattery logs --where" } ")" } }
                textarea #where name="where" rows=(state.filters.len().clamp(1, 4)) placeholder=(placeholder)
                    aria-invalid=[(!errors.is_empty()).then_some("true")]
                    aria-describedby=[(!errors.is_empty()).then_some("where-error")] {
                    (state.filters.join("\n"))
                }
                @if !errors.is_empty() {
                    div #where-error.field-error role="alert" {
                        @for e in errors { p { (e) } }
                    }
                }
            }
            div.field {
                label for="q" { "Text" }
                input #q type="search" name="q" value=(state.q) placeholder="any word";
            }
            div.field.actions {
                button type="submit" { "Apply" }
            }
        }
    }
}

/// An empty-state box.
pub(crate) fn empty(message: &str) -> Markup {
    html! { div.empty role="status" { p { (message) } } }
}
