//! Object metadata, lists and conditions shaped like Kubernetes' `meta/v1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The subset of Kubernetes `ObjectMeta` that Cattery resources use.
///
/// Decoding accepts every standard `ObjectMeta` field, so an object read from a cluster or
/// exported with `kubectl get -o yaml` decodes; the ones Cattery does not keep are listed in
/// [`ObjectMeta::unkept`] (so the hub can refuse those it cannot honour) and never written
/// back. Any other field is an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "MetaInput")]
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
    /// Labels for selecting objects (keys and values as Kubernetes allows them; see
    /// [`crate::validate_labels`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Standard `ObjectMeta` fields that were present (not null or empty) in the decoded
    /// document but are not kept, by their JSON name (`namespace`, `resourceVersion`,
    /// `managedFields`, …). Never serialized.
    #[serde(skip)]
    pub unkept: Vec<&'static str>,
}

/// Standard fields a server sets itself: accepted on input and ignored, as
/// kube-apiserver does with `uid` or `creationTimestamp` on create.
pub const SERVER_SET_META_FIELDS: &[&str] = &[
    "selfLink",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

impl ObjectMeta {
    /// The [`unkept`](Self::unkept) fields that mean something the hub cannot honour
    /// (`namespace` on its cluster-scoped resources, `generateName`, `ownerReferences`,
    /// `finalizers`), as opposed to server-set ones ([`SERVER_SET_META_FIELDS`]).
    pub fn unsupported(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.unkept
            .iter()
            .copied()
            .filter(|f| !SERVER_SET_META_FIELDS.contains(f))
    }
}

/// What `metadata` may hold on input: Kubernetes' `ObjectMeta`, nothing else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetaInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    namespace: Option<serde_json::Value>,
    #[serde(default)]
    generate_name: Option<serde_json::Value>,
    #[serde(default)]
    self_link: Option<serde_json::Value>,
    #[serde(default)]
    resource_version: Option<serde_json::Value>,
    #[serde(default)]
    generation: Option<serde_json::Value>,
    #[serde(default)]
    deletion_timestamp: Option<serde_json::Value>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<serde_json::Value>,
    #[serde(default)]
    owner_references: Option<serde_json::Value>,
    #[serde(default)]
    finalizers: Option<serde_json::Value>,
    #[serde(default)]
    managed_fields: Option<serde_json::Value>,
}

impl From<MetaInput> for ObjectMeta {
    fn from(m: MetaInput) -> Self {
        let present = |v: &Option<serde_json::Value>| match v {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::String(s)) => !s.is_empty(),
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        let unkept = [
            ("namespace", &m.namespace),
            ("generateName", &m.generate_name),
            ("selfLink", &m.self_link),
            ("resourceVersion", &m.resource_version),
            ("generation", &m.generation),
            ("deletionTimestamp", &m.deletion_timestamp),
            (
                "deletionGracePeriodSeconds",
                &m.deletion_grace_period_seconds,
            ),
            ("ownerReferences", &m.owner_references),
            ("finalizers", &m.finalizers),
            ("managedFields", &m.managed_fields),
        ]
        .into_iter()
        .filter(|(_, v)| present(v))
        .map(|(name, _)| name)
        .collect();
        ObjectMeta {
            name: m.name,
            uid: m.uid,
            creation_timestamp: m.creation_timestamp,
            labels: m.labels,
            annotations: m.annotations,
            unkept,
        }
    }
}

/// `metadata` of a list object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// The store's resourceVersion the list was taken at, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Token for the next page when `limit` cut the list short (`?continue=`).
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// How many selected objects come after this page, with `continue`: a count without
    /// reading every object (`?limit=1` and this is the total less one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<u64>,
}

/// A Kubernetes-style list: `{"kind": "<Kind>List", "items": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// Always the API version of the items.
    pub api_version: String,
    /// `<Kind>List`.
    pub kind: String,
    /// resourceVersion and continue token, when the list has them.
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
            metadata: ListMeta::default(),
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_metadata_decodes_and_unknown_metadata_does_not() {
        let m: ObjectMeta = crate::wire::decode(
            br#"{"name":"a","namespace":"calico-system","resourceVersion":"12","generation":3,
                 "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}],
                 "finalizers":[],"annotations":{"note":"x"}}"#,
        )
        .unwrap();
        assert_eq!(m.name, "a");
        assert_eq!(
            m.unkept,
            [
                "namespace",
                "resourceVersion",
                "generation",
                "managedFields"
            ]
        );
        assert_eq!(m.unsupported().collect::<Vec<_>>(), ["namespace"]);
        let out = serde_json::to_value(&m).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"name": "a", "annotations": {"note": "x"}})
        );
        let e = crate::wire::decode::<ObjectMeta>(br#"{"name":"a","lables":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(r#"unknown field "lables""#), "{e}");
    }
}
