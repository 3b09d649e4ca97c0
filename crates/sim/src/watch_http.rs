//! Watch streams on the wire: newline-delimited JSON `{"type": ..., "object": ...}`,
//! one HTTP body chunk per event (no buffering), as kube-apiserver sends.
//!
//! The framing is `cattery_store::http::watch`'s (shared with the hub) and the event
//! sequence [`cattery_store::Watcher`]'s; this module maps the query to its
//! start point (`resourceVersion` unset or `"0"`: synthetic ADDED then live events;
//! `resourceVersion=N`: every event after N, or an ERROR event with a `410 Expired`
//! Status when N has left the history; `sendInitialEvents=true`: the current objects
//! then a BOOKMARK annotated `k8s.io/initial-events-end`), frames the events, renders
//! Tables for kubectl, ends the stream at `timeoutSeconds`, and adds a BOOKMARK every 30
//! seconds with `allowWatchBookmarks=true`.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{StatusCode, header};
use serde_json::Value;

use crate::AppState;
use crate::api::Query;
use crate::objects::{EventType, Filter, Obj};
use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::table::{self, IncludeObject};
use cattery_store::http::query::WatchParams;
use cattery_store::{StoreError, WatchStart, Watcher};

fn start_watch(st: &AppState, f: Filter, start: WatchStart) -> Watcher<'_, &'static ResourceType> {
    st.store.watch(f, start)
}

fn status(e: &StoreError) -> Value {
    ApiError::from(e.clone()).to_status()
}

/// Starts a watch response for `filter`; `table` when kubectl asked for
/// server-side printing (each event's object is then a one-row Table).
pub fn serve(
    st: Arc<AppState>,
    filter: Filter,
    q: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let params = WatchParams::parse(|k| q.get(k)).map_err(|e| ApiError::BadRequest(e.0))?;
    let res = filter.res;
    let render = Box::new(move |_: EventType, obj: &Obj| match table {
        Some(inc) => table::table(res, [&**obj], None, None, inc),
        None => (**obj).clone(),
    });
    let stop = st.shutdown.clone();
    // A compaction (`/_sim/compact`) ends the stream with a 410 Expired ERROR event.
    let mut compactions = st.compacted.subscribe();
    let mut compacted = compactions.clone();
    compacted.mark_unchanged();
    let body = cattery_store::http::watch::stream(
        st,
        start_watch,
        filter,
        &params,
        render,
        status,
        async move {
            tokio::select! {
                () = stop.cancelled() => {}
                _ = compactions.changed() => {}
            }
        },
    );
    let expired = futures_util::stream::once(async move {
        compacted.has_changed().unwrap_or(false).then(|| {
            let rv = *compacted.borrow();
            let e = ApiError::Expired {
                requested: rv.saturating_sub(1),
                oldest: rv,
            };
            Ok::<_, std::convert::Infallible>(cattery_store::http::watch::line(
                "ERROR",
                &e.to_status(),
            ))
        })
    })
    .filter_map(std::future::ready);
    let body = body.chain(expired);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(body))
        .expect("valid response"))
}
