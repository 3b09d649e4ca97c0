//! What the reconciler knows of each connected cluster, kept current by watches
//! (`watchers.rs`): the objects of the placeable kinds carrying an owner label, and, for
//! clusters a remote peer selects, the pods and namespaces.
//!
//! Every watch task writes with the epoch it was started with; restarting or stopping a
//! cluster's watches takes a new epoch, so a task still running for a closed tunnel can
//! never overwrite what its successor listed. Each change that alters what is known
//! wakes the reconciler ([`Caches::changed`]).
//!
//! Remote pods of a cluster whose tunnel went down are kept as last known for
//! [`STALE_PODS`] (the target clusters' policies keep admitting them, as they would if
//! the hub itself were down), then dropped, which narrows the rules. Pods of a cluster
//! whose first list has not finished are "pending" for at most [`SYNC_GRACE`]: the
//! reconciler does not re-render a policy that needs them in the meantime, so a hub
//! that just started does not briefly narrow every rule to nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use cattery_api::federation::{ObjectKey, ResourceKind};
use cattery_federation::RemotePod;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::remote_pods::{PodEntry, join, labels, pod_entry, pod_key};
use super::watch::Change;

/// How long the pods of a disconnected cluster are still rendered as they were last seen.
pub const STALE_PODS: Duration = Duration::from_secs(300);
/// Longest time a policy waits for the first list of a remote cluster's pods.
pub const SYNC_GRACE: Duration = Duration::from_secs(5);

/// One kind's owner-labelled objects.
#[derive(Default)]
struct KindCache {
    /// Whether the objects are complete (listed, and no event missed since).
    synced: bool,
    items: BTreeMap<ObjectKey, Value>,
}

struct Objects {
    epoch: u64,
    kinds: BTreeMap<ResourceKind, KindCache>,
}

struct Pods {
    epoch: u64,
    /// When the current watches started.
    since: Instant,
    pods_listed: bool,
    namespaces_listed: bool,
    /// Whether both were ever listed (the data is then at worst last known).
    ever_synced: bool,
    /// Set while the cluster's tunnel is down.
    disconnected_since: Option<Instant>,
    /// The same moment as wall-clock time (RFC 3339), for the policies' status.
    disconnected_at: Option<String>,
    pods: BTreeMap<(String, String), PodEntry>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Default)]
struct ClusterCache {
    objects: Option<Objects>,
    pods: Option<Pods>,
}

#[derive(Default)]
struct Inner {
    next_epoch: u64,
    clusters: BTreeMap<String, ClusterCache>,
}

impl Inner {
    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }
}

/// An object the reconciler wrote, recorded at once so the round right after it does
/// not act on what the watch has not delivered yet.
#[derive(Clone, Debug)]
pub(crate) enum Written {
    /// Created or applied: the object as the cluster stored it.
    Stored(Value),
    /// Deleted (or found already gone).
    Deleted(ObjectKey),
}

/// The remote pods a round may render, for the clusters asked about.
#[derive(Clone, Debug, Default)]
pub(crate) struct RemoteView {
    /// Pods by cluster (what the planner takes as `remote_pods`).
    pub pods: BTreeMap<String, Vec<RemotePod>>,
    /// Clusters whose first list is still running: a policy needing them waits.
    pub pending: BTreeSet<String>,
}

/// What the hub knows of a remote cluster's pods, for the policies' status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Its pods are being watched through a tunnel that is up.
    Watched,
    /// Its tunnel closed at `since` (RFC 3339): the pods are rendered as last seen until
    /// [`STALE_PODS`] after that, then dropped (`stale`).
    LastSeen { since: String, stale: bool },
    /// Its pods were never listed since the hub started: peers naming it match nothing.
    Never,
}

/// The caches of every cluster.
#[derive(Default)]
pub(crate) struct Caches {
    inner: Mutex<Inner>,
    changed: Notify,
}

fn has_owner_label(obj: &Value) -> bool {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(cattery_api::federation::OWNER_LABEL))
        .is_some()
}

impl Caches {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when something known changed since the last time it resolved.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }

    fn wake(&self) {
        self.changed.notify_one();
    }

    /// Starts over `cluster`'s objects (a new tunnel): nothing is known until every kind
    /// is listed. Returns the epoch its watch tasks write with.
    pub(crate) fn start_objects(&self, cluster: &str) -> u64 {
        let mut inner = self.lock();
        let epoch = inner.epoch();
        let kinds = ResourceKind::ALL
            .iter()
            .map(|k| (*k, KindCache::default()))
            .collect();
        inner.clusters.entry(cluster.into()).or_default().objects = Some(Objects { epoch, kinds });
        // No wake: nothing is known yet; the lists wake a round when they are done.
        epoch
    }

    /// Forgets `cluster`'s objects (its tunnel closed).
    pub(crate) fn stop_objects(&self, cluster: &str) {
        if let Some(c) = self.lock().clusters.get_mut(cluster) {
            c.objects = None;
        }
        self.wake();
    }

    /// A change of `kind`'s objects reported by a watch task of `epoch`.
    pub(crate) fn objects_change(&self, cluster: &str, epoch: u64, kind: ResourceKind, ch: Change) {
        let mut inner = self.lock();
        let Some(objects) = inner
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.objects.as_mut())
            .filter(|o| o.epoch == epoch)
        else {
            return;
        };
        let k = objects.kinds.entry(kind).or_default();
        let changed = match ch {
            Change::Listed(items) => {
                let items: BTreeMap<ObjectKey, Value> = items
                    .into_iter()
                    .filter(has_owner_label)
                    .filter_map(|o| Some((ObjectKey::of(&o)?, o)))
                    .collect();
                let changed = !k.synced || k.items != items;
                k.items = items;
                k.synced = true;
                changed
            }
            Change::Upsert(o) => match ObjectKey::of(&o) {
                Some(key) if has_owner_label(&o) => k.items.insert(key, o.clone()) != Some(o),
                Some(key) => k.items.remove(&key).is_some(),
                None => false,
            },
            Change::Delete(o) => {
                ObjectKey::of(&o).is_some_and(|key| k.items.remove(&key).is_some())
            }
            Change::Lost(why) => {
                tracing::debug!(cluster, "federation: {why}");
                std::mem::replace(&mut k.synced, false)
            }
        };
        drop(inner);
        if changed {
            self.wake();
        }
    }

    /// Records what the reconciler wrote in `cluster`, if its objects are being watched.
    pub(crate) fn wrote(&self, cluster: &str, w: Written) {
        let mut inner = self.lock();
        let Some(objects) = inner
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.objects.as_mut())
        else {
            return;
        };
        match w {
            Written::Stored(o) => {
                if let Some(key) = ObjectKey::of(&o).filter(|_| has_owner_label(&o)) {
                    objects
                        .kinds
                        .entry(key.kind)
                        .or_default()
                        .items
                        .insert(key, o);
                }
            }
            Written::Deleted(key) => {
                if let Some(k) = objects.kinds.get_mut(&key.kind) {
                    k.items.remove(&key);
                }
            }
        }
    }

    /// `cluster`'s owner-labelled objects, or `None` while any kind is not complete.
    pub(crate) fn objects(&self, cluster: &str) -> Option<Vec<Value>> {
        let inner = self.lock();
        let objects = inner.clusters.get(cluster)?.objects.as_ref()?;
        if !objects.kinds.values().all(|k| k.synced) {
            return None;
        }
        Some(
            objects
                .kinds
                .values()
                .flat_map(|k| k.items.values().cloned())
                .collect(),
        )
    }

    /// Starts (or restarts, on a new tunnel) watching `cluster`'s pods; what was known
    /// stays as last known until the new lists replace it. Returns the tasks' epoch.
    pub(crate) fn start_pods(&self, cluster: &str) -> u64 {
        let mut inner = self.lock();
        let epoch = inner.epoch();
        let c = inner.clusters.entry(cluster.into()).or_default();
        match &mut c.pods {
            Some(p) => {
                p.epoch = epoch;
                p.since = Instant::now();
                p.pods_listed = false;
                p.namespaces_listed = false;
                p.disconnected_since = None;
                p.disconnected_at = None;
            }
            None => {
                c.pods = Some(Pods {
                    epoch,
                    since: Instant::now(),
                    pods_listed: false,
                    namespaces_listed: false,
                    ever_synced: false,
                    disconnected_since: None,
                    disconnected_at: None,
                    pods: BTreeMap::new(),
                    namespaces: BTreeMap::new(),
                })
            }
        }
        epoch
    }

    /// `cluster`'s tunnel closed: its pods stay as last known (see [`STALE_PODS`]) and
    /// the tasks of the closed tunnel can no longer write.
    pub(crate) fn pods_disconnected(&self, cluster: &str) {
        let mut inner = self.lock();
        let epoch = inner.epoch();
        if let Some(p) = inner
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.pods.as_mut())
        {
            p.epoch = epoch;
            p.disconnected_since.get_or_insert_with(Instant::now);
            p.disconnected_at
                .get_or_insert_with(cattery_store::now_rfc3339);
        }
        drop(inner);
        self.wake();
    }

    /// Forgets `cluster`'s pods (no peer selects it any more).
    pub(crate) fn drop_pods(&self, cluster: &str) {
        if let Some(c) = self.lock().clusters.get_mut(cluster) {
            c.pods = None;
        }
    }

    /// Forgets the pods of every cluster `keep` refuses.
    pub(crate) fn retain_pods(&self, keep: impl Fn(&str) -> bool) {
        for (name, c) in self.lock().clusters.iter_mut() {
            if !keep(name) {
                c.pods = None;
            }
        }
    }

    /// Forgets everything about `cluster` (it was removed).
    pub(crate) fn remove(&self, cluster: &str) {
        self.lock().clusters.remove(cluster);
        self.wake();
    }

    /// A change of `cluster`'s pods (`namespaces` false) or namespaces (true) reported by
    /// a watch task of `epoch`.
    pub(crate) fn pods_change(&self, cluster: &str, epoch: u64, namespaces: bool, ch: Change) {
        let mut inner = self.lock();
        let Some(p) = inner
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.pods.as_mut())
            .filter(|p| p.epoch == epoch)
        else {
            return;
        };
        let changed = if namespaces {
            namespaces_change(p, ch)
        } else {
            pod_change(p, ch)
        };
        if p.pods_listed && p.namespaces_listed && !p.ever_synced {
            p.ever_synced = true;
        }
        drop(inner);
        if changed {
            self.wake();
        }
    }

    /// What is known of `cluster`'s pods as of `now`.
    pub(crate) fn seen(&self, cluster: &str, now: Instant) -> Known {
        let inner = self.lock();
        let Some(p) = inner.clusters.get(cluster).and_then(|c| c.pods.as_ref()) else {
            return Known::Never;
        };
        match (&p.disconnected_since, &p.disconnected_at) {
            (Some(t), Some(at)) if p.ever_synced => Known::LastSeen {
                since: at.clone(),
                stale: now.saturating_duration_since(*t) >= STALE_PODS,
            },
            (Some(_), _) => Known::Never,
            (None, _) => Known::Watched,
        }
    }

    /// The remote pods of `clusters` as of `now` (see the module doc).
    pub(crate) fn remote(&self, clusters: &BTreeSet<String>, now: Instant) -> RemoteView {
        let inner = self.lock();
        let mut view = RemoteView::default();
        for name in clusters {
            let Some(p) = inner.clusters.get(name).and_then(|c| c.pods.as_ref()) else {
                continue;
            };
            if p.disconnected_since
                .is_some_and(|t| now.saturating_duration_since(t) >= STALE_PODS)
            {
                continue;
            }
            if !p.ever_synced {
                if p.disconnected_since.is_none()
                    && now.saturating_duration_since(p.since) < SYNC_GRACE
                {
                    view.pending.insert(name.clone());
                }
                continue;
            }
            view.pods.insert(name.clone(), join(&p.pods, &p.namespaces));
        }
        view
    }
}

fn pod_change(p: &mut Pods, ch: Change) -> bool {
    match ch {
        Change::Listed(items) => {
            let pods: BTreeMap<(String, String), PodEntry> = items
                .iter()
                .filter_map(|o| Some((pod_key(o)?, pod_entry(o)?)))
                .collect();
            let changed = !p.pods_listed || p.pods != pods;
            p.pods = pods;
            p.pods_listed = true;
            changed
        }
        Change::Upsert(o) => match (pod_key(&o), pod_entry(&o)) {
            (Some(key), Some(e)) => p.pods.insert(key, e.clone()) != Some(e),
            (Some(key), None) => p.pods.remove(&key).is_some(),
            _ => false,
        },
        Change::Delete(o) => pod_key(&o).is_some_and(|key| p.pods.remove(&key).is_some()),
        Change::Lost(why) => {
            // Keep the last known pods until the list that follows replaces them.
            tracing::debug!("federation: remote pods: {why}");
            false
        }
    }
}

fn namespaces_change(p: &mut Pods, ch: Change) -> bool {
    let name = |o: &Value| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match ch {
        Change::Listed(items) => {
            let namespaces: BTreeMap<String, BTreeMap<String, String>> = items
                .iter()
                .filter_map(|o| Some((name(o)?, labels(o))))
                .collect();
            let changed = !p.namespaces_listed || p.namespaces != namespaces;
            p.namespaces = namespaces;
            p.namespaces_listed = true;
            changed
        }
        Change::Upsert(o) => match name(&o) {
            Some(n) => {
                let l = labels(&o);
                p.namespaces.insert(n, l.clone()) != Some(l)
            }
            None => false,
        },
        Change::Delete(o) => name(&o).is_some_and(|n| p.namespaces.remove(&n).is_some()),
        Change::Lost(why) => {
            tracing::debug!("federation: remote namespaces: {why}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
               "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})
    }

    fn ns() -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}})
    }

    fn ips(view: &RemoteView, cluster: &str) -> Vec<String> {
        let mut out: Vec<String> = view.pods[cluster]
            .iter()
            .flat_map(|p| p.ips.iter().map(|ip| ip.to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn remote_pods_follow_events_and_age_out_after_a_disconnect() {
        let c = Caches::default();
        let b: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(c.seen("b", Instant::now()), Known::Never);
        let epoch = c.start_pods("b");
        assert_eq!(
            c.remote(&b, Instant::now()).pending,
            b,
            "first list pending"
        );
        c.pods_change(
            "b",
            epoch,
            false,
            Change::Listed(vec![pod("p1", "client", "10.2.0.2")]),
        );
        assert!(
            c.remote(&b, Instant::now()).pending.contains("b"),
            "namespaces not listed"
        );
        c.pods_change("b", epoch, true, Change::Listed(vec![ns()]));
        let view = c.remote(&b, Instant::now());
        assert!(view.pending.is_empty());
        assert_eq!(ips(&view, "b"), vec!["10.2.0.2"]);

        c.pods_change(
            "b",
            epoch,
            false,
            Change::Upsert(pod("p2", "client", "10.2.0.3")),
        );
        c.pods_change(
            "b",
            epoch,
            false,
            Change::Delete(pod("p1", "client", "10.2.0.2")),
        );
        assert_eq!(ips(&c.remote(&b, Instant::now()), "b"), vec!["10.2.0.3"]);
        // Stopping (no longer Running) takes it out.
        let mut done = pod("p2", "client", "10.2.0.3");
        done["status"]["phase"] = json!("Succeeded");
        c.pods_change("b", epoch, false, Change::Upsert(done));
        assert_eq!(
            ips(&c.remote(&b, Instant::now()), "b"),
            Vec::<String>::new()
        );
        c.pods_change(
            "b",
            epoch,
            false,
            Change::Upsert(pod("p3", "client", "10.2.0.4")),
        );

        // Disconnected: kept as last known, the old tasks can no longer write, and after
        // STALE_PODS the addresses are gone.
        assert_eq!(c.seen("b", Instant::now()), Known::Watched);
        c.pods_disconnected("b");
        c.pods_change(
            "b",
            epoch,
            false,
            Change::Upsert(pod("p4", "client", "10.2.0.5")),
        );
        assert_eq!(ips(&c.remote(&b, Instant::now()), "b"), vec!["10.2.0.4"]);
        let Known::LastSeen { since, stale } = c.seen("b", Instant::now()) else {
            panic!("last seen after a disconnect");
        };
        assert!(!stale && since.ends_with('Z'), "{since}");
        let view = c.remote(&b, Instant::now() + STALE_PODS);
        assert!(view.pods.is_empty() && view.pending.is_empty(), "{view:?}");
        assert_eq!(
            c.seen("b", Instant::now() + STALE_PODS),
            Known::LastSeen { since, stale: true }
        );

        // Reconnected: last known again until the new list replaces it.
        let epoch2 = c.start_pods("b");
        assert_eq!(c.seen("b", Instant::now()), Known::Watched);
        assert_eq!(ips(&c.remote(&b, Instant::now()), "b"), vec!["10.2.0.4"]);
        c.pods_change(
            "b",
            epoch2,
            false,
            Change::Listed(vec![pod("p5", "client", "10.2.0.6")]),
        );
        assert_eq!(ips(&c.remote(&b, Instant::now()), "b"), vec!["10.2.0.6"]);
    }

    #[test]
    fn a_first_list_that_never_finishes_stops_being_pending() {
        let c = Caches::default();
        let b: BTreeSet<String> = ["b".to_string()].into();
        c.start_pods("b");
        assert!(c.remote(&b, Instant::now()).pending.contains("b"));
        let view = c.remote(&b, Instant::now() + SYNC_GRACE);
        assert!(view.pending.is_empty() && view.pods.is_empty(), "{view:?}");
    }

    fn np(name: &str, owner: Option<&str>) -> Value {
        let mut o = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": name, "namespace": "shop"}, "spec": {}});
        if let Some(owner) = owner {
            o["metadata"]["labels"] = json!({"cattery.dev/federated-policy": owner});
        }
        o
    }

    #[test]
    fn objects_are_known_once_every_kind_is_listed_and_until_a_watch_is_lost() {
        let c = Caches::default();
        let epoch = c.start_objects("a");
        assert_eq!(c.objects("a"), None);
        for k in ResourceKind::ALL {
            let items = if k == ResourceKind::NetworkPolicy {
                vec![np("web", Some("p")), np("theirs", None)]
            } else {
                vec![]
            };
            c.objects_change("a", epoch, k, Change::Listed(items));
        }
        assert_eq!(
            c.objects("a"),
            Some(vec![np("web", Some("p"))]),
            "owned only"
        );
        // Someone removes our label: no longer ours.
        c.objects_change(
            "a",
            epoch,
            ResourceKind::NetworkPolicy,
            Change::Upsert(np("web", None)),
        );
        assert_eq!(c.objects("a"), Some(vec![]));
        c.wrote("a", Written::Stored(np("web2", Some("p"))));
        assert_eq!(c.objects("a"), Some(vec![np("web2", Some("p"))]));
        c.wrote(
            "a",
            Written::Deleted(ObjectKey::of(&np("web2", Some("p"))).unwrap()),
        );
        assert_eq!(c.objects("a"), Some(vec![]));
        c.objects_change(
            "a",
            epoch,
            ResourceKind::GlobalNetworkSet,
            Change::Lost("x".into()),
        );
        assert_eq!(c.objects("a"), None, "a lost watch is not complete");
        // A new tunnel: the old epoch's writes are ignored.
        let epoch2 = c.start_objects("a");
        c.objects_change(
            "a",
            epoch,
            ResourceKind::NetworkPolicy,
            Change::Listed(vec![]),
        );
        assert_eq!(c.objects("a"), None);
        for k in ResourceKind::ALL {
            c.objects_change("a", epoch2, k, Change::Listed(vec![]));
        }
        assert_eq!(c.objects("a"), Some(vec![]));
    }
}
