//! The watches behind the reconciler's caches, per connected cluster:
//!
//! - always, one per placeable kind, of the objects carrying an owner label (drift: a
//!   placed object changed or deleted in the cluster wakes a round at once);
//! - for clusters some FederatedPolicy's remote peer selects, one of pods and one of
//!   namespaces (remote peers follow pods started, stopped or relabelled).
//!
//! Every watch goes through the cluster's tunnel as the controllers' service identity
//! (`ClusterClient`), and lives as long as that tunnel: the registry's events start them
//! when a tunnel is attached and stop them when it closes. The pod watches are started
//! and stopped by each round as policies change ([`Watchers::want_pods`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cattery_api::federation::{OWNER_LABEL, ResourceKind};
use tokio_util::sync::CancellationToken;

use super::cache::Caches;
use super::observe::dynamic;
use super::watch::{Source, reflect};
use crate::cluster_client::{ClusterClient, DynamicKind, ListParams};
use crate::registry::{ClusterEvent, Connection, Registry};

const PODS: DynamicKind = DynamicKind {
    api_version: "v1",
    kind: "Pod",
    plural: "pods",
    namespaced: true,
};
const NAMESPACES: DynamicKind = DynamicKind {
    api_version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    namespaced: false,
};

/// One connected cluster's watches.
struct Live {
    connection: Connection,
    /// Cancels the object watches (a child of the tunnel's `closed`).
    objects: CancellationToken,
    /// Cancels the pod and namespace watches, when running.
    pods: Option<CancellationToken>,
}

/// Starts and stops the watches; owns the caches they fill.
pub(crate) struct Watchers {
    caches: Arc<Caches>,
    live: Mutex<BTreeMap<String, Live>>,
}

impl Watchers {
    /// No watches yet; [`Watchers::follow`] starts them as tunnels come and go.
    pub(crate) fn new() -> Arc<Watchers> {
        Arc::new(Watchers {
            caches: Arc::new(Caches::default()),
            live: Mutex::new(BTreeMap::new()),
        })
    }

    /// What the watches know.
    pub(crate) fn caches(&self) -> &Arc<Caches> {
        &self.caches
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the registry's tunnel events until `shutdown`: each attached tunnel gets
    /// its object watches (and its pod watches if they were running on the tunnel
    /// before), each closed one loses them.
    pub(crate) async fn follow(
        self: Arc<Self>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
    ) {
        let mut events = registry.subscribe();
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => ev,
            };
            match ev {
                None => break,
                Some(ClusterEvent::Connected(c)) => self.connected(c),
                Some(ClusterEvent::Disconnected { name, tunnel_id }) => {
                    self.disconnected(&name, Some(tunnel_id))
                }
                Some(ClusterEvent::Removed { name }) => {
                    self.disconnected(&name, None);
                    self.caches.remove(&name);
                }
            }
        }
        for (_, live) in std::mem::take(&mut *self.lock()) {
            live.objects.cancel();
            if let Some(p) = live.pods {
                p.cancel();
            }
        }
    }

    fn connected(&self, connection: Connection) {
        let name = connection.name.clone();
        let mut live = self.lock();
        let had_pods = match live.remove(&name) {
            Some(old) => {
                old.objects.cancel();
                old.pods.inspect(CancellationToken::cancel).is_some()
            }
            None => false,
        };
        let objects = self.start_objects(&connection);
        let pods = had_pods.then(|| self.start_pods(&connection));
        live.insert(
            name,
            Live {
                connection,
                objects,
                pods,
            },
        );
    }

    /// The tunnel `tunnel_id` (any, when `None`) of `name` closed.
    fn disconnected(&self, name: &str, tunnel_id: Option<u64>) {
        let mut live = self.lock();
        if live
            .get(name)
            .is_some_and(|l| tunnel_id.is_none_or(|id| l.connection.tunnel_id == id))
        {
            let old = live.remove(name).expect("present");
            old.objects.cancel();
            self.caches.stop_objects(name);
            if let Some(p) = old.pods {
                p.cancel();
                self.caches.pods_disconnected(name);
            }
        }
    }

    fn start_objects(&self, connection: &Connection) -> CancellationToken {
        let cancel = connection.closed.child_token();
        let epoch = self.caches.start_objects(&connection.name);
        for kind in ResourceKind::ALL {
            let source = Source {
                kind: dynamic(kind),
                params: ListParams {
                    label_selector: Some(OWNER_LABEL.to_string()),
                    field_selector: None,
                },
            };
            let (caches, name) = (self.caches.clone(), connection.name.clone());
            tokio::spawn(reflect(
                ClusterClient::new(connection),
                source,
                cancel.clone(),
                move |ch| caches.objects_change(&name, epoch, kind, ch),
            ));
        }
        cancel
    }

    fn start_pods(&self, connection: &Connection) -> CancellationToken {
        let cancel = connection.closed.child_token();
        let epoch = self.caches.start_pods(&connection.name);
        for (kind, namespaces) in [(PODS, false), (NAMESPACES, true)] {
            let (caches, name) = (self.caches.clone(), connection.name.clone());
            tokio::spawn(reflect(
                ClusterClient::new(connection),
                Source {
                    kind,
                    params: ListParams::default(),
                },
                cancel.clone(),
                move |ch| caches.pods_change(&name, epoch, namespaces, ch),
            ));
        }
        cancel
    }

    /// Watches the pods of exactly the connected clusters in `clusters`; forgets the
    /// pods of every cluster not in it.
    pub(crate) fn want_pods(&self, clusters: &BTreeSet<String>) {
        let mut live = self.lock();
        for (name, l) in live.iter_mut() {
            match (clusters.contains(name), &l.pods) {
                (true, None) => l.pods = Some(self.start_pods(&l.connection)),
                (false, Some(p)) => {
                    p.cancel();
                    l.pods = None;
                    self.caches.drop_pods(name);
                }
                _ => {}
            }
        }
        self.caches.retain_pods(|name| clusters.contains(name));
    }
}
