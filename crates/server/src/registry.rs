//! The registry of managed clusters: persisted records plus the live state of each tunnel.
//!
//! It is the single place that decides whether a certificate is honoured (it implements
//! [`PeerCheck`] for the tunnel listener), which tunnel serves a cluster, and what the
//! `ManagedClusterConnected` condition says.

use std::collections::{BTreeMap, HashMap};
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
use tokio_util::sync::CancellationToken;

use crate::store::{ClusterRecord, StateStore, StoreError};

/// How long a cluster stays `Unknown` after the management plane starts before it is
/// reported `False`.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(60);
/// How long a refused second agent keeps being reported in the condition.
pub const CONFLICT_MEMORY: Duration = Duration::from_secs(180);

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
}

struct Inner {
    clusters: BTreeMap<String, Entry>,
    certs: HashMap<String, CertState>,
    next_tunnel_id: u64,
}

/// Clusters, certificates and tunnels.
pub struct Registry {
    store: Arc<dyn StateStore>,
    inner: Mutex<Inner>,
    started: Instant,
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
        })
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
        Ok(view(&entry))
    }

    /// One cluster as an API object.
    pub fn get(&self, name: &str) -> Option<ManagedCluster> {
        let mut inner = self.lock();
        self.age_conditions(&mut inner);
        inner.clusters.get(name).map(view)
    }

    /// All clusters as API objects, by name.
    pub fn list(&self) -> Vec<ManagedCluster> {
        let mut inner = self.lock();
        self.age_conditions(&mut inner);
        inner.clusters.values().map(view).collect()
    }

    fn age_conditions(&self, inner: &mut Inner) {
        let waited = self.started.elapsed();
        for e in inner.clusters.values_mut() {
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
            && crate::tunnel_listener::ping(sender).await
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
        if let Some((_, old)) = entry.tunnel.take() {
            tracing::info!(cluster = name, old = %old.remote, new = %tunnel.remote, "replacing a dead tunnel");
            old.closer.cancel();
        }
        let msg = format!("tunnel from {} is up", tunnel.remote);
        entry.tunnel = Some((id, tunnel));
        match entry.conflict.clone() {
            Some((_, conflict)) => {
                set_condition(entry, ConditionStatus::True, "ConflictingAgents", conflict)
            }
            None => set_condition(entry, ConditionStatus::True, "TunnelConnected", msg),
        }
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
        }
    }

    /// Records that logs from `name` were just stored.
    pub fn note_logs(&self, name: &str) {
        if let Some(e) = self.lock().clusters.get_mut(name) {
            e.last_logs = Some(now_rfc3339());
        }
    }

    /// Closes every tunnel (shutdown).
    pub fn close_all(&self) {
        for e in self.lock().clusters.values_mut() {
            if let Some((_, t)) = e.tunnel.take() {
                t.closer.cancel();
            }
        }
    }
}

fn view(e: &Entry) -> ManagedCluster {
    let r = &e.record;
    let tunnel = e.tunnel.as_ref().map(|(_, t)| t);
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
        status: Some(ManagedClusterStatus {
            conditions: vec![e.condition.clone()],
            connected_since: tunnel.map(|t| t.connected_since.clone()),
            remote_address: tunnel.map(|t| t.remote.to_string()),
            agent_version: tunnel.map(|t| t.agent_version.clone()),
            kubernetes_version: tunnel.and_then(|t| t.kubernetes_version.clone()),
            last_logs_received: e.last_logs.clone(),
        }),
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
