//! The registry of managed clusters: persisted records plus the live state of each tunnel.
//!
//! It is the single place that decides whether a certificate is honoured (it implements
//! [`PeerCheck`] for the tunnel listener), which tunnel serves a cluster, and what the
//! `ManagedClusterConnected` condition says.
//!
//! It also publishes what happens to tunnels as [`ClusterEvent`]s, so work that runs per
//! connected cluster (the log puller, controllers) subscribes ([`Registry::subscribe`])
//! instead of being started by whoever accepted the tunnel. Events are sent under the
//! registry's lock, so their order is the order of the state changes; a subscriber that
//! falls behind the bounded channel is resynchronised from the registry's current state
//! (see [`ClusterEvents`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use cattery_api::{
    API_VERSION, CONDITION_CONNECTED, Condition, ConditionStatus, ManagedCluster,
    ManagedClusterSpec, ManagedClusterStatus, ObjectMeta, now_rfc3339,
};
use cattery_tunnel::session::Sender;
use cattery_tunnel::tls::PeerCheck;
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::{ClusterRecord, StateStore, StoreError};

/// How long a cluster stays `Unknown` after the management plane starts before it is
/// reported `False`.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(60);
/// How long a refused second agent keeps being reported in the condition.
pub const CONFLICT_MEMORY: Duration = Duration::from_secs(180);

/// Condition type set on a cluster whose agent presented a log stream id that another
/// cluster owns (see `cattery_logstore::LogStoreError::StreamOwned`).
pub const CONDITION_LOGS_STREAM_REFUSED: &str = "LogsStreamRefused";

/// Events buffered per subscriber before it counts as lagging (and is resynchronised).
pub const EVENT_BUFFER: usize = 1024;

/// A cluster's live tunnel, as subscribers see it.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Cluster name.
    pub name: String,
    /// Identifies this tunnel among the cluster's successive tunnels.
    pub tunnel_id: u64,
    /// Sends requests down the tunnel.
    pub sender: Sender<Body>,
    /// Cancelled when this tunnel closes.
    pub closed: CancellationToken,
}

/// What happened to a cluster's tunnel.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// A tunnel was attached (replacing any earlier one of the same cluster, which is
    /// reported `Disconnected` first).
    Connected(Connection),
    /// The cluster's tunnel `tunnel_id` is gone; the cluster is still registered.
    Disconnected {
        /// Cluster name.
        name: String,
        /// The tunnel that ended.
        tunnel_id: u64,
    },
    /// The cluster was deleted (its tunnel, if any, is closed).
    Removed {
        /// Cluster name.
        name: String,
    },
}

/// A live tunnel to one cluster's agent.
pub struct Tunnel {
    /// Sends requests down the tunnel.
    pub sender: Sender<Body>,
    /// When it was established.
    pub connected_since: String,
    /// The agent's source address.
    pub remote: SocketAddr,
    /// Agent version it reported.
    pub agent_version: String,
    /// Kubernetes version it reported.
    pub kubernetes_version: Option<String>,
    /// Cancelling closes the tunnel's connection.
    pub closer: CancellationToken,
}

/// Why a cluster cannot be reached right now.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No such cluster.
    #[error("managedclusters {0:?} not found")]
    NotFound(String),
    /// Registered but without a live tunnel.
    #[error("cluster {name:?} is not connected: {message}")]
    NotConnected {
        /// Cluster name.
        name: String,
        /// The condition's message.
        message: String,
    },
}

/// Why a new tunnel was not attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The certificate stopped being current during the handshake.
    #[error("certificate of cluster {0:?} is no longer current")]
    NotCurrent(String),
    /// Another agent with the same certificate holds a live tunnel.
    #[error(
        "another agent with the certificate of cluster {cluster:?} is connected from {existing}; only one agent per cluster may connect"
    )]
    Conflict {
        /// Cluster name.
        cluster: String,
        /// Address of the agent that keeps the tunnel.
        existing: SocketAddr,
    },
}

#[derive(Debug, Clone)]
enum CertState {
    Current(String),
    Revoked { cluster: String, reason: String },
}

struct Entry {
    record: ClusterRecord,
    tunnel: Option<(u64, Tunnel)>,
    condition: Condition,
    conflict: Option<(Instant, String)>,
    last_logs: Option<String>,
    /// The latest refused log stream, as a `LogsStreamRefused` condition (kept until restart).
    stream_refused: Option<Condition>,
}

struct Inner {
    clusters: BTreeMap<String, Entry>,
    certs: HashMap<String, CertState>,
    next_tunnel_id: u64,
}

impl Inner {
    fn connections(&self) -> Vec<Connection> {
        self.clusters
            .iter()
            .filter_map(|(name, e)| {
                e.tunnel.as_ref().map(|(id, t)| Connection {
                    name: name.clone(),
                    tunnel_id: *id,
                    sender: t.sender.clone(),
                    closed: t.closer.clone(),
                })
            })
            .collect()
    }
}

/// Clusters, certificates and tunnels.
pub struct Registry {
    store: Arc<dyn StateStore>,
    inner: Mutex<Inner>,
    started: Instant,
    events: broadcast::Sender<ClusterEvent>,
}

/// A subscription to [`ClusterEvent`]s ([`Registry::subscribe`]).
///
/// It first reports every cluster connected at the time of subscribing, then every event
/// in order. If the subscriber falls more than [`EVENT_BUFFER`] events behind, the
/// missed events are replaced by the difference between what it was last told and the
/// registry's current state (`Disconnected`/`Removed` for tunnels gone, `Connected` for
/// tunnels it has not seen), so it never misses a cluster and never keeps a dead one.
pub struct ClusterEvents {
    registry: Arc<Registry>,
    rx: broadcast::Receiver<ClusterEvent>,
    /// Live tunnels as last reported to the subscriber: name -> tunnel id.
    known: HashMap<String, u64>,
    queue: VecDeque<ClusterEvent>,
}

impl ClusterEvents {
    /// The next event. `None` only if the channel closed, which cannot happen while this
    /// subscription holds the registry; callers stop on their own shutdown signal.
    pub async fn recv(&mut self) -> Option<ClusterEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                self.track(&ev);
                return Some(ev);
            }
            match self.rx.recv().await {
                Ok(ev) => {
                    self.track(&ev);
                    return Some(ev);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "cluster event subscriber lagged; resynchronising"
                    );
                    self.resync();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn track(&mut self, ev: &ClusterEvent) {
        match ev {
            ClusterEvent::Connected(c) => {
                self.known.insert(c.name.clone(), c.tunnel_id);
            }
            ClusterEvent::Disconnected { name, tunnel_id } => {
                if self.known.get(name) == Some(tunnel_id) {
                    self.known.remove(name);
                }
            }
            ClusterEvent::Removed { name } => {
                self.known.remove(name);
            }
        }
    }

    /// Replaces the receiver and queues the difference to the current state, atomically
    /// with respect to new events (they are sent under the same lock).
    fn resync(&mut self) {
        let inner = self.registry.lock();
        self.rx = self.registry.events.subscribe();
        self.queue.clear();
        let live: HashMap<String, Connection> = inner
            .connections()
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let mut known: Vec<_> = self.known.iter().map(|(n, id)| (n.clone(), *id)).collect();
        known.sort();
        for (name, tunnel_id) in known {
            match live.get(&name) {
                Some(c) if c.tunnel_id == tunnel_id => {}
                _ if !inner.clusters.contains_key(&name) => {
                    self.queue.push_back(ClusterEvent::Removed { name })
                }
                _ => self
                    .queue
                    .push_back(ClusterEvent::Disconnected { name, tunnel_id }),
            }
        }
        let mut new: Vec<&Connection> = live
            .values()
            .filter(|c| self.known.get(&c.name) != Some(&c.tunnel_id))
            .collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        for c in new {
            self.queue.push_back(ClusterEvent::Connected(c.clone()));
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn condition(status: ConditionStatus, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: CONDITION_CONNECTED.into(),
        status,
        last_transition_time: now_rfc3339(),
        reason: reason.into(),
        message: message.into(),
    }
}

/// Brings one entry's condition up to date with time: an agent that has not come back
/// within the grace after a restart is reported disconnected, and a remembered agent
/// conflict is forgotten. Done on each read of that entry, so reading one cluster costs
/// O(1) whatever the fleet's size (reading all of them, each, was O(n²) at 10,000).
fn age_condition(e: &mut Entry, waited: Duration) {
    if e.condition.status == ConditionStatus::Unknown && waited >= RECONNECT_GRACE {
        set_condition(
            e,
            ConditionStatus::False,
            "AgentNotConnected",
            format!(
                "the agent has not reconnected within {}s of the management plane starting",
                RECONNECT_GRACE.as_secs()
            ),
        );
    }
    if e.conflict
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() > CONFLICT_MEMORY)
    {
        e.conflict = None;
        if e.tunnel.is_some() && e.condition.reason == "ConflictingAgents" {
            set_condition(
                e,
                ConditionStatus::True,
                "TunnelConnected",
                "the agent's tunnel is up",
            );
        }
    }
}

fn set_condition(
    entry: &mut Entry,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
) {
    let mut c = condition(status, reason, message);
    if entry.condition.status == status {
        c.last_transition_time = entry.condition.last_transition_time.clone();
    }
    entry.condition = c;
}

impl Registry {
    /// Loads clusters and the certificate index from `store`. Every cluster starts
    /// `Unknown`: its agent may be reconnecting right now.
    pub fn open(store: Arc<dyn StateStore>) -> Result<Registry, StoreError> {
        let mut certs = HashMap::new();
        for c in store.certificates()? {
            let state = match c.revoked {
                None => CertState::Current(c.cluster),
                Some(reason) => CertState::Revoked {
                    cluster: c.cluster,
                    reason,
                },
            };
            certs.insert(c.fingerprint, state);
        }
        let clusters = store
            .list_clusters()?
            .into_iter()
            .map(|record| {
                let entry = Entry {
                    record,
                    tunnel: None,
                    condition: condition(
                        ConditionStatus::Unknown,
                        "ManagementPlaneStarted",
                        "the management plane started; waiting for the agent to reconnect",
                    ),
                    conflict: None,
                    last_logs: None,
                    stream_refused: None,
                };
                (entry.record.name.clone(), entry)
            })
            .collect();
        Ok(Registry {
            store,
            inner: Mutex::new(Inner {
                clusters,
                certs,
                next_tunnel_id: 1,
            }),
            started: Instant::now(),
            events: broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// Subscribes to [`ClusterEvent`]s, starting with a `Connected` for every cluster
    /// connected now.
    pub fn subscribe(self: &Arc<Self>) -> ClusterEvents {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let queue = inner
            .connections()
            .into_iter()
            .map(ClusterEvent::Connected)
            .collect();
        drop(inner);
        ClusterEvents {
            registry: self.clone(),
            rx,
            known: HashMap::new(),
            queue,
        }
    }

    /// Sends `ev` to subscribers; called with the lock held so events are ordered like
    /// the state changes.
    fn publish(&self, _held: &Inner, ev: ClusterEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(ev);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a cluster whose certificate has just been issued.
    pub fn create(&self, record: ClusterRecord) -> Result<ManagedCluster, StoreError> {
        let mut inner = self.lock();
        if inner.clusters.contains_key(&record.name) {
            return Err(StoreError::AlreadyExists {
                kind: "ManagedCluster".into(),
                name: record.name,
            });
        }
        self.store.create_cluster(&record)?;
        inner.certs.insert(
            record.cert_fingerprint.clone(),
            CertState::Current(record.name.clone()),
        );
        let entry = Entry {
            record,
            tunnel: None,
            condition: condition(
                ConditionStatus::False,
                "AwaitingAgent",
                "no agent has connected yet; apply the installation manifest in the cluster",
            ),
            conflict: None,
            last_logs: None,
            stream_refused: None,
        };
        let view = view(&entry);
        inner.clusters.insert(entry.record.name.clone(), entry);
        Ok(view)
    }

    /// Deletes a cluster, revokes its certificates and closes its tunnel.
    pub fn remove(&self, name: &str) -> Result<ManagedCluster, StoreError> {
        let mut inner = self.lock();
        let reason = format!("cluster {name:?} was removed at {}", now_rfc3339());
        self.store.delete_cluster(name, &reason)?;
        let mut entry = inner
            .clusters
            .remove(name)
            .ok_or_else(|| StoreError::NotFound {
                kind: "ManagedCluster".into(),
                name: name.into(),
            })?;
        for state in inner.certs.values_mut() {
            if matches!(state, CertState::Current(c) if c == name) {
                *state = CertState::Revoked {
                    cluster: name.into(),
                    reason: reason.clone(),
                };
            }
        }
        if let Some((_, t)) = entry.tunnel.take() {
            t.closer.cancel();
            tracing::info!(cluster = name, remote = %t.remote, "cluster removed; tunnel closed");
        }
        set_condition(&mut entry, ConditionStatus::False, "ClusterRemoved", reason);
        self.publish(&inner, ClusterEvent::Removed { name: name.into() });
        Ok(view(&entry))
    }

    /// The persisted records of every cluster, by name.
    pub fn records(&self) -> Vec<ClusterRecord> {
        self.lock()
            .clusters
            .values()
            .map(|e| e.record.clone())
            .collect()
    }

    /// One cluster as an API object.
    pub fn get(&self, name: &str) -> Option<ManagedCluster> {
        let waited = self.started.elapsed();
        let mut inner = self.lock();
        let e = inner.clusters.get_mut(name)?;
        age_condition(e, waited);
        Some(view(e))
    }

    /// One cluster's live status (what reads add to the stored object), without building
    /// the rest of its object.
    pub fn status(&self, name: &str) -> Option<ManagedClusterStatus> {
        let waited = self.started.elapsed();
        let mut inner = self.lock();
        let e = inner.clusters.get_mut(name)?;
        age_condition(e, waited);
        Some(status_of(e))
    }

    /// All clusters as API objects, by name.
    pub fn list(&self) -> Vec<ManagedCluster> {
        let waited = self.started.elapsed();
        let mut inner = self.lock();
        inner
            .clusters
            .values_mut()
            .map(|e| {
                age_condition(e, waited);
                view(e)
            })
            .collect()
    }

    /// The sender of `name`'s live tunnel.
    pub fn sender(&self, name: &str) -> Result<Sender<Body>, LookupError> {
        let inner = self.lock();
        let entry = inner
            .clusters
            .get(name)
            .ok_or_else(|| LookupError::NotFound(name.into()))?;
        match &entry.tunnel {
            Some((_, t)) if !t.sender.is_closed() => Ok(t.sender.clone()),
            _ => Err(LookupError::NotConnected {
                name: name.into(),
                message: format!(
                    "{}={} since {} ({}: {})",
                    CONDITION_CONNECTED,
                    entry.condition.status,
                    entry.condition.last_transition_time,
                    entry.condition.reason,
                    entry.condition.message
                ),
            }),
        }
    }

    /// The cluster a current certificate belongs to.
    pub fn cluster_for(&self, fingerprint: &str) -> Option<String> {
        match self.lock().certs.get(fingerprint) {
            Some(CertState::Current(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// Makes `tunnel` the cluster's live tunnel. If another tunnel is live and still answers
    /// a ping, the new one is refused as a conflict (a copied certificate, or two agent
    /// replicas) and the conflict is shown in the cluster's condition.
    pub async fn attach(
        &self,
        name: &str,
        fingerprint: &str,
        tunnel: Tunnel,
    ) -> Result<u64, AttachError> {
        let old = {
            let inner = self.lock();
            if !matches!(inner.certs.get(fingerprint), Some(CertState::Current(c)) if c == name) {
                return Err(AttachError::NotCurrent(name.into()));
            }
            inner
                .clusters
                .get(name)
                .and_then(|e| e.tunnel.as_ref())
                .map(|(_, t)| (t.sender.clone(), t.remote))
        };
        if let Some((sender, existing)) = old
            && crate::agent_control::ping(sender).await
        {
            let mut inner = self.lock();
            if let Some(e) = inner.clusters.get_mut(name) {
                let msg = format!(
                    "a second agent presenting this cluster's certificate connected from {} at {} while the tunnel from {existing} is live; it was refused (only one agent per cluster may connect)",
                    tunnel.remote,
                    now_rfc3339()
                );
                e.conflict = Some((Instant::now(), msg.clone()));
                set_condition(e, ConditionStatus::True, "ConflictingAgents", msg);
            }
            return Err(AttachError::Conflict {
                cluster: name.into(),
                existing,
            });
        }
        let mut inner = self.lock();
        if !matches!(inner.certs.get(fingerprint), Some(CertState::Current(c)) if c == name) {
            return Err(AttachError::NotCurrent(name.into()));
        }
        let id = inner.next_tunnel_id;
        inner.next_tunnel_id += 1;
        let entry = inner
            .clusters
            .get_mut(name)
            .ok_or_else(|| AttachError::NotCurrent(name.into()))?;
        let replaced = entry.tunnel.take().map(|(old_id, old)| {
            tracing::info!(cluster = name, old = %old.remote, new = %tunnel.remote, "replacing a dead tunnel");
            old.closer.cancel();
            old_id
        });
        let msg = format!("tunnel from {} is up", tunnel.remote);
        let connection = Connection {
            name: name.into(),
            tunnel_id: id,
            sender: tunnel.sender.clone(),
            closed: tunnel.closer.clone(),
        };
        entry.tunnel = Some((id, tunnel));
        match entry.conflict.clone() {
            Some((_, conflict)) => {
                set_condition(entry, ConditionStatus::True, "ConflictingAgents", conflict)
            }
            None => set_condition(entry, ConditionStatus::True, "TunnelConnected", msg),
        }
        if let Some(old_id) = replaced {
            self.publish(
                &inner,
                ClusterEvent::Disconnected {
                    name: name.into(),
                    tunnel_id: old_id,
                },
            );
        }
        self.publish(&inner, ClusterEvent::Connected(connection));
        Ok(id)
    }

    /// Records that tunnel `id` of `name` ended (no-op if it was already replaced).
    pub fn detach(&self, name: &str, id: u64, why: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.clusters.get_mut(name) else {
            return;
        };
        if entry.tunnel.as_ref().is_some_and(|(tid, _)| *tid == id) {
            let (_, t) = entry.tunnel.take().expect("checked above");
            t.closer.cancel();
            set_condition(
                entry,
                ConditionStatus::False,
                "TunnelClosed",
                format!(
                    "the tunnel from {} closed at {}: {why}",
                    t.remote,
                    now_rfc3339()
                ),
            );
            self.publish(
                &inner,
                ClusterEvent::Disconnected {
                    name: name.into(),
                    tunnel_id: id,
                },
            );
        }
    }

    /// Records that logs from `name` were just stored.
    pub fn note_logs(&self, name: &str) {
        if let Some(e) = self.lock().clusters.get_mut(name) {
            e.last_logs = Some(now_rfc3339());
        }
    }

    /// Reports in `name`'s status that its batch under log stream `stream` was refused
    /// because cluster `owner` owns that stream id.
    pub fn note_stream_refused(&self, name: &str, stream: &str, owner: &str) {
        if let Some(e) = self.lock().clusters.get_mut(name) {
            e.stream_refused = Some(Condition {
                type_: CONDITION_LOGS_STREAM_REFUSED.into(),
                status: ConditionStatus::True,
                last_transition_time: now_rfc3339(),
                reason: "StreamOwnedByAnotherCluster".into(),
                message: format!(
                    "log stream {stream} belongs to cluster {owner:?}; this cluster's batches \
                     under it are refused and its agent is told to set them aside"
                ),
            });
        }
    }

    /// Closes every tunnel (shutdown).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        let mut closed = Vec::new();
        for (name, e) in inner.clusters.iter_mut() {
            if let Some((id, t)) = e.tunnel.take() {
                t.closer.cancel();
                closed.push((name.clone(), id));
            }
        }
        for (name, tunnel_id) in closed {
            self.publish(&inner, ClusterEvent::Disconnected { name, tunnel_id });
        }
    }
}

fn view(e: &Entry) -> ManagedCluster {
    let r = &e.record;
    ManagedCluster {
        api_version: API_VERSION.into(),
        kind: "ManagedCluster".into(),
        metadata: ObjectMeta {
            name: r.name.clone(),
            uid: Some(r.uid.clone()),
            creation_timestamp: Some(r.created_at.clone()),
            labels: r.labels.clone(),
            ..Default::default()
        },
        spec: ManagedClusterSpec {
            installation_manifest: None,
            certificate_fingerprint: Some(r.cert_fingerprint.clone()),
            certificate_expires: Some(r.cert_not_after.clone()),
        },
        status: Some(status_of(e)),
    }
}

fn status_of(e: &Entry) -> ManagedClusterStatus {
    let tunnel = e.tunnel.as_ref().map(|(_, t)| t);
    ManagedClusterStatus {
        conditions: std::iter::once(e.condition.clone())
            .chain(e.stream_refused.clone())
            .collect(),
        connected_since: tunnel.map(|t| t.connected_since.clone()),
        remote_address: tunnel.map(|t| t.remote.to_string()),
        agent_version: tunnel.map(|t| t.agent_version.clone()),
        kubernetes_version: tunnel.and_then(|t| t.kubernetes_version.clone()),
        last_logs_received: e.last_logs.clone(),
    }
}

impl PeerCheck for Registry {
    fn check(
        &self,
        fingerprint: &str,
        end_entity: &CertificateDer<'_>,
    ) -> Result<(), CertificateError> {
        let state = self.lock().certs.get(fingerprint).cloned();
        match state {
            Some(CertState::Current(cluster)) => {
                let cn = crate::pki::common_name(end_entity).unwrap_or_default();
                if cn == cluster {
                    Ok(())
                } else {
                    tracing::warn!(
                        fingerprint,
                        cn,
                        cluster,
                        "refused tunnel: certificate CN does not match the cluster it was issued for"
                    );
                    Err(CertificateError::ApplicationVerificationFailure)
                }
            }
            Some(CertState::Revoked { cluster, reason }) => {
                tracing::warn!(
                    fingerprint,
                    cluster,
                    "refused tunnel: certificate revoked ({reason})"
                );
                Err(CertificateError::Revoked)
            }
            None => {
                tracing::warn!(
                    fingerprint,
                    "refused tunnel: certificate signed by our CA but never registered"
                );
                Err(CertificateError::ApplicationVerificationFailure)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// A real HTTP/2 tunnel over an in-memory pipe whose agent side answers 200.
    pub(crate) async fn sender() -> Sender<Body> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        tokio::spawn(cattery_tunnel::session::serve(
            b,
            hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"pong"),
                )))
            }),
        ));
        let (s, conn) = cattery_tunnel::session::client_handshake::<_, Body>(a)
            .await
            .unwrap();
        tokio::spawn(conn);
        s
    }

    pub(crate) fn tunnel(sender: &Sender<Body>) -> Tunnel {
        Tunnel {
            sender: sender.clone(),
            connected_since: now_rfc3339(),
            remote: "127.0.0.1:1".parse().unwrap(),
            agent_version: "test".into(),
            kubernetes_version: None,
            closer: CancellationToken::new(),
        }
    }

    pub(crate) fn registry(dir: &std::path::Path, names: &[&str]) -> Arc<Registry> {
        let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
        let r = Arc::new(Registry::open(store).unwrap());
        for n in names {
            r.create(ClusterRecord {
                name: n.to_string(),
                uid: format!("uid-{n}"),
                labels: Default::default(),
                created_at: now_rfc3339(),
                cert_fingerprint: format!("fp-{n}"),
                cert_not_after: now_rfc3339(),
            })
            .unwrap();
        }
        r
    }

    fn describe(ev: &ClusterEvent) -> String {
        match ev {
            ClusterEvent::Connected(c) => format!("connected {} {}", c.name, c.tunnel_id),
            ClusterEvent::Disconnected { name, tunnel_id } => {
                format!("disconnected {name} {tunnel_id}")
            }
            ClusterEvent::Removed { name } => format!("removed {name}"),
        }
    }

    async fn next(events: &mut ClusterEvents) -> String {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5s")
            .expect("registry alive");
        describe(&ev)
    }

    #[tokio::test]
    async fn events_follow_the_tunnels_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), &["a", "b"]);
        let s = sender().await;
        let a1 = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
        let mut events = r.subscribe();
        assert_eq!(
            next(&mut events).await,
            format!("connected a {a1}"),
            "current state first"
        );
        let b1 = r.attach("b", "fp-b", tunnel(&s)).await.unwrap();
        r.detach("a", a1, "test");
        r.detach("a", a1, "again: no second event");
        let a2 = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
        r.remove("b").unwrap();
        assert_eq!(next(&mut events).await, format!("connected b {b1}"));
        assert_eq!(next(&mut events).await, format!("disconnected a {a1}"));
        assert_eq!(next(&mut events).await, format!("connected a {a2}"));
        assert_eq!(next(&mut events).await, "removed b");
        r.close_all();
        assert_eq!(next(&mut events).await, format!("disconnected a {a2}"));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_resynchronised_from_the_current_state() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), &["a", "b", "c", "d"]);
        let s = sender().await;
        let c1 = r.attach("c", "fp-c", tunnel(&s)).await.unwrap();
        let d1 = r.attach("d", "fp-d", tunnel(&s)).await.unwrap();
        let mut events = r.subscribe();
        assert_eq!(next(&mut events).await, format!("connected c {c1}"));
        assert_eq!(next(&mut events).await, format!("connected d {d1}"));
        // More events than the channel holds while the subscriber does not read.
        let mut last = 0;
        for _ in 0..EVENT_BUFFER {
            last = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
            r.detach("a", last, "churn");
        }
        let a_final = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
        let b1 = r.attach("b", "fp-b", tunnel(&s)).await.unwrap();
        r.remove("c").unwrap();
        r.detach("d", d1, "gone");
        assert!(a_final > last);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(next(&mut events).await);
        }
        assert_eq!(
            seen,
            [
                "removed c".to_string(),
                format!("disconnected d {d1}"),
                format!("connected a {a_final}"),
                format!("connected b {b1}"),
            ],
            "the difference to the current state, nothing stale"
        );
        // And live events continue after the resync.
        r.detach("b", b1, "test");
        assert_eq!(next(&mut events).await, format!("disconnected b {b1}"));
    }
}
