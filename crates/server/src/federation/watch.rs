//! Keeping one kind's objects of one cluster current, as client-go's reflector does:
//! list, then watch from the list's resourceVersion, resume after a stream that simply
//! ended, list again after `410 Gone` (the cluster no longer has that history), after an
//! error, and every [`RELIST`] as a safety net against a missed event.
//!
//! The loop reports [`Change`]s to a sink (the reconciler's caches, `cache.rs`) and runs
//! until its cancellation token is cancelled: the caller cancels it when the cluster's
//! tunnel closes or the objects are no longer needed, so every retry is bounded by the
//! tunnel's life.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster_client::{ClusterClient, DynamicKind, ListParams};

/// How often the objects are listed again even when the watch is healthy (plus up to a
/// fifth more, at random, so a fleet's clusters do not list all at once).
pub const RELIST: Duration = Duration::from_secs(60);
/// First wait after a failure; doubled on each failure in a row.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait after failures in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A watch that ends sooner than this without an event counts as a failure (so a
/// cluster that closes watches at once is not asked again in a tight loop).
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// What the reflector learnt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    /// Every object there is now (a list, or an empty one when the cluster does not serve
    /// the kind): replaces what was known.
    Listed(Vec<Value>),
    /// An object was added or changed.
    Upsert(Value),
    /// An object was deleted, or no longer matches the selector.
    Delete(Value),
    /// The stream or a list failed: changes may have been missed until the next
    /// `Listed`. The message says why.
    Lost(String),
}

/// What to keep current: one kind, in every namespace, with a selector.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// The kind.
    pub kind: DynamicKind,
    /// Label (and field) selectors of both the list and the watch.
    pub params: ListParams,
}

/// The next wait after a failure, and the one after it.
fn backoff(current: &mut Duration) -> Duration {
    let wait = *current;
    *current = (*current * 2).min(MAX_BACKOFF);
    wait
}

/// Sleeps `d` unless cancelled first; returns whether it was cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

fn resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Runs until `cancel` is cancelled, reporting every change of `source`'s objects in
/// the cluster to `sink`.
pub(crate) async fn reflect(
    client: ClusterClient,
    source: Source,
    cancel: CancellationToken,
    mut sink: impl FnMut(Change) + Send,
) {
    let mut failures = MIN_BACKOFF;
    let typed = |mut o: Value| {
        // Events carry their type in a real cluster; make sure of it.
        o["apiVersion"] = source.kind.api_version.into();
        o["kind"] = source.kind.kind.into();
        o
    };
    loop {
        let listed = tokio::select! {
            _ = cancel.cancelled() => return,
            r = client.list_values_versioned(&source.kind, None, &source.params) => r,
        };
        let relist_at = Instant::now() + RELIST.mul_f64(1.0 + fastrand::f64() / 5.0);
        let mut rv = match listed {
            Ok(list) => {
                sink(Change::Listed(list.items));
                failures = MIN_BACKOFF;
                list.resource_version
            }
            Err(e) if e.code() == Some(404) => {
                // The cluster does not serve the kind (Calico not installed): none of
                // it. Ask again at the next relist, in case it gets installed.
                sink(Change::Listed(Vec::new()));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(relist_at) => continue,
                }
            }
            Err(e) => {
                sink(Change::Lost(format!("listing {}: {e}", source.kind.plural)));
                if pause(&cancel, backoff(&mut failures)).await {
                    return;
                }
                continue;
            }
        };
        // Watch from `rv` until it is time to list again, resuming after clean ends.
        'watching: loop {
            let started = Instant::now();
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(relist_at) => break 'watching,
                r = client.watch_values(&source.kind, None, &source.params, Some(&rv)) => r,
            };
            let mut stream = match opened {
                Ok(s) => s,
                Err(e) => {
                    if e.code() != Some(410) {
                        sink(Change::Lost(format!(
                            "watching {}: {e}",
                            source.kind.plural
                        )));
                        if pause(&cancel, backoff(&mut failures)).await {
                            return;
                        }
                    }
                    break 'watching;
                }
            };
            let mut events = 0usize;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(relist_at) => break 'watching,
                    ev = stream.next() => ev,
                };
                match next {
                    None => {
                        if events == 0
                            && started.elapsed() < SHORT_WATCH
                            && pause(&cancel, backoff(&mut failures)).await
                        {
                            return;
                        }
                        continue 'watching;
                    }
                    Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                        events += 1;
                        failures = MIN_BACKOFF;
                        rv = resource_version(&o).map_or(rv, str::to_string);
                        sink(Change::Upsert(typed(o)));
                    }
                    Some(Ok(WatchEvent::Deleted(o))) => {
                        events += 1;
                        failures = MIN_BACKOFF;
                        rv = resource_version(&o).map_or(rv, str::to_string);
                        sink(Change::Delete(typed(o)));
                    }
                    Some(Ok(WatchEvent::Bookmark {
                        resource_version, ..
                    })) => {
                        events += 1;
                        failures = MIN_BACKOFF;
                        rv = resource_version;
                    }
                    Some(Ok(WatchEvent::ErrorStatus(s))) if s.code == Some(410) => {
                        // Expired: list again (the list replaces what is known).
                        break 'watching;
                    }
                    Some(Ok(WatchEvent::ErrorStatus(s))) => {
                        sink(Change::Lost(format!(
                            "watching {}: the cluster sent an error: {}",
                            source.kind.plural,
                            s.message.unwrap_or_default()
                        )));
                        if pause(&cancel, backoff(&mut failures)).await {
                            return;
                        }
                        break 'watching;
                    }
                    Some(Ok(WatchEvent::ErrorOther(_))) => {
                        sink(Change::Lost(format!(
                            "watching {}: an error event that is not a Status",
                            source.kind.plural
                        )));
                        if pause(&cancel, backoff(&mut failures)).await {
                            return;
                        }
                        break 'watching;
                    }
                    Some(Err(e)) => {
                        sink(Change::Lost(format!(
                            "watching {}: {e}",
                            source.kind.plural
                        )));
                        if pause(&cancel, backoff(&mut failures)).await {
                            return;
                        }
                        break 'watching;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = MIN_BACKOFF;
        let waits: Vec<Duration> = (0..8).map(|_| backoff(&mut b)).collect();
        assert_eq!(waits[0], MIN_BACKOFF);
        assert_eq!(waits[1], MIN_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }
}
