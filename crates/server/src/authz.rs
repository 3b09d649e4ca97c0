//! The RBAC policy in force: built-in roles plus the stored RBAC objects, compiled into a
//! [`cattery_rbac::Authorizer`].
//!
//! Requests read the current authorizer without locking (an `ArcSwap` load); every RBAC
//! write rebuilds it from the store and swaps it in, so a change applies to the very next
//! request. Writes are serialized so two concurrent changes cannot publish a policy that
//! misses one of them.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cattery_rbac::{
    Authorizer, ClusterRole, ClusterRoleBinding, Policy, Role, RoleBinding, builtin,
};

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

/// Builds the policy from stored records plus the built-ins (appended last: on a name
/// clash the later object wins, and built-ins must never be shadowed). A record that no
/// longer decodes is skipped with an error log rather than taking the whole policy down;
/// it grants nothing, which is the safe direction.
pub fn policy_from(records: &[RbacRecord]) -> Policy {
    let mut p = Policy::default();
    for r in records {
        let res = match RbacKind::from_kind(&r.kind) {
            Some(RbacKind::ClusterRole) => {
                serde_json::from_str::<ClusterRole>(&r.body).map(|o| p.cluster_roles.push(o))
            }
            Some(RbacKind::ClusterRoleBinding) => {
                serde_json::from_str::<ClusterRoleBinding>(&r.body)
                    .map(|o| p.cluster_role_bindings.push(o))
            }
            Some(RbacKind::Role) => serde_json::from_str::<Role>(&r.body).map(|o| p.roles.push(o)),
            Some(RbacKind::RoleBinding) => {
                serde_json::from_str::<RoleBinding>(&r.body).map(|o| p.role_bindings.push(o))
            }
            None => {
                tracing::error!(
                    kind = r.kind,
                    name = r.name,
                    "unknown stored RBAC kind; ignored"
                );
                Ok(())
            }
        };
        if let Err(e) = res {
            tracing::error!(
                kind = r.kind,
                name = r.name,
                "stored RBAC object does not decode ({e}); it grants nothing"
            );
        }
    }
    p.extend(builtin::policy());
    p
}

/// The current authorizer, rebuilt on every RBAC change.
pub struct Authz {
    current: ArcSwap<Authorizer>,
    write: Mutex<()>,
}

impl Authz {
    /// Compiles the stored policy.
    pub fn load(store: &dyn StateStore) -> Result<Authz, StoreError> {
        let policy = policy_from(&store.rbac_objects()?);
        Ok(Authz {
            current: ArcSwap::from_pointee(Authorizer::new(&policy)),
            write: Mutex::new(()),
        })
    }

    /// A fixed policy (benchmarks and tests).
    pub fn fixed(policy: &Policy) -> Authz {
        Authz {
            current: ArcSwap::from_pointee(Authorizer::new(policy)),
            write: Mutex::new(()),
        }
    }

    /// The authorizer for this request.
    pub fn current(&self) -> Arc<Authorizer> {
        self.current.load_full()
    }

    /// Runs `change` against the store, then recompiles and publishes the policy.
    pub fn change<T>(
        &self,
        store: &dyn StateStore,
        change: impl FnOnce(&dyn StateStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _serial = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let out = change(store)?;
        let policy = policy_from(&store.rbac_objects()?);
        self.current.store(Arc::new(Authorizer::new(&policy)));
        Ok(out)
    }
}
