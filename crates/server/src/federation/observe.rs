//! Reading what a cluster holds of the kinds a FederatedPolicy may place.

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
