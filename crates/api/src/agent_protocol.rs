//! The few requests the management plane sends to the agent itself (not to the cluster's
//! Kubernetes API) over the tunnel.
//!
//! They are told apart by the URI authority: proxied requests use [`KUBE_AUTHORITY`], control
//! requests [`AGENT_AUTHORITY`]. The authority is set by the management plane, so a user's
//! proxied request can never reach a control endpoint.

use serde::{Deserialize, Serialize};

/// Authority of requests meant for the agent.
pub const AGENT_AUTHORITY: &str = "agent.cattery";
/// Authority of requests to forward to the cluster's Kubernetes API.
pub const KUBE_AUTHORITY: &str = "kube.cattery";
/// `GET`: returns [`AgentInfo`].
pub const PATH_INFO: &str = "/info";
/// `GET`: liveness probe used to detect a second agent with the same certificate.
pub const PATH_PING: &str = "/ping";
/// `POST` (text body): the management plane tells the agent why it refuses this tunnel
/// before closing it, so the agent can log the reason.
pub const PATH_REFUSED: &str = "/refused";
/// Header carrying the original HTTP/1.1 method of an upgrade sent as extended CONNECT.
pub const HEADER_UPGRADE_METHOD: &str = "x-cattery-upgrade-method";

/// What the agent reports about itself and its cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// The agent's version.
    pub agent_version: String,
    /// `gitVersion` from the cluster's `/version`, when reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Why the Kubernetes version is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_error: Option<String>,
}
