//! Cluster resources: `ManagedCluster`, `ManagementCluster`, `ManagementClusterConnection`
//! and the agent's stand-alone configuration file.
//!
//! Field names follow Calico's Installation API where a counterpart exists
//! (`spec.address`, `spec.managementClusterAddr`, `spec.tls.ca`, `spec.impersonation`,
//! condition `ManagedClusterConnected`).

use serde::{Deserialize, Serialize};

use crate::meta::{Condition, ObjectMeta};

/// Condition type reported for every managed cluster.
pub const CONDITION_CONNECTED: &str = "ManagedClusterConnected";

/// A cluster registered with the management plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedCluster {
    /// `cattery.dev/v1`.
    pub api_version: String,
    /// `ManagedCluster`.
    pub kind: String,
    /// Name (a DNS-1123 label) and labels.
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: ManagedClusterSpec,
    /// Observed state; ignored on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ManagedClusterStatus>,
}

/// `ManagedCluster.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedClusterSpec {
    /// The installation manifest, present only in the response to the create call
    /// (as Calico's `spec.installationManifest`): it holds the cluster's private key,
    /// which the server does not keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_manifest: Option<String>,
    /// SHA-256 fingerprint (hex) of the cluster's current client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// When the cluster's client certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<String>,
}

/// `ManagedCluster.status`: what the management plane observes of the cluster's tunnel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedClusterStatus {
    /// Contains the `ManagedClusterConnected` condition.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// When the current tunnel was established (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<String>,
    /// Source address of the current tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    /// Version of the `cattery agent` at the other end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// `gitVersion` of the cluster's Kubernetes API as the agent sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// When log records from this cluster were last stored (RFC 3339), since the
    /// management plane started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_logs_received: Option<String>,
}

impl ManagedClusterStatus {
    /// The `ManagedClusterConnected` condition, if present.
    pub fn connected(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_CONNECTED)
    }
}

/// Which CA the agent uses to verify the management plane (Calico's `spec.tls.ca`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaType {
    /// The management plane's own CA, shipped with the cluster's credentials.
    #[default]
    Tigera,
    /// The system's public roots (the management plane has a publicly trusted certificate).
    Public,
}

/// `spec.tls` of a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionTls {
    /// Which roots verify the management plane's certificate.
    #[serde(default)]
    pub ca: CaType,
}

/// Who the agent may impersonate toward its kube-apiserver (Calico's `spec.impersonation`).
/// `"*"` in a list allows any name; an empty list allows none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Impersonation {
    /// User names that may be impersonated.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups that may be impersonated.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Service accounts (`namespace/name`) that may be impersonated.
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

impl Default for Impersonation {
    fn default() -> Self {
        Impersonation {
            users: vec!["*".into()],
            groups: vec!["*".into()],
            service_accounts: vec!["*".into()],
        }
    }
}

impl Impersonation {
    /// Whether `user` may be impersonated.
    pub fn allows_user(&self, user: &str) -> bool {
        allows(&self.users, user)
    }

    /// Whether `group` may be impersonated.
    pub fn allows_group(&self, group: &str) -> bool {
        allows(&self.groups, group)
    }
}

fn allows(list: &[String], name: &str) -> bool {
    list.iter().any(|x| x == "*" || x == name)
}

/// `ManagementClusterConnection.spec`: where and how the agent dials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementClusterConnectionSpec {
    /// `host:port` of the management plane's tunnel listener.
    pub management_cluster_addr: String,
    /// How to verify the management plane.
    #[serde(default)]
    pub tls: ConnectionTls,
    /// Who may be impersonated.
    #[serde(default)]
    pub impersonation: Impersonation,
}

/// The resource a managed cluster holds to find its management plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementClusterConnection {
    /// `cattery.dev/v1`.
    pub api_version: String,
    /// `ManagementClusterConnection`.
    pub kind: String,
    /// Conventionally named `default`.
    pub metadata: ObjectMeta,
    /// Where and how to connect.
    pub spec: ManagementClusterConnectionSpec,
}

/// `ManagementCluster.spec`: how the management plane presents itself to agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementClusterSpec {
    /// `host:port` that agents dial (written into every installation manifest).
    pub address: String,
    /// Optional TLS settings for the tunnel listener.
    #[serde(default)]
    pub tls: ConnectionTls,
}

/// The management plane's own description (Calico's `ManagementCluster`), accepted by
/// `cattery server -f`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementCluster {
    /// `cattery.dev/v1` (Calico's `operator.tigera.io/v1` is accepted as well).
    pub api_version: String,
    /// `ManagementCluster`.
    pub kind: String,
    /// Conventionally named `tigera-secure` or `default`.
    pub metadata: ObjectMeta,
    /// Address and TLS settings.
    pub spec: ManagementClusterSpec,
}

/// PEM credentials of one managed cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentCredentials {
    /// The cluster's client certificate (CN = cluster name).
    pub certificate: String,
    /// The client certificate's private key.
    pub private_key: String,
    /// The management plane's CA certificate.
    pub ca_certificate: String,
}

/// `AgentConfig.spec`: the fields of `ManagementClusterConnection.spec` plus credentials, for running the agent outside Kubernetes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfigSpec {
    /// `host:port` of the management plane's tunnel listener.
    pub management_cluster_addr: String,
    /// How to verify the management plane.
    #[serde(default)]
    pub tls: ConnectionTls,
    /// Who may be impersonated.
    #[serde(default)]
    pub impersonation: Impersonation,
    /// Certificate, key and CA.
    pub credentials: AgentCredentials,
}

impl AgentConfigSpec {
    /// The connection part, as it appears in a `ManagementClusterConnection`.
    pub fn connection(&self) -> ManagementClusterConnectionSpec {
        ManagementClusterConnectionSpec {
            management_cluster_addr: self.management_cluster_addr.clone(),
            tls: self.tls.clone(),
            impersonation: self.impersonation.clone(),
        }
    }
}

/// A single-file agent configuration (`cattery cluster add --format agent-config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// `cattery.dev/v1`.
    pub api_version: String,
    /// `AgentConfig`.
    pub kind: String,
    /// `metadata.name` is the cluster's name.
    pub metadata: ObjectMeta,
    /// Connection and credentials.
    pub spec: AgentConfigSpec,
}
