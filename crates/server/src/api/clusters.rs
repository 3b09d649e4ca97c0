//! `ManagedCluster` endpoints: register, list, get, remove.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use cattery_api::wire::{check_type, decode};
use cattery_api::{API_VERSION, List, ManagedCluster, ManagementCluster, validate_dns1123_label};
use serde::Deserialize;

use super::extract::{Path, parse_query};
use super::{ApiError, MAX_RESOURCE_BODY, read_body, respond};
use crate::AppState;
use crate::manifest::{ManifestFormat, ManifestInput};
use crate::store::ClusterRecord;

/// Query parameters of the create call.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateQuery {
    /// `kubernetes` (default) or `agent-config`.
    #[serde(default)]
    manifest_format: Option<String>,
}

/// `POST /apis/cattery.dev/v1/managedclusters`: registers a cluster and returns its
/// installation manifest once.
pub async fn create(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    // The body is read before the query is checked, so an HTTP/2 client gets the 400
    // instead of a reset stream.
    let body = read_body(req, MAX_RESOURCE_BODY).await?;
    let q: CreateQuery = parse_query(&query)?;
    let format: ManifestFormat = q
        .manifest_format
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|e: String| ApiError::new(400, e))?;
    let mut cluster: ManagedCluster = decode(&body)?;
    check_type(
        &cluster.api_version,
        &cluster.kind,
        &[API_VERSION],
        "ManagedCluster",
    )?;
    let name = cluster.metadata.name.clone();
    super::check_metadata("ManagedCluster", &cluster.metadata, true)?;
    validate_dns1123_label(&name).map_err(|e| {
        ApiError::with_reason(400, "Invalid", format!("ManagedCluster metadata.name: {e}"))
    })?;
    if name == cattery_api::MANAGEMENT_CLUSTER_NAME {
        return Err(ApiError::with_reason(
            400,
            "Invalid",
            format!(
                "ManagedCluster metadata.name: {name:?} is reserved for the management plane itself"
            ),
        ));
    }
    if state.registry.get(&name).is_some() {
        return Err(ApiError::with_reason(
            409,
            "AlreadyExists",
            format!("managedclusters {name:?} already exists"),
        ));
    }
    let issued = state
        .ca
        .issue_client(&name)
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let record = ClusterRecord {
        name: name.clone(),
        uid: crate::auth::random_id(16),
        labels: std::mem::take(&mut cluster.metadata.labels),
        created_at: cattery_api::now_rfc3339(),
        cert_fingerprint: cattery_tunnel::fingerprint_sha256(&issued.cert_der),
        cert_not_after: cattery_api::rfc3339(issued.not_after),
    };
    let mut created = state.registry.create(record)?;
    created.spec.installation_manifest = Some(crate::manifest::render(
        format,
        &ManifestInput {
            cluster: &name,
            management_cluster_addr: &state.address,
            cert_pem: &issued.cert_pem,
            key_pem: &issued.key_pem,
            ca_pem: state.ca.cert_pem(),
        },
    ));
    tracing::info!(cluster = name, "cluster registered");
    Ok(respond(&headers, http::StatusCode::CREATED, &created))
}

/// `GET /apis/cattery.dev/v1/managedclusters`: the clusters the caller may list (all of
/// them with an unrestricted `list`, else those named in their rules' resourceNames).
pub async fn list(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let who = super::identity(&req);
    let names = state.authz.current().allowed_names(
        &cattery_rbac::Requester {
            user: &who.user,
            groups: &who.groups,
        },
        "list",
        cattery_rbac::GROUP_CATTERY,
        "managedclusters",
        None,
        None,
    );
    let items = state
        .registry
        .list()
        .into_iter()
        .filter(|c| names.contains(&c.metadata.name))
        .collect();
    let list = List::new(API_VERSION, "ManagedCluster", items);
    respond(req.headers(), http::StatusCode::OK, &list)
}

/// `GET /apis/cattery.dev/v1/managedclusters/{name}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let c = state
        .registry
        .get(&name)
        .ok_or_else(|| ApiError::new(404, format!("managedclusters {name:?} not found")))?;
    Ok(respond(req.headers(), http::StatusCode::OK, &c))
}

/// `DELETE /apis/cattery.dev/v1/managedclusters/{name}`: closes the tunnel and revokes the
/// cluster's certificate.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let removed = state.registry.remove(&name)?;
    tracing::info!(cluster = name, "cluster removed");
    Ok(respond(req.headers(), http::StatusCode::OK, &removed))
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
