//! The RBAC policy in force: built-in roles plus the RBAC objects in the resource store,
//! compiled into a [`cattery_rbac::Authorizer`].
//!
//! Requests read the current authorizer without locking (an `ArcSwap` load). The policy
//! follows the store ([`crate::follow`]): when a write to one of the four RBAC kinds has
//! been committed since it was compiled, it is compiled again from the store before the
//! next request reads it, so a binding applied with kubectl grants access on the user's
//! next request and deleting it revokes it, whichever handler made the write.

use std::sync::Arc;

use arc_swap::ArcSwap;
use cattery_rbac::{Authorizer, Policy, builtin};
use cattery_store::Filter;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::api::kinds::HubKind;
use crate::api::resources::HubStore;
use crate::follow::Follower;

/// Decodes every stored object of `kind`. An object that does not decode is skipped with
/// an error log rather than taking the whole policy down; it grants nothing, which is the
/// safe direction.
fn decoded<T: DeserializeOwned>(store: &HubStore, kind: HubKind) -> Vec<T> {
    let (objects, _) = store.snapshot(&Filter::all(kind));
    objects
        .iter()
        .filter_map(|o| match serde_json::from_value((**o).clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(
                    kind = ?kind,
                    name = o["metadata"]["name"].as_str().unwrap_or(""),
                    "stored RBAC object does not decode ({e}); it grants nothing"
                );
                None
            }
        })
        .collect()
}

/// The stored objects plus the built-ins (appended last: on a name clash the later object
/// wins, and built-ins must never be shadowed).
fn compile(store: &HubStore) -> Authorizer {
    let mut p = Policy {
        cluster_roles: decoded(store, HubKind::ClusterRole),
        cluster_role_bindings: decoded(store, HubKind::ClusterRoleBinding),
        roles: decoded(store, HubKind::Role),
        role_bindings: decoded(store, HubKind::RoleBinding),
    };
    p.extend(builtin::policy());
    Authorizer::new(&p)
}

/// The current authorizer, recompiled after every committed RBAC change.
pub(crate) struct Authz {
    current: ArcSwap<Authorizer>,
    follower: Follower,
}

impl Authz {
    /// Compiles the policy stored in `store`.
    pub(crate) fn new(store: Arc<HubStore>) -> Authz {
        let follower = Follower::new(store);
        Authz {
            current: ArcSwap::from_pointee(compile(follower.store())),
            follower,
        }
    }

    /// The authorizer for this request (recompiled first if an RBAC object changed).
    pub(crate) fn current(&self) -> Arc<Authorizer> {
        self.refresh();
        self.current.load_full()
    }

    fn refresh(&self) {
        self.follower.refresh(HubKind::is_rbac, |store| {
            self.current.store(Arc::new(compile(store)));
        });
    }

    /// Recompiles eagerly after each committed RBAC change until `stop`.
    pub(crate) async fn follow(&self, stop: CancellationToken) {
        self.follower.run(stop, || self.refresh()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn can_list_clusters(a: &Authz, user: &str) -> bool {
        a.current()
            .authorize(
                &cattery_rbac::Requester { user, groups: &[] },
                &cattery_rbac::Request::Resource {
                    verb: "list",
                    api_group: cattery_rbac::GROUP_CATTERY,
                    resource: "managedclusters",
                    subresource: None,
                    name: None,
                    namespace: None,
                },
            )
            .allowed
    }

    #[test]
    fn a_stored_binding_grants_on_the_next_read_and_its_deletion_revokes() {
        let store = Arc::new(HubStore::in_memory());
        let authz = Authz::new(store.clone());
        assert!(!can_list_clusters(&authz, "alice"));
        store
            .create(
                HubKind::ClusterRoleBinding,
                None,
                json!({"metadata": {"name": "alice-views"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": builtin::VIEWER},
                    "subjects": [{"kind": "User", "name": "alice"}]}),
            )
            .unwrap();
        assert!(can_list_clusters(&authz, "alice"));
        // A write of another kind does not lose the policy.
        store
            .create(
                HubKind::FederatedPolicy,
                None,
                json!({"metadata": {"name": "p"}, "spec": {}}),
            )
            .unwrap();
        assert!(can_list_clusters(&authz, "alice"));
        store
            .delete(HubKind::ClusterRoleBinding, None, "alice-views")
            .unwrap();
        assert!(!can_list_clusters(&authz, "alice"));
    }
}
