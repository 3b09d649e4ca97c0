//! Watch streams on the wire: newline-delimited JSON `{"type": ..., "object": ...}`, one
//! body chunk per event (no buffering), as kube-apiserver sends them.
//!
//! The event sequence is [`Watcher`](crate::Watcher)'s; this module frames it, lets the
//! caller render each object (a Table row for kubectl, live status for the hub), ends the
//! stream at `timeoutSeconds` or when the caller's `stop` future completes, and adds a
//! BOOKMARK every [`BOOKMARK_EVERY`] with `allowWatchBookmarks=true`. A watch from a
//! resourceVersion that has left the history gets one ERROR event carrying a `410 Expired`
//! `Status`, then the stream ends (the client relists).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::query::WatchParams;
use crate::{EventType, Filter, Kind, Obj, Store, StoreError, WatchEvent};

/// How often bookmarks are sent when the client allows them.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Renders a watch event's object for the wire.
pub type Render = Box<dyn Fn(EventType, &Obj) -> Value + Send + Sync>;

/// One event line (`type` first, as kube-apiserver writes it).
pub fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

/// Starts a watch of `filter` on the store that `store` finds in `owner`, and returns its
/// body. `render` turns each object into what is sent; `error` turns a store error into
/// the ERROR event's `Status` (see [`super::status::status`]); the stream ends when `stop`
/// completes, at the timeout, or when the client goes away.
pub fn stream<K: Kind, S: Send + Sync + 'static>(
    owner: Arc<S>,
    store: fn(&S) -> &Store<K>,
    filter: Filter<K>,
    params: &WatchParams,
    render: Render,
    error: fn(&StoreError) -> Value,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let params = params.clone();
    tokio::spawn(async move {
        let run = run(&*owner, store, filter, &params, render, error, tx);
        let timeout = async {
            match params.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = run => {}
            () = stop => {}
            () = timeout => {}
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    })
}

fn bookmark<K: Kind>(res: K, rv: u64, initial_events_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": res.kind(), "apiVersion": res.api_version(), "metadata": meta})
}

async fn run<K: Kind, S>(
    owner: &S,
    store: fn(&S) -> &Store<K>,
    filter: Filter<K>,
    params: &WatchParams,
    render: Render,
    error: fn(&StoreError) -> Value,
    tx: mpsc::Sender<Bytes>,
) {
    let res = filter.res;
    let mut watch = store(owner).watch(filter, params.start);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        let chunk = tokio::select! {
            ev = watch.next() => match ev {
                Ok(WatchEvent::Object(kind, obj)) => line(kind.as_str(), &render(kind, &obj)),
                Ok(WatchEvent::Bookmark { rv, initial_events_end }) => {
                    line("BOOKMARK", &bookmark(res, rv, initial_events_end))
                }
                Err(e) => {
                    let _ = tx.send(line("ERROR", &error(&e))).await;
                    return;
                }
            },
            () = tx.closed() => return,
            _ = tick.tick(), if params.bookmarks => line("BOOKMARK", &bookmark(res, watch.cursor(), false)),
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}
