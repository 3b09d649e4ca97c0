//! The RBAC policy in force: built-in roles plus the stored RBAC objects, compiled into a
//! [`cattery_rbac::Authorizer`].
//!
//! Requests read the current authorizer without locking (an `ArcSwap` load); every RBAC
//! write rebuilds it from the store and swaps it in, so a change applies to the very next
//! request. Writes are serialized so two concurrent changes cannot publish a policy that
//! misses one of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cattery_rbac::{
    Authorizer, ClusterRole, ClusterRoleBinding, Policy, Role, RoleBinding, builtin,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::store::{RbacRecord, StateStore, StoreError};

/// The four RBAC kinds, with what the API and store need to know about each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RbacKind {
    /// Cluster-wide role.
    ClusterRole,
    /// Binds a ClusterRole cluster-wide.
    ClusterRoleBinding,
    /// Namespaced role.
    Role,
    /// Binds a Role or ClusterRole in one namespace.
    RoleBinding,
}

impl RbacKind {
    /// Every kind.
    pub const ALL: [RbacKind; 4] = [
        RbacKind::ClusterRole,
        RbacKind::ClusterRoleBinding,
        RbacKind::Role,
        RbacKind::RoleBinding,
    ];

    /// `kind` as written in objects.
    pub fn kind(self) -> &'static str {
        match self {
            RbacKind::ClusterRole => "ClusterRole",
            RbacKind::ClusterRoleBinding => "ClusterRoleBinding",
            RbacKind::Role => "Role",
            RbacKind::RoleBinding => "RoleBinding",
        }
    }

    /// The resource name in URLs and RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            RbacKind::ClusterRole => "clusterroles",
            RbacKind::ClusterRoleBinding => "clusterrolebindings",
            RbacKind::Role => "roles",
            RbacKind::RoleBinding => "rolebindings",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, RbacKind::Role | RbacKind::RoleBinding)
    }

    /// The kind whose URL resource is `plural`.
    pub fn from_plural(plural: &str) -> Option<RbacKind> {
        RbacKind::ALL.into_iter().find(|k| k.plural() == plural)
    }

    /// The kind called `kind`.
    pub fn from_kind(kind: &str) -> Option<RbacKind> {
        RbacKind::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

/// One stored RBAC object, decoded.
#[derive(Clone, Debug)]
enum Decoded {
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
}

/// Where a stored object lives: (kind, namespace, name), as in the store.
type ObjectKey = (String, String, String);

fn key_of(r: &RbacRecord) -> ObjectKey {
    (r.kind.clone(), r.namespace.clone(), r.name.clone())
}

/// Decodes a stored record. A record that no longer decodes is skipped with an error log
/// rather than taking the whole policy down; it grants nothing, which is the safe direction.
fn decode(r: &RbacRecord) -> Option<Decoded> {
    let res = match RbacKind::from_kind(&r.kind) {
        Some(RbacKind::ClusterRole) => serde_json::from_str(&r.body).map(Decoded::ClusterRole),
        Some(RbacKind::ClusterRoleBinding) => {
            serde_json::from_str(&r.body).map(Decoded::ClusterRoleBinding)
        }
        Some(RbacKind::Role) => serde_json::from_str(&r.body).map(Decoded::Role),
        Some(RbacKind::RoleBinding) => serde_json::from_str(&r.body).map(Decoded::RoleBinding),
        None => {
            tracing::error!(
                kind = r.kind,
                name = r.name,
                "unknown stored RBAC kind; ignored"
            );
            return None;
        }
    };
    match res {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(
                kind = r.kind,
                name = r.name,
                "stored RBAC object does not decode ({e}); it grants nothing"
            );
            None
        }
    }
}

/// Builds the policy from decoded objects plus the built-ins (appended last: on a name
/// clash the later object wins, and built-ins must never be shadowed).
fn policy_of<'a>(objects: impl IntoIterator<Item = &'a Decoded>) -> Policy {
    let mut p = Policy::default();
    for o in objects {
        match o {
            Decoded::ClusterRole(o) => p.cluster_roles.push(o.clone()),
            Decoded::ClusterRoleBinding(o) => p.cluster_role_bindings.push(o.clone()),
            Decoded::Role(o) => p.roles.push(o.clone()),
            Decoded::RoleBinding(o) => p.role_bindings.push(o.clone()),
        }
    }
    p.extend(builtin::policy());
    p
}

/// The current authorizer, recompiled on every RBAC change.
///
/// The decoded stored objects are kept in memory next to it, so a write costs one store
/// operation plus one compile (about a millisecond with 1,200 objects), not a reload and
/// decode of every object: applying a thousand bindings stays linear.
pub struct Authz {
    current: ArcSwap<Authorizer>,
    /// The stored objects as of the last write; the lock also serializes writers, so two
    /// concurrent changes cannot publish a policy that misses one of them.
    stored: Mutex<BTreeMap<ObjectKey, Decoded>>,
}

impl Authz {
    /// Compiles the stored policy.
    pub fn load(store: &dyn StateStore) -> Result<Authz, StoreError> {
        let stored: BTreeMap<ObjectKey, Decoded> = store
            .rbac_objects()?
            .iter()
            .filter_map(|r| Some((key_of(r), decode(r)?)))
            .collect();
        Ok(Authz {
            current: ArcSwap::from_pointee(Authorizer::new(&policy_of(stored.values()))),
            stored: Mutex::new(stored),
        })
    }

    /// The authorizer for this request.
    pub fn current(&self) -> Arc<Authorizer> {
        self.current.load_full()
    }

    /// Creates (`replace == false`) or creates-or-replaces an object in the store, then
    /// publishes the new policy. Returns whether it was created.
    pub fn put(
        &self,
        store: &dyn StateStore,
        record: &RbacRecord,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let created = store.put_rbac_object(record, replace)?;
        match decode(record) {
            Some(d) => stored.insert(key_of(record), d),
            None => stored.remove(&key_of(record)),
        };
        self.publish(&stored);
        Ok(created)
    }

    /// Deletes an object from the store, then publishes the new policy. Returns the
    /// deleted object.
    pub fn delete(
        &self,
        store: &dyn StateStore,
        kind: RbacKind,
        namespace: &str,
        name: &str,
    ) -> Result<RbacRecord, StoreError> {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let rec = store.delete_rbac_object(kind.kind(), namespace, name)?;
        stored.remove(&key_of(&rec));
        self.publish(&stored);
        Ok(rec)
    }

    /// The rules of the role a binding's `roleRef` points at (`kind` `ClusterRole` or, in
    /// `namespace`, `Role`), if it exists; built-ins win, as in the compiled policy.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<PolicyRule>> {
        let named = |m: &ObjectMeta| m.name.as_deref() == Some(name);
        if kind == "ClusterRole"
            && let Some(r) = builtin::cluster_roles()
                .into_iter()
                .find(|r| named(&r.metadata))
        {
            return Some(r.rules.unwrap_or_default());
        }
        let ns = if kind == "Role" { namespace } else { "" };
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        match stored.get(&(kind.to_string(), ns.to_string(), name.to_string()))? {
            Decoded::ClusterRole(r) => Some(r.rules.clone().unwrap_or_default()),
            Decoded::Role(r) => Some(r.rules.clone().unwrap_or_default()),
            _ => None,
        }
    }

    fn publish(&self, stored: &BTreeMap<ObjectKey, Decoded>) {
        self.current
            .store(Arc::new(Authorizer::new(&policy_of(stored.values()))));
    }
}
