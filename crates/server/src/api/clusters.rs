//! What is special about `ManagedCluster` (the generic handlers in [`super::resources`]
//! do the rest): registering issues a certificate and manifest, removing revokes it and
//! closes the tunnel, reads add the registry's live status; and the management cluster's
//! own endpoint.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use cattery_api::wire::from_value;
use cattery_api::{API_VERSION, ManagedCluster, ManagementCluster};
use serde_json::{Value, json};

use super::kinds::HubKind;
use super::resources::QueryPairs;
use super::{ApiError, respond};
use crate::AppState;
use crate::manifest::{ManifestFormat, ManifestInput};
use crate::store::ClusterRecord;

/// Registers a validated ManagedCluster: issues its certificate, records it in the
/// registry (certificate index, tunnel state) and stores the object; answers it with its
/// installation manifest, which is shown this once and never stored.
/// `?manifestFormat=` picks `kubernetes` (default) or `agent-config`.
pub(crate) fn create(st: &AppState, q: &QueryPairs, obj: Value) -> Result<Value, ApiError> {
    let format: ManifestFormat = q
        .get("manifestFormat")
        .unwrap_or("")
        .parse()
        .map_err(|e: String| ApiError::new(400, e))?;
    let cluster: ManagedCluster = from_value(obj.clone())?;
    let name = cluster.metadata.name.clone();
    if st.registry.get(&name).is_some() {
        return Err(ApiError::with_reason(
            409,
            "AlreadyExists",
            format!("managedclusters {name:?} already exists"),
        ));
    }
    let issued = st
        .ca
        .issue_client(&name)
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let record = ClusterRecord {
        name: name.clone(),
        uid: crate::auth::random_id(16),
        labels: cluster.metadata.labels.clone(),
        created_at: cattery_api::now_rfc3339(),
        cert_fingerprint: cattery_tunnel::fingerprint_sha256(&issued.cert_der),
        cert_not_after: cattery_api::rfc3339(issued.not_after),
    };
    st.registry.create(record.clone())?;
    let stored = match st
        .resources
        .transaction(|tx| tx.create_with(HubKind::ManagedCluster, None, obj, |o| fill(o, &record)))
    {
        Ok(o) => o,
        Err(e) => {
            // Keep registry and store in step: a cluster is registered in both or neither.
            let _ = st.registry.remove(&name);
            return Err(e.into());
        }
    };
    let mut v = (*stored).clone();
    add_status(st, &mut v);
    v["spec"]["installationManifest"] = json!(crate::manifest::render(
        format,
        &ManifestInput {
            cluster: &name,
            management_cluster_addr: &st.address,
            cert_pem: &issued.cert_pem,
            key_pem: &issued.key_pem,
            ca_pem: st.ca.cert_pem(),
        },
    ));
    tracing::info!(cluster = name, "cluster registered");
    Ok(v)
}

/// Server-owned parts of a stored ManagedCluster, from its registry record.
fn fill(o: &mut Value, r: &ClusterRecord) {
    o["metadata"]["uid"] = json!(r.uid);
    o["metadata"]["creationTimestamp"] = json!(r.created_at);
    o["spec"] = json!({
        "certificateFingerprint": r.cert_fingerprint,
        "certificateExpires": r.cert_not_after,
    });
}

/// Removes a cluster: revokes its certificates and closes its tunnel (registry), then
/// deletes the object. Either side missing the cluster is not an error while the other
/// has it (a store written by an older version, or a crash between the two writes).
pub(crate) fn delete(st: &AppState, name: &str) -> Result<Value, ApiError> {
    let removed = st.registry.remove(name);
    let last = st.resources.delete(HubKind::ManagedCluster, None, name);
    let v = match (removed, last) {
        (Ok(view), Ok(last)) => {
            let mut v = (*last).clone();
            v["status"] = serde_json::to_value(view.status).unwrap_or_default();
            v
        }
        (Ok(view), Err(_)) => serde_json::to_value(view).unwrap_or_default(),
        (Err(_), Ok(last)) => (*last).clone(),
        (Err(e), Err(_)) => return Err(e.into()),
    };
    tracing::info!(cluster = name, "cluster removed");
    Ok(v)
}

/// Adds the registry's live status (connection condition, agent, versions) to a stored
/// ManagedCluster.
pub(crate) fn add_status(st: &AppState, obj: &mut Value) {
    if let Some(status) = live_status(st, obj) {
        obj["status"] = serde_json::to_value(status).unwrap_or_default();
    }
}

/// The registry's live status of the stored ManagedCluster `obj`.
pub(crate) fn live_status(st: &AppState, obj: &Value) -> Option<cattery_api::ManagedClusterStatus> {
    st.registry.status(obj["metadata"]["name"].as_str()?)
}

/// Brings the resource store in step with the registry at startup: clusters registered
/// before the store existed (or by an older version) get their object, with their labels,
/// uid and creation time; objects whose registration is gone are removed.
pub(crate) fn reconcile_store(
    registry: &crate::registry::Registry,
    resources: &super::resources::HubStore,
) -> Result<(), cattery_store::StoreError> {
    let records = registry.records();
    resources.transaction(|tx| {
        for r in &records {
            if tx.get(HubKind::ManagedCluster, None, &r.name).is_none() {
                let obj = json!({"metadata": {"name": r.name, "labels": r.labels}});
                tx.create_with(HubKind::ManagedCluster, None, obj, |o| fill(o, r))?;
                tracing::info!(cluster = r.name, "cluster moved into the resource store");
            }
        }
        for o in tx.objects(HubKind::ManagedCluster, None) {
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            if !records.iter().any(|r| r.name == name) {
                tx.delete_with(HubKind::ManagedCluster, None, &name, |_| {})?;
                tracing::warn!(
                    cluster = name,
                    "removed a stored cluster with no registration"
                );
            }
        }
        Ok(())
    })
}

/// `GET /apis/cattery.dev/v1/managementclusters/default`: the address agents dial.
pub async fn management_cluster(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mc = ManagementCluster {
        api_version: API_VERSION.into(),
        kind: "ManagementCluster".into(),
        metadata: cattery_api::ObjectMeta {
            name: "default".into(),
            ..Default::default()
        },
        spec: cattery_api::ManagementClusterSpec {
            address: state.address.clone(),
            tls: Default::default(),
        },
    };
    respond(req.headers(), http::StatusCode::OK, &mc)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::Registry;
    use crate::store::{SqliteStore, StateStore};

    fn record(name: &str) -> ClusterRecord {
        ClusterRecord {
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: [("env".to_string(), "prod".to_string())].into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            cert_fingerprint: format!("fp-{name}"),
            cert_not_after: "2027-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn registered_clusters_move_into_the_store_once_and_stale_objects_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let state = Arc::new(SqliteStore::open(&db).unwrap());
        state.create_cluster(&record("a")).unwrap();
        state.create_cluster(&record("b")).unwrap();
        let registry = Registry::open(state.clone()).unwrap();
        let store = crate::api::resources::open_store(&db).unwrap();
        reconcile_store(&registry, &store).unwrap();
        let a = store.get(HubKind::ManagedCluster, None, "a").unwrap();
        assert_eq!(a["metadata"]["labels"]["env"], "prod");
        assert_eq!(a["metadata"]["uid"], "uid-a");
        assert_eq!(a["metadata"]["creationTimestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(a["spec"]["certificateFingerprint"], "fp-a");
        // A second start changes nothing (no new resourceVersion).
        let rv = store.current_rv();
        drop(store);
        let store = crate::api::resources::open_store(&db).unwrap();
        reconcile_store(&registry, &store).unwrap();
        assert_eq!(store.current_rv(), rv);
        // A registration removed behind the store's back takes its object with it.
        registry.remove("b").unwrap();
        let registry = Registry::open(state).unwrap();
        reconcile_store(&registry, &store).unwrap();
        assert!(store.get(HubKind::ManagedCluster, None, "b").is_err());
        assert!(store.get(HubKind::ManagedCluster, None, "a").is_ok());
    }
}
