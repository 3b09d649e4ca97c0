//! The hub's resource types as one descriptor table.
//!
//! Everything the generic handlers ([`super::resources`]), discovery and Table output need
//! to know about a kind is here: its group, version, names, scope, how an object of it is
//! validated, who may write it (an admission hook: RBAC's escalation rules), which objects
//! are built in, and which columns `kubectl get` prints (priority 1 = `-o wide` only).
//! Adding a kind is adding a [`Descriptor`]; kinds with side effects outside the store
//! (ManagedCluster's certificate and tunnel, a Token's secret) say so with [`HubKind`] and
//! are special-cased by the handlers, nowhere else.

use cattery_api::wire::{check_type, from_value};
use cattery_api::{ManagedCluster, validate_dns1123_label};
use cattery_store::http::table::Column;
use serde_json::{Value, json};

use super::ApiError;
use crate::AppState;
use crate::auth::Identity;

/// A kind stored in the hub's resource store ([`cattery_store::Store`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HubKind {
    /// `cattery.dev/v1` ManagedCluster: a registered cluster (its certificate and live
    /// tunnel state are kept by the registry; the object holds name, labels, annotations).
    ManagedCluster,
    /// `cattery.dev/v1` FederatedPolicy: one network policy placed on many clusters.
    FederatedPolicy,
    /// `rbac.authorization.k8s.io/v1` ClusterRole.
    ClusterRole,
    /// `rbac.authorization.k8s.io/v1` ClusterRoleBinding.
    ClusterRoleBinding,
    /// `rbac.authorization.k8s.io/v1` Role (namespaced).
    Role,
    /// `rbac.authorization.k8s.io/v1` RoleBinding (namespaced).
    RoleBinding,
    /// `cattery.dev/v1` Token: a bearer token, stored as its hash (the secret is returned
    /// once, by its own create handler).
    Token,
}

impl HubKind {
    /// Whether the kind is one of the four RBAC kinds (what the compiled policy reads).
    pub fn is_rbac(self) -> bool {
        matches!(
            self,
            HubKind::ClusterRole
                | HubKind::ClusterRoleBinding
                | HubKind::Role
                | HubKind::RoleBinding
        )
    }
}

/// Checks an object of a kind before it is stored; the error is a 400 naming the field.
pub type Validate = fn(&Value) -> Result<(), ApiError>;

/// A per-kind check of a write by `who`, run on create, update, patch and apply with the
/// stored object (if any) and the object about to be stored; refuses with a 403 naming
/// what is missing (RBAC's escalation and bind rules).
pub type Admit = fn(&AppState, &Identity, Option<&Value>, &Value) -> Result<(), ApiError>;

/// Verbs of the generic handlers (no `deletecollection`).
pub const STORE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// What the hub knows about one resource type.
#[derive(Debug)]
pub struct Descriptor {
    /// The store's handle for the kind.
    pub kind: HubKind,
    /// API group.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Object `kind`.
    pub kind_name: &'static str,
    /// Plural resource name (URLs, RBAC).
    pub plural: &'static str,
    /// Singular name (discovery, `kubectl get managedcluster`).
    pub singular: &'static str,
    /// Short names (`kubectl get mc`).
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Validation of a whole object (create, update, the result of a patch or apply).
    pub validate: Validate,
    /// Table columns between NAME and AGE.
    pub columns: &'static [Column],
    /// Whether the Table ends with AGE (kubectl prints CREATED AT for roles instead).
    pub age_column: bool,
    /// Who may write an object (beyond RBAC's verb check at the door).
    pub admit: Option<Admit>,
    /// Objects built into the hub: listed and readable like stored ones, never changed.
    pub builtins: fn() -> Vec<Value>,
    /// A PUT of a missing object creates it (kube-apiserver allows it for RBAC kinds).
    pub create_on_update: bool,
    /// Verbs served (discovery; a kind without `update` has no PUT or PATCH route).
    pub verbs: &'static [&'static str],
}

/// No built-in objects.
pub(crate) fn no_builtins() -> Vec<Value> {
    Vec::new()
}

impl Descriptor {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The collection URL (cluster-scoped kinds; for namespaced ones, every namespace's).
    pub fn collection_path(&self) -> String {
        format!("/apis/{}/{}/{}", self.group, self.version, self.plural)
    }

    /// The collection URL in one namespace (namespaced kinds), with a `{ns}` parameter.
    pub fn namespaced_collection_path(&self) -> String {
        format!(
            "/apis/{}/{}/namespaces/{{ns}}/{}",
            self.group, self.version, self.plural
        )
    }

    /// Whether the generic handlers write this kind (PUT, PATCH).
    pub fn writable(&self) -> bool {
        self.verbs.contains(&"update")
    }

    /// The built-in object called `name`, if there is one.
    pub fn builtin(&self, name: &str) -> Option<Value> {
        (self.builtins)()
            .into_iter()
            .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    }
}

fn connected(o: &Value) -> Value {
    let c = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == cattery_api::CONDITION_CONNECTED)
        });
    json!(c.and_then(|c| c["status"].as_str()).unwrap_or("Unknown"))
}

pub(crate) fn str_at(o: &Value, p: &str) -> Value {
    json!(o.pointer(p).and_then(Value::as_str).unwrap_or(""))
}

fn labels_cell(o: &Value) -> Value {
    let labels = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!(if labels.is_empty() {
        "<none>".into()
    } else {
        labels
    })
}

const CLUSTER_COLUMNS: &[Column] = &[
    Column {
        name: "Connected",
        ty: "string",
        priority: 0,
        cell: connected,
    },
    Column {
        name: "Agent",
        ty: "string",
        priority: 0,
        cell: |o| str_at(o, "/status/agentVersion"),
    },
    Column {
        name: "Kubernetes",
        ty: "string",
        priority: 1,
        cell: |o| str_at(o, "/status/kubernetesVersion"),
    },
    Column {
        name: "Remote",
        ty: "string",
        priority: 1,
        cell: |o| str_at(o, "/status/remoteAddress"),
    },
    Column {
        name: "Certificate-Expires",
        ty: "string",
        priority: 1,
        cell: |o| str_at(o, "/spec/certificateExpires"),
    },
    Column {
        name: "Labels",
        ty: "string",
        priority: 1,
        cell: labels_cell,
    },
];

const POLICY_COLUMNS: &[Column] = &[
    Column {
        name: "Mode",
        ty: "string",
        priority: 0,
        cell: |o| str_at(o, "/spec/mode"),
    },
    Column {
        name: "Owner",
        ty: "string",
        priority: 1,
        cell: |o| str_at(o, "/metadata/labels/app.kubernetes.io~1managed-by"),
    },
];

pub(crate) fn invalid(kind: &str, field: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::with_reason(400, "Invalid", format!("{kind} {field}: {msg}"))
}

/// Only `metadata`, decoded so errors name their path (`unknown field "x" in metadata`).
#[derive(serde::Deserialize)]
struct Envelope {
    metadata: cattery_api::ObjectMeta,
}

/// Common checks of every hub object: `apiVersion`/`kind`, `metadata` an object with a
/// DNS-1123 name, valid labels, string annotations, no fields the hub cannot honour.
pub(crate) fn check_common(d: &Descriptor, obj: &Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    check_type(api_version, kind, &[&d.api_version()], d.kind_name)?;
    let Envelope { metadata: meta } =
        from_value(json!({"metadata": obj.get("metadata").cloned().unwrap_or(json!({}))}))?;
    super::check_stored_metadata(d.kind_name, &meta)?;
    validate_dns1123_label(&meta.name).map_err(|e| invalid(d.kind_name, "metadata.name", e))?;
    Ok(())
}

fn validate_cluster(obj: &Value) -> Result<(), ApiError> {
    check_common(HubKind::ManagedCluster.descriptor(), obj)?;
    let c: ManagedCluster = from_value(obj.clone())?;
    if c.metadata.name == cattery_api::MANAGEMENT_CLUSTER_NAME {
        return Err(invalid(
            "ManagedCluster",
            "metadata.name",
            format!(
                "{:?} is reserved for the management plane itself",
                c.metadata.name
            ),
        ));
    }
    Ok(())
}

/// The envelope checks every hub kind gets, then the type's own validation
/// ([`cattery_api::federation::validate_value`]): every template, selector and override,
/// as a 400 naming the field, so nothing invalid is stored and so nothing is placed.
pub(crate) fn validate_federated_policy(obj: &Value) -> Result<(), ApiError> {
    check_common(HubKind::FederatedPolicy.descriptor(), obj)?;
    cattery_api::federation::validate_value(obj).map_err(|e| {
        let st = e.status();
        ApiError::with_reason(st.code, &st.reason, st.message)
    })?;
    Ok(())
}

/// Every kind the generic handlers serve, in discovery order.
pub static KINDS: &[Descriptor] = &[
    Descriptor {
        kind: HubKind::ManagedCluster,
        group: cattery_rbac::GROUP_CATTERY,
        version: "v1",
        kind_name: "ManagedCluster",
        plural: "managedclusters",
        singular: "managedcluster",
        short_names: &["mc"],
        namespaced: false,
        validate: validate_cluster,
        columns: CLUSTER_COLUMNS,
        age_column: true,
        admit: None,
        builtins: no_builtins,
        create_on_update: false,
        verbs: STORE_VERBS,
    },
    Descriptor {
        kind: HubKind::FederatedPolicy,
        group: cattery_rbac::GROUP_CATTERY,
        version: "v1",
        kind_name: "FederatedPolicy",
        plural: "federatedpolicies",
        singular: "federatedpolicy",
        short_names: &["fp"],
        namespaced: false,
        validate: validate_federated_policy,
        columns: POLICY_COLUMNS,
        age_column: true,
        admit: None,
        builtins: no_builtins,
        create_on_update: false,
        verbs: STORE_VERBS,
    },
    super::tokens::DESCRIPTOR,
    super::rbac::CLUSTER_ROLE,
    super::rbac::CLUSTER_ROLE_BINDING,
    super::rbac::ROLE,
    super::rbac::ROLE_BINDING,
];

impl HubKind {
    /// This kind's descriptor.
    pub fn descriptor(self) -> &'static Descriptor {
        KINDS
            .iter()
            .find(|d| d.kind == self)
            .expect("every HubKind has a descriptor")
    }
}

impl cattery_store::Kind for HubKind {
    fn group(&self) -> &'static str {
        self.descriptor().group
    }
    fn version(&self) -> &'static str {
        self.descriptor().version
    }
    fn kind(&self) -> &'static str {
        self.descriptor().kind_name
    }
    fn plural(&self) -> &'static str {
        self.descriptor().plural
    }
    fn namespaced(&self) -> bool {
        self.descriptor().namespaced
    }
    /// A FederatedPolicy's `status` is the reconciler's: writes of the object keep it.
    fn has_status_subresource(&self) -> bool {
        *self == HubKind::FederatedPolicy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_consistent_and_validators_name_fields() {
        for (i, d) in KINDS.iter().enumerate() {
            assert_eq!(d.kind.descriptor() as *const _, &KINDS[i] as *const _);
        }
        let ok = json!({"apiVersion": "cattery.dev/v1", "kind": "FederatedPolicy",
            "metadata": {"name": "p1", "labels": {"env": "prod"}},
            "spec": {"placement": {"clusterNames": ["c1"]}, "resources": [
                {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny", "namespace": "shop"},
                 "spec": {"podSelector": {}}}]}});
        validate_federated_policy(&ok).unwrap();
        let mut bad = ok.clone();
        bad["spec"] = json!("x");
        let e = validate_federated_policy(&bad).unwrap_err();
        assert_eq!(e.0.code, 400);
        assert!(e.0.message.contains("spec"), "{}", e.0.message);
        let mut bad = ok.clone();
        bad["spec"]["resources"][0]["spec"]["ingress"] = json!([{"ports": [{"port": 70000}]}]);
        let e = validate_federated_policy(&bad).unwrap_err();
        assert!(
            e.0.message
                .contains("spec.resources[0].spec.ingress[0].ports[0].port"),
            "{}",
            e.0.message
        );
        let mut bad = ok.clone();
        bad["metadata"]["labels"] = json!({"bad key!": "x"});
        let e = validate_federated_policy(&bad).unwrap_err();
        assert_eq!(e.0.code, 400);
        assert!(e.0.message.contains("metadata.labels"), "{}", e.0.message);
        let c = json!({"apiVersion": "cattery.dev/v1", "kind": "ManagedCluster",
            "metadata": {"name": "c1"}, "spec": {"colour": "red"}});
        let e = validate_cluster(&c).unwrap_err();
        assert!(
            e.0.message.contains(r#"unknown field "colour" in spec"#),
            "{}",
            e.0.message
        );
        let c = json!({"apiVersion": "cattery.dev/v1", "kind": "ManagedCluster",
            "metadata": {"name": "cluster"}});
        assert!(
            validate_cluster(&c)
                .unwrap_err()
                .0
                .message
                .contains("reserved")
        );
    }
}
