//! Reading what a cluster holds of the kinds a FederatedPolicy may place, directly
//! (the reconciler's rounds read the watches' caches, `cache.rs`, and come here only for
//! names the watches cannot see; removing a cluster lists once).

use cattery_api::federation::{OWNER_LABEL, ResourceKind};
use serde_json::Value;

use crate::cluster_client::{ClientError, ClusterClient, DynamicKind, ListParams};

/// Where `kind` lives in a cluster's API.
pub(crate) fn dynamic(kind: ResourceKind) -> DynamicKind {
    DynamicKind {
        api_version: kind.api_version(),
        kind: kind.kind(),
        plural: kind.plural(),
        namespaced: kind.namespaced(),
    }
}

/// The cluster's objects of every placeable kind that carry an owner label or sit at a
/// name in `placed` (owned or not: a foreign object there is a conflict the planner must
/// see). A kind the cluster does not serve (404: Calico not installed) has no objects.
pub(crate) async fn objects(
    client: &ClusterClient,
    placed: &[cattery_api::federation::ObjectKey],
) -> Result<Vec<Value>, ClientError> {
    let mut out = Vec::new();
    for kind in ResourceKind::ALL {
        let listed = match client
            .list_values(&dynamic(kind), None, &ListParams::default())
            .await
        {
            Ok(items) => items,
            Err(e) if e.code() == Some(404) => continue,
            Err(e) => return Err(e),
        };
        out.extend(listed.into_iter().filter(|o| {
            o.pointer("/metadata/labels")
                .and_then(|l| l.get(OWNER_LABEL))
                .is_some()
                || cattery_api::federation::ObjectKey::of(o).is_some_and(|k| placed.contains(&k))
        }));
    }
    Ok(out)
}

/// The objects at `keys` (absent ones, 404, are left out, and so are kinds the cluster
/// does not serve): what a cluster holds at names a policy places but where the watch of
/// owner-labelled objects saw nothing, so an object someone else created there is a
/// conflict the planner sees, never one we overwrite.
pub(crate) async fn at_names(
    client: &ClusterClient,
    keys: &[cattery_api::federation::ObjectKey],
) -> Result<Vec<Value>, ClientError> {
    let mut out = Vec::new();
    for k in keys {
        match client
            .get_value(&dynamic(k.kind), k.namespace.as_deref(), &k.name)
            .await
        {
            Ok(o) => out.push(o),
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
