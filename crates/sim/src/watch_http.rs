//! Watch streams on the wire: newline-delimited JSON `{"type": ..., "object": ...}`,
//! one HTTP body chunk per event (no buffering), as kube-apiserver sends.
//!
//! The event sequence is [`cattery_store::Watcher`]'s; this module maps the query to its
//! start point (`resourceVersion` unset or `"0"`: synthetic ADDED then live events;
//! `resourceVersion=N`: every event after N, or an ERROR event with a `410 Expired`
//! Status when N has left the history; `sendInitialEvents=true`: the current objects
//! then a BOOKMARK annotated `k8s.io/initial-events-end`), frames the events, renders
//! Tables for kubectl, ends the stream at `timeoutSeconds`, and adds a BOOKMARK every 30
//! seconds with `allowWatchBookmarks=true`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use crate::api::Query;
use crate::objects::{EventType, Filter, Obj};
use crate::status::ApiError;
use crate::table::{self, IncludeObject};
use cattery_store::{WatchEvent, WatchStart};

/// How often bookmarks are sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Starts a watch response for `filter`; `table` when kubectl asked for
/// server-side printing (each event's object is then a one-row Table).
pub fn serve(
    st: Arc<AppState>,
    filter: Filter,
    q: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let start = match q.get("resourceVersion").unwrap_or("") {
        _ if q.flag("sendInitialEvents") => WatchStart::Snapshot {
            initial_events_end: true,
        },
        "" | "0" => WatchStart::Snapshot {
            initial_events_end: false,
        },
        rv => WatchStart::After(rv.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion: invalid value {rv:?}: must be a number"
            ))
        })?),
    };
    let timeout =
        match q.get("timeoutSeconds") {
            Some(t) if !t.is_empty() => Some(Duration::from_secs(t.parse().map_err(|_| {
                ApiError::BadRequest(format!("timeoutSeconds: invalid value {t:?}"))
            })?)),
            _ => None,
        };
    let bookmarks = q.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let w = Watcher { tx, filter, table };
        let run = w.run(&st, start, bookmarks);
        tokio::select! {
            () = run => {}
            () = st.shutdown.cancelled() => {}
            () = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => {}
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

struct Watcher {
    tx: mpsc::Sender<Bytes>,
    filter: Filter,
    table: Option<IncludeObject>,
}

impl Watcher {
    /// Sends one event line; false when the client has gone.
    async fn send(&self, kind: &str, object: Value) -> bool {
        // Written by hand so `type` comes first, as kube-apiserver sends it.
        let line = format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n");
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn send_object(&self, kind: EventType, obj: &Obj) -> bool {
        let object = match self.table {
            Some(inc) => table::table(self.filter.res, [&**obj], None, None, inc),
            None => (**obj).clone(),
        };
        self.send(kind.as_str(), object).await
    }

    async fn bookmark(&self, rv: u64, initial_events_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let res = self.filter.res;
        self.send(
            "BOOKMARK",
            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta}),
        )
        .await
    }

    async fn run(self, st: &AppState, start: WatchStart, bookmarks: bool) {
        let mut watch = st.store.watch(self.filter.clone(), start);
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            let sent = tokio::select! {
                ev = watch.next() => match ev {
                    Ok(WatchEvent::Object(kind, obj)) => self.send_object(kind, &obj).await,
                    Ok(WatchEvent::Bookmark { rv, initial_events_end }) => {
                        self.bookmark(rv, initial_events_end).await
                    }
                    Err(e) => {
                        self.send("ERROR", ApiError::from(e).to_status()).await;
                        return;
                    }
                },
                () = self.tx.closed() => return,
                _ = tick.tick(), if bookmarks => self.bookmark(watch.cursor(), false).await,
            };
            if !sent {
                return;
            }
        }
    }
}
