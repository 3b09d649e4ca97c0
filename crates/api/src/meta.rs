//! Object metadata, lists and conditions shaped like Kubernetes' `meta/v1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The subset of Kubernetes `ObjectMeta` that Cattery resources use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name; for clusters a DNS-1123 label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// RFC 3339 creation time, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Free-form labels for selecting objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `metadata` of a list object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {}

/// A Kubernetes-style list: `{"kind": "<Kind>List", "items": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// Always the API version of the items.
    pub api_version: String,
    /// `<Kind>List`.
    pub kind: String,
    /// Empty list metadata (kept for shape compatibility).
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects.
    pub items: Vec<T>,
}

impl<T> List<T> {
    /// Wraps items as a list of `item_kind`.
    pub fn new(api_version: &str, item_kind: &str, items: Vec<T>) -> Self {
        List {
            api_version: api_version.to_string(),
            kind: format!("{item_kind}List"),
            metadata: ListMeta {},
            items,
        }
    }
}

/// Tri-state status of a condition, as in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Nobody knows yet (for example just after the management plane restarted).
    Unknown,
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        })
    }
}

/// A `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `ManagedClusterConnected`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// Machine-readable CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// Formats a time as Kubernetes does (RFC 3339, seconds precision, UTC).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The current time in [`rfc3339`] form.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}
