//! `FederatedPolicyPreview`: what a FederatedPolicy would change in the traffic each
//! selected cluster actually had, answered by
//! `POST /apis/cattery.dev/v1/federatedpolicies/preview` (nothing is stored or placed).
//!
//! The hub replays each selected cluster's stored flow records of a time window against
//! the cluster's NetworkPolicies with and without the policy (as rendered for that
//! cluster), and reports the flows whose verdict changes, grouped by source, destination,
//! direction, protocol and port. See `docs/design/0017-policy-preview.md`.

use serde::{Deserialize, Serialize};

/// `kind` of the answer.
pub const PREVIEW_KIND: &str = "FederatedPolicyPreview";
/// Where the preview is asked for (a POST of a FederatedPolicy).
pub const PREVIEW_PATH: &str = "/apis/cattery.dev/v1/federatedpolicies/preview";
/// The time window when the request gives none (`?since=`).
pub const DEFAULT_SINCE: &str = "24h";

/// The answer: the request's window and one entry per cluster the placement selects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedPolicyPreview {
    /// `cattery.dev/v1`.
    pub api_version: String,
    /// [`PREVIEW_KIND`].
    pub kind: String,
    /// Named after the previewed policy.
    pub metadata: PreviewMeta,
    /// What was asked.
    pub spec: PreviewSpec,
    /// Per-cluster results.
    pub status: PreviewStatus,
}

/// `metadata` of a preview.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewMeta {
    /// The previewed FederatedPolicy's name.
    pub name: String,
}

/// What was previewed over which window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewSpec {
    /// The `since` of the request (`24h`).
    pub since: String,
    /// Start of the window (RFC 3339, inclusive).
    pub from: String,
    /// End of the window (RFC 3339, exclusive): when the preview ran.
    pub to: String,
}

/// `status` of a preview.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    /// One entry per cluster the placement selects, by name.
    pub clusters: Vec<ClusterPreview>,
}

/// Whether a cluster could be previewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreviewState {
    /// Its flows were replayed.
    Evaluated,
    /// Its tunnel is down: its policies in force cannot be read, so nothing was evaluated.
    Unreachable,
    /// The caller may not read its flow logs: nothing was read or evaluated.
    Forbidden,
    /// Something failed (its policies could not be read, the log store refused, an
    /// override makes the policy invalid for this cluster); `message` says what.
    Failed,
}

impl std::fmt::Display for PreviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PreviewState::Evaluated => "Evaluated",
            PreviewState::Unreachable => "Unreachable",
            PreviewState::Forbidden => "Forbidden",
            PreviewState::Failed => "Failed",
        })
    }
}

/// One cluster's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPreview {
    /// ManagedCluster name.
    pub name: String,
    /// Whether it was evaluated.
    pub state: PreviewState,
    /// Detail (why not evaluated; warnings such as an apply that would conflict).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// How many flow records were read and what became of them.
    #[serde(default)]
    pub flows: FlowCounts,
    /// The flows whose verdict changes, grouped, largest first.
    #[serde(default)]
    pub changes: Vec<FlowChange>,
    /// Flows whose verdict (before or after) could not be decided from what the records
    /// say, grouped, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undetermined: Vec<FlowChange>,
    /// Resources (of the policy or already in the cluster) that were not evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_evaluated: Vec<NotEvaluated>,
}

/// Counts of one cluster's flow records in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowCounts {
    /// Flow records in the window.
    pub records: u64,
    /// Records whose verdict with and without the policy was decided.
    pub evaluated: u64,
    /// Records with a verdict change (allowed→denied or denied→allowed).
    pub changed: u64,
    /// Records that could not be decided (see `undetermined`).
    pub undetermined: u64,
    /// Records whose recorded `action` differs from what the cluster's current policies
    /// decide: policies changed within the window, or the cluster enforces something not
    /// evaluated here (see `notEvaluated`).
    pub recorded_mismatch: u64,
}

/// Which way a verdict changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Change {
    /// Allowed now, denied with the policy.
    AllowedToDenied,
    /// Denied now, allowed with the policy.
    DeniedToAllowed,
    /// Not decided (in `undetermined` only).
    Undetermined,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::AllowedToDenied => "allowed→denied",
            Change::DeniedToAllowed => "denied→allowed",
            Change::Undetermined => "undetermined",
        })
    }
}

/// One end of a group of flows, as the records name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowEndpoint {
    /// Felix's endpoint type: `wep` (a pod), `hep`, `ns` (network set), `net`.
    #[serde(rename = "type")]
    pub endpoint_type: String,
    /// Namespace (`-` for non-namespaced ends).
    pub namespace: String,
    /// Aggregated name (`frontend-6c9f8d7b5-*`; `pub`/`pvt` for networks).
    pub name: String,
}

impl std::fmt::Display for FlowEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace == "-" || self.namespace.is_empty() {
            write!(f, "{}:{}", self.endpoint_type, self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A group of flow records with the same ends, direction, protocol, port and change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowChange {
    /// How the verdict changes.
    pub change: Change,
    /// `Ingress` (records reported by the destination) or `Egress` (by the source).
    pub direction: String,
    /// The client.
    pub source: FlowEndpoint,
    /// The server.
    pub destination: FlowEndpoint,
    /// Felix's `proto` (`tcp`, `udp`, …).
    pub protocol: String,
    /// Destination port, when the records have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Flow records in the group.
    pub records: u64,
    /// Their `num_flows`, summed (connections).
    pub flows: u64,
    /// Who decides with the policy (`NAMESPACE/NAME` of a NetworkPolicy; `profile` when no
    /// policy selects the pod), or, for undetermined flows, why no verdict.
    pub detail: String,
}

/// A resource that was not evaluated, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotEvaluated {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `policy` (rendered from the previewed policy) or `cluster` (already in force there).
    pub origin: String,
    /// Why it was not evaluated.
    pub reason: String,
}
