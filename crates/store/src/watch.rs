//! Watches: the sequence of events a Kubernetes watch delivers, independent of any wire
//! format (the HTTP layer frames them as `{"type": ..., "object": ...}` lines).
//!
//! Start points follow Kubernetes: [`WatchStart::Snapshot`] (`resourceVersion` unset or
//! `"0"`, or `sendInitialEvents=true`) yields a synthetic ADDED for every current object,
//! optionally followed by a BOOKMARK marking the end of the initial events, then live
//! events; [`WatchStart::After`] (`resourceVersion=N`) yields every event after N in order,
//! or [`StoreError::Expired`] when N has left the history.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::store::{EventType, Filter, Kind, Obj, Store, StoreError};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED for the current state, then live events; with
    /// `initial_events_end`, a BOOKMARK after the synthetic events.
    Snapshot {
        /// Send the `k8s.io/initial-events-end` bookmark.
        initial_events_end: bool,
    },
    /// Every event after this resourceVersion.
    After(u64),
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// ADDED, MODIFIED or DELETED, with the object as the watcher should see it.
    Object(EventType, Obj),
    /// The watch has seen everything up to `rv`.
    Bookmark {
        /// The resourceVersion reached.
        rv: u64,
        /// Whether this bookmark ends the initial (synthetic) events.
        initial_events_end: bool,
    },
}

/// A watch on a [`Store`]. [`Watcher::next`] is cancel-safe: it can be used in
/// `tokio::select!` next to timers and client disconnects without losing events.
pub struct Watcher<'s, K> {
    store: &'s Store<K>,
    filter: Filter<K>,
    cursor: u64,
    queue: VecDeque<WatchEvent>,
    changes: watch::Receiver<u64>,
}

impl<K: Kind> Store<K> {
    /// Starts a watch of what `filter` selects.
    pub fn watch(&self, filter: Filter<K>, start: WatchStart) -> Watcher<'_, K> {
        let changes = self.subscribe();
        let mut queue = VecDeque::new();
        let cursor = match start {
            WatchStart::After(rv) => rv,
            WatchStart::Snapshot { initial_events_end } => {
                let (objects, rv) = self.snapshot(&filter);
                queue.extend(
                    objects
                        .into_iter()
                        .map(|o| WatchEvent::Object(EventType::Added, o)),
                );
                if initial_events_end {
                    queue.push_back(WatchEvent::Bookmark {
                        rv,
                        initial_events_end: true,
                    });
                }
                rv
            }
        };
        Watcher {
            store: self,
            filter,
            cursor,
            queue,
            changes,
        }
    }
}

impl<K: Kind> Watcher<'_, K> {
    /// The resourceVersion of the last event taken from the store (what a BOOKMARK
    /// reports, and where a watcher resumes).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// What the watch selects.
    pub fn filter(&self) -> &Filter<K> {
        &self.filter
    }

    /// A BOOKMARK at the current cursor.
    pub fn bookmark(&self) -> WatchEvent {
        WatchEvent::Bookmark {
            rv: self.cursor,
            initial_events_end: false,
        }
    }

    /// The next event, waiting for a write if there is none. After an `Err` (the start
    /// resourceVersion is too old) the watch is over.
    pub async fn next(&mut self) -> Result<WatchEvent, StoreError> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            self.changes.borrow_and_update();
            for ev in self.store.events_after(self.cursor)? {
                if let Some((kind, obj)) = self.filter.view(&ev) {
                    self.queue.push_back(WatchEvent::Object(kind, obj));
                }
                self.cursor = ev.rv;
            }
            if self.queue.is_empty() {
                // The sender lives in the store, which outlives this borrow.
                let _ = self.changes.changed().await;
            }
        }
    }

    /// The events available now, without waiting (tests, and draining after a burst).
    pub fn try_next(&mut self) -> Result<Option<WatchEvent>, StoreError> {
        if self.queue.is_empty() {
            for ev in self.store.events_after(self.cursor)? {
                if let Some((kind, obj)) = self.filter.view(&ev) {
                    self.queue.push_back(WatchEvent::Object(kind, obj));
                }
                self.cursor = ev.rv;
            }
        }
        Ok(self.queue.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{T, obj};
    use serde_json::json;
    use std::time::Duration;

    fn name(ev: &WatchEvent) -> (EventType, String) {
        match ev {
            WatchEvent::Object(k, o) => (*k, o["metadata"]["name"].as_str().unwrap().into()),
            WatchEvent::Bookmark { .. } => (EventType::Bookmark, String::new()),
        }
    }

    #[tokio::test]
    async fn snapshot_then_live_events() {
        let s = Store::<T>::in_memory();
        s.create(T::Widget, Some("a"), obj("old", json!({})))
            .unwrap();
        let mut w = s.watch(
            Filter::all(T::Widget),
            WatchStart::Snapshot {
                initial_events_end: true,
            },
        );
        assert_eq!(
            name(&w.next().await.unwrap()),
            (EventType::Added, "old".into())
        );
        assert_eq!(
            w.next().await.unwrap(),
            WatchEvent::Bookmark {
                rv: 1,
                initial_events_end: true
            }
        );
        let writer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.create(T::Gadget, Some("a"), obj("other-type", json!({})))
                .unwrap();
            s.create(T::Widget, Some("a"), obj("new", json!({})))
                .unwrap();
        };
        let (ev, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(5), w.next()),
            writer
        );
        assert_eq!(
            name(&ev.unwrap().unwrap()),
            (EventType::Added, "new".into())
        );
        assert_eq!(w.cursor(), 3);
    }

    #[tokio::test]
    async fn after_replays_and_too_old_is_expired() {
        let s = Store::<T>::with_history_limit(2);
        for i in 0..4 {
            s.create(T::Widget, Some("a"), obj(&format!("w{i}"), json!({})))
                .unwrap();
        }
        let mut w = s.watch(Filter::all(T::Widget), WatchStart::After(2));
        assert_eq!(name(&w.next().await.unwrap()).1, "w2");
        assert_eq!(name(&w.next().await.unwrap()).1, "w3");
        assert!(w.try_next().unwrap().is_none());
        let mut old = s.watch(Filter::all(T::Widget), WatchStart::After(1));
        let err = old.next().await.unwrap_err();
        assert_eq!((err.code(), err.reason()), (410, "Expired"));
    }
}
