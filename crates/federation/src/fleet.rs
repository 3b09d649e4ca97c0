//! The planner's view of the fleet: clusters with their labels and connection, what was
//! observed in each, the pods of remote clusters; and matching placements against it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use cattery_api::federation::{LabelSelector, Placement};
use serde_json::Value;

/// A managed cluster as the planner needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// ManagedCluster name.
    pub name: String,
    /// ManagedCluster `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Whether its tunnel is up (the `ManagedClusterConnected` condition is True).
    pub connected: bool,
}

/// What the reconciler knows of one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The cluster's live objects relevant to the policy: every object of the supported
    /// kinds carrying the policy's owner label, plus whatever exists at the names the
    /// policy places (owned or not). `None` when they have not been read (yet).
    pub objects: Option<Vec<Value>>,
    /// The cluster's error from the last attempt to carry out this policy's actions there,
    /// verbatim; cleared by the reconciler when an attempt succeeds.
    pub apply_error: Option<String>,
}

/// A pod of a remote cluster, for rendering remote peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotePod {
    /// The pod's namespace name.
    pub namespace: String,
    /// Labels of that namespace.
    pub namespace_labels: BTreeMap<String, String>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs`.
    pub ips: Vec<IpAddr>,
}

/// A store selector from an API LabelSelector (validated by `cattery_api::federation`).
pub fn selector(s: &LabelSelector) -> Result<cattery_store::LabelSelector, String> {
    cattery_store::LabelSelector::from_parts(
        s.match_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        s.match_expressions
            .iter()
            .map(|r| (r.key.as_str(), r.operator.as_str(), r.values.as_slice())),
    )
}

/// Whether a label set satisfies a selector.
pub(crate) fn labels_match(
    s: &cattery_store::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    s.matches_labels(|k| labels.get(k).map(String::as_str))
}

/// A compiled [`Placement`]: the names, or the selector.
#[derive(Clone, Debug)]
pub struct Selection {
    names: BTreeSet<String>,
    selector: Option<cattery_store::LabelSelector>,
}

impl Selection {
    /// Compiles a placement; an invalid selector is an error (validation prevents it).
    pub fn new(p: &Placement) -> Result<Selection, String> {
        Ok(Selection {
            names: p.cluster_names.iter().cloned().collect(),
            selector: p.cluster_selector.as_ref().map(selector).transpose()?,
        })
    }

    /// Whether the cluster is named or its labels match the selector.
    pub fn matches(&self, c: &Cluster) -> bool {
        self.names.contains(&c.name)
            || self
                .selector
                .as_ref()
                .is_some_and(|s| labels_match(s, &c.labels))
    }
}
