//! Keeping an in-memory view (the compiled RBAC policy, the token hashes) current with the
//! resource store.
//!
//! A [`Follower`] remembers the store's resourceVersion its view was built at. Before the
//! view is read, [`Follower::refresh`] compares it with the store's latest (a watch-channel
//! read, no lock), and when writes were committed since, looks at their events and
//! rebuilds the view if one touched a kind it follows. A write is published to the channel
//! before the writing request is answered, so the very next request sees it: a binding
//! applied with kubectl grants access on the next call, and deleting it revokes it, with
//! no polling interval in between. [`Follower::run`] does the same eagerly in the
//! background, so the first request after a change does not pay for the rebuild.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::kinds::HubKind;
use crate::api::resources::HubStore;

/// Tracks which of the store's writes a view has seen.
pub(crate) struct Follower {
    store: Arc<HubStore>,
    latest: watch::Receiver<u64>,
    seen: AtomicU64,
    rebuilding: Mutex<()>,
}

impl Follower {
    /// A follower whose view was just built from `store` (at its current resourceVersion).
    pub(crate) fn new(store: Arc<HubStore>) -> Follower {
        let latest = store.subscribe();
        let seen = AtomicU64::new(*latest.borrow());
        Follower {
            store,
            latest,
            seen,
            rebuilding: Mutex::new(()),
        }
    }

    /// The store the view is built from.
    pub(crate) fn store(&self) -> &HubStore {
        &self.store
    }

    /// Calls `rebuild` when a write to an object whose kind `follows` has been committed
    /// since the last call (or when the history no longer says, after a long gap).
    /// Concurrent callers wait for one rebuild rather than each doing one.
    pub(crate) fn refresh(&self, follows: fn(HubKind) -> bool, rebuild: impl FnOnce(&HubStore)) {
        if self.seen.load(Ordering::Acquire) >= *self.latest.borrow() {
            return;
        }
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let seen = self.seen.load(Ordering::Acquire);
        // Read before looking at the events: a write after this point is seen next time.
        let latest = *self.latest.borrow();
        if seen >= latest {
            return;
        }
        let relevant = match self.store.events_after(seen) {
            Ok(events) => events.iter().any(|e| follows(e.res)),
            Err(_) => true,
        };
        if relevant {
            rebuild(&self.store);
        }
        self.seen.store(latest, Ordering::Release);
    }

    /// Calls `refresh` after every committed write until `stop`.
    pub(crate) async fn run(&self, stop: CancellationToken, refresh: impl Fn()) {
        let mut changes = self.store.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
            refresh();
        }
    }
}
