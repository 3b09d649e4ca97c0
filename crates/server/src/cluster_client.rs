//! A typed Kubernetes client over a cluster's tunnel, for the management plane's own
//! controllers (the federation reconciler next).
//!
//! Requests go to the URI authority [`SERVICE_AUTHORITY`]: the agent forwards them
//! impersonating the fixed ServiceAccount [`SERVICE_IDENTITY`], so the managed cluster's
//! RBAC on that ServiceAccount (granted by the installation manifest, see
//! [`crate::manifest::controller_rules`]) limits what the controllers can do. Users'
//! proxied requests always carry `KUBE_AUTHORITY` (set by [`crate::proxy`]), so no user can
//! act as this identity. See `docs/design/0011-hub-events-and-cluster-client.md`.
//!
//! Types are k8s-openapi's (any [`k8s_openapi::Resource`]). Kinds without a type (Calico's)
//! go through the JSON verbs ([`DynamicKind`]: `list_values`, `create_value`,
//! `apply_value`, `delete_value` with preconditions), which the typed ones are built on
//! where they overlap. Verbs: get, list, create, server-side apply
//! (`application/apply-patch+yaml`, field manager [`FIELD_MANAGER`]), delete and watch.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use cattery_api::agent_protocol::{SERVICE_AUTHORITY, SERVICE_IDENTITY};
use cattery_tunnel::session::Sender;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
use k8s_openapi::{ListableResource, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::registry::{Connection, LookupError, Registry};

/// The field manager of every server-side apply the controllers send.
pub const FIELD_MANAGER: &str = "cattery";
/// `User-Agent` of the controllers' requests (shows in the cluster's audit log).
pub const USER_AGENT: &str = concat!("cattery-controller/", env!("CARGO_PKG_VERSION"));
/// How long a non-watch request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read (a watch event line is bounded by the same).
pub const MAX_RESPONSE: usize = 16 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster is unknown or not connected.
    #[error(transparent)]
    NotConnected(#[from] LookupError),
    /// A name or namespace that cannot be part of a URL path.
    #[error("invalid {what} {value:?}: must be a non-empty DNS name")]
    InvalidName {
        /// `name` or `namespace`.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The tunnel failed or timed out.
    #[error("cluster {cluster:?}: {message}")]
    Transport {
        /// Cluster name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The cluster (or the agent) answered with an error `Status`.
    #[error("cluster {cluster:?} answered {code} {reason}: {message}")]
    Status {
        /// Cluster name.
        cluster: String,
        /// HTTP status code.
        code: u16,
        /// `Status.reason` (empty when the body was not a Status).
        reason: String,
        /// `Status.message` (or the body).
        message: String,
    },
    /// The answer was not the expected object.
    #[error("cluster {cluster:?}: cannot decode the answer to {what}: {message}")]
    Decode {
        /// Cluster name.
        cluster: String,
        /// What was asked.
        what: String,
        /// The decoding error.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status code when the cluster answered with an error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
}

impl ListParams {
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(l) = &self.label_selector {
            q.append_pair("labelSelector", l);
        }
        if let Some(f) = &self.field_selector {
            q.append_pair("fieldSelector", f);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        q.finish()
    }
}

/// A list's objects and the resourceVersion to watch them from.
#[derive(Clone, Debug, Default)]
pub struct ValueList {
    /// The objects, each with its `apiVersion` and `kind` set.
    pub items: Vec<serde_json::Value>,
    /// The list's `metadata.resourceVersion` (empty when the cluster sent none).
    pub resource_version: String,
}

/// A connected cluster's Kubernetes API, as the controllers' identity.
#[derive(Clone, Debug)]
pub struct ClusterClient {
    cluster: String,
    sender: Sender<Body>,
}

fn check_name(what: &'static str, value: &str) -> Result<(), ClientError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && value.split('.').all(|label| !label.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidName {
            what,
            value: value.into(),
        })
    }
}

/// Where a kind lives in a cluster's API, for objects handled as JSON
/// ([`ClusterClient::list_values`] and friends): Calico's kinds have no k8s-openapi type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynamicKind {
    /// `apiVersion` (`v1` for the core group, `group/version` otherwise).
    pub api_version: &'static str,
    /// `kind`, written into listed items (a list's items do not carry it).
    pub kind: &'static str,
    /// Resource name in URLs (`networkpolicies`).
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

/// `/api/v1[/namespaces/NS]/PLURAL` or `/apis/G/V[/namespaces/NS]/PLURAL`.
fn dynamic_collection_path(
    api_version: &str,
    plural: &str,
    ns: Option<&str>,
) -> Result<String, ClientError> {
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Ok(match ns {
        Some(ns) => {
            check_name("namespace", ns)?;
            format!("{prefix}/namespaces/{ns}/{plural}")
        }
        None => format!("{prefix}/{plural}"),
    })
}

fn collection_path<K: Resource>(ns: Option<&str>) -> Result<String, ClientError> {
    dynamic_collection_path(K::API_VERSION, K::URL_PATH_SEGMENT, ns)
}

fn object_path<K: Resource>(ns: Option<&str>, name: &str) -> Result<String, ClientError> {
    check_name("name", name)?;
    Ok(format!("{}/{name}", collection_path::<K>(ns)?))
}

fn dynamic_object_path(
    kind: &DynamicKind,
    ns: Option<&str>,
    name: &str,
) -> Result<String, ClientError> {
    check_name("name", name)?;
    Ok(format!(
        "{}/{name}",
        dynamic_collection_path(kind.api_version, kind.plural, ns)?
    ))
}

fn apply_query(force: bool) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("fieldManager", FIELD_MANAGER)
        .append_pair("force", if force { "true" } else { "false" })
        .finish()
}

fn meta_field(obj: &serde_json::Value, f: &str) -> Option<String> {
    obj.pointer(&format!("/metadata/{f}"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The namespace of `obj` when its kind is namespaced (an error when missing), `None`
/// for a cluster-scoped kind.
fn object_namespace(
    kind: &DynamicKind,
    obj: &serde_json::Value,
) -> Result<Option<String>, ClientError> {
    if !kind.namespaced {
        return Ok(None);
    }
    match meta_field(obj, "namespace") {
        Some(ns) => Ok(Some(ns)),
        None => Err(ClientError::InvalidName {
            what: "namespace",
            value: String::new(),
        }),
    }
}

impl ClusterClient {
    /// A client for the tunnel of `connection` (what a per-cluster task is handed).
    pub fn new(connection: &Connection) -> Self {
        ClusterClient {
            cluster: connection.name.clone(),
            sender: connection.sender.clone(),
        }
    }

    /// A client for cluster `name`'s live tunnel.
    pub fn connect(registry: &Registry, name: &str) -> Result<Self, ClientError> {
        Ok(ClusterClient {
            cluster: name.into(),
            sender: registry.sender(name)?,
        })
    }

    /// The Kubernetes user the cluster sees for these requests.
    pub fn identity(&self) -> &'static str {
        SERVICE_IDENTITY
    }

    fn transport(&self, message: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            cluster: self.cluster.clone(),
            message: message.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{SERVICE_AUTHORITY}{path_and_query}"))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(body).map_err(|e| self.transport(e))?;
        let mut sender = self.sender.clone();
        sender
            .ready()
            .await
            .map_err(|e| self.transport(format!("the tunnel is closed: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| self.transport(e))
    }

    /// Sends a request and reads the whole answer; error statuses become
    /// [`ClientError::Status`].
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Bytes, ClientError> {
        let what = format!("{method} {path_and_query}");
        let exchange = async {
            let res = self
                .send(method, path_and_query, content_type, body)
                .await?;
            let status = res.status();
            let bytes = http_body_util::Limited::new(res.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| self.transport(format!("reading the answer to {what}: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                self.transport(format!(
                    "{what} did not complete within {REQUEST_TIMEOUT:?}"
                ))
            })??;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(self.status_error(status, &bytes))
        }
    }

    fn status_error(&self, status: StatusCode, body: &[u8]) -> ClientError {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |f: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(f))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        ClientError::Status {
            cluster: self.cluster.clone(),
            code: status.as_u16(),
            reason: field("reason").unwrap_or_default(),
            message: field("message")
                .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(512).collect()),
        }
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            cluster: self.cluster.clone(),
            what: what.into(),
            message: e.to_string(),
        })
    }

    /// One object (`ns` is `None` for cluster-scoped types).
    pub async fn get<K: Resource + DeserializeOwned>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<K, ClientError> {
        let path = object_path::<K>(ns, name)?;
        let bytes = self.call(Method::GET, &path, None, Body::empty()).await?;
        self.decode(&path, &bytes)
    }

    /// The objects of type `K` in `ns` (all namespaces when `None`) that `params` selects.
    pub async fn list<K: ListableResource + DeserializeOwned>(
        &self,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<k8s_openapi::List<K>, ClientError> {
        let path = format!("{}?{}", collection_path::<K>(ns)?, params.query(&[]));
        let bytes = self.call(Method::GET, &path, None, Body::empty()).await?;
        self.decode(&path, &bytes)
    }

    /// Server-side apply of `obj` (its `metadata.name`, and `metadata.namespace` for a
    /// namespaced type) as field manager [`FIELD_MANAGER`], with `force` taking over
    /// fields another manager owns. Returns the object as stored.
    pub async fn apply<K: Resource + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
        force: bool,
    ) -> Result<K, ClientError> {
        let mut value = serde_json::to_value(obj).map_err(|e| ClientError::Decode {
            cluster: self.cluster.clone(),
            what: format!("the {} to apply", K::KIND),
            message: e.to_string(),
        })?;
        // An apply body names its type; k8s-openapi types serialize it, others may not.
        value["apiVersion"] = K::API_VERSION.into();
        value["kind"] = K::KIND.into();
        // A typed object names its namespace exactly when its type is namespaced.
        let kind = DynamicKind {
            api_version: K::API_VERSION,
            kind: K::KIND,
            plural: K::URL_PATH_SEGMENT,
            namespaced: value.pointer("/metadata/namespace").is_some(),
        };
        let stored = self.apply_value(&kind, &value, force).await?;
        serde_json::from_value(stored).map_err(|e| ClientError::Decode {
            cluster: self.cluster.clone(),
            what: format!("the applied {}", K::KIND),
            message: e.to_string(),
        })
    }

    /// The objects of `kind` in `ns` (all namespaces when `None`) that `params` selects,
    /// as JSON, each with its `apiVersion` and `kind` set (list items carry neither).
    pub async fn list_values(
        &self,
        kind: &DynamicKind,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        Ok(self.list_values_versioned(kind, ns, params).await?.items)
    }

    /// [`ClusterClient::list_values`] with the list's `metadata.resourceVersion`, the
    /// point a watch of the same objects resumes from ([`ClusterClient::watch_values`]).
    pub async fn list_values_versioned(
        &self,
        kind: &DynamicKind,
        ns: Option<&str>,
        params: &ListParams,
    ) -> Result<ValueList, ClientError> {
        let path = format!(
            "{}?{}",
            dynamic_collection_path(kind.api_version, kind.plural, ns)?,
            params.query(&[])
        );
        let bytes = self.call(Method::GET, &path, None, Body::empty()).await?;
        let list: serde_json::Value = self.decode(&path, &bytes)?;
        let Some(items) = list.get("items").and_then(|i| i.as_array()) else {
            return Err(ClientError::Decode {
                cluster: self.cluster.clone(),
                what: path,
                message: "the answer has no `items` list".into(),
            });
        };
        let resource_version = list
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(ValueList {
            items: items
                .iter()
                .cloned()
                .map(|mut o| {
                    o["apiVersion"] = kind.api_version.into();
                    o["kind"] = kind.kind.into();
                    o
                })
                .collect(),
            resource_version,
        })
    }

    /// One object of `kind` as JSON, with its `apiVersion` and `kind` set.
    pub async fn get_value(
        &self,
        kind: &DynamicKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let ns = if kind.namespaced { ns } else { None };
        let path = dynamic_object_path(kind, ns, name)?;
        let bytes = self.call(Method::GET, &path, None, Body::empty()).await?;
        let mut obj: serde_json::Value = self.decode(&path, &bytes)?;
        obj["apiVersion"] = kind.api_version.into();
        obj["kind"] = kind.kind.into();
        Ok(obj)
    }

    /// Creates `obj` (a POST: fails with 409 `AlreadyExists` when someone created it
    /// first, where an apply would merge into their object). Returns it as stored.
    pub async fn create_value(
        &self,
        kind: &DynamicKind,
        obj: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let ns = object_namespace(kind, obj)?;
        let path = format!(
            "{}?{}",
            dynamic_collection_path(kind.api_version, kind.plural, ns.as_deref())?,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("fieldManager", FIELD_MANAGER)
                .finish()
        );
        let bytes = self
            .call(
                Method::POST,
                &path,
                Some("application/json"),
                Body::from(obj.to_string()),
            )
            .await?;
        self.decode(&path, &bytes)
    }

    /// Server-side apply of a JSON object (its `apiVersion`, `kind`, `metadata.name` and,
    /// for a namespaced kind, `metadata.namespace` must be set) as field manager
    /// [`FIELD_MANAGER`]. Returns the object as stored.
    pub async fn apply_value(
        &self,
        kind: &DynamicKind,
        obj: &serde_json::Value,
        force: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let name = meta_field(obj, "name").unwrap_or_default();
        let ns = object_namespace(kind, obj)?;
        let path = format!(
            "{}?{}",
            dynamic_object_path(kind, ns.as_deref(), &name)?,
            apply_query(force)
        );
        // JSON is YAML: the apply content type takes either.
        let bytes = self
            .call(
                Method::PATCH,
                &path,
                Some("application/apply-patch+yaml"),
                Body::from(obj.to_string()),
            )
            .await?;
        self.decode(&path, &bytes)
    }

    /// Deletes one object, only if it still has `uid` and `resource_version` when given
    /// (`DeleteOptions.preconditions`): an object recreated or changed meanwhile survives
    /// with a 409.
    pub async fn delete_value(
        &self,
        kind: &DynamicKind,
        ns: Option<&str>,
        name: &str,
        uid: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<(), ClientError> {
        let ns = if kind.namespaced { ns } else { None };
        let path = dynamic_object_path(kind, ns, name)?;
        let mut pre = serde_json::Map::new();
        if let Some(u) = uid {
            pre.insert("uid".into(), u.into());
        }
        if let Some(rv) = resource_version {
            pre.insert("resourceVersion".into(), rv.into());
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": pre,
        });
        self.call(
            Method::DELETE,
            &path,
            Some("application/json"),
            Body::from(body.to_string()),
        )
        .await
        .map(drop)
    }

    /// Deletes one object.
    pub async fn delete<K: Resource>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ClientError> {
        let path = object_path::<K>(ns, name)?;
        self.call(Method::DELETE, &path, None, Body::empty())
            .await
            .map(drop)
    }

    /// Watches type `K` in `ns` from `resource_version` (`None`: the current objects as
    /// ADDED, then changes), with bookmarks. The stream ends when the cluster ends it
    /// (`timeoutSeconds`, a restart) or the tunnel closes; a watcher then lists again or
    /// resumes from the last resourceVersion it saw.
    pub async fn watch<K: Resource + DeserializeOwned>(
        &self,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<K>, ClientError> {
        self.watch_at(collection_path::<K>(ns)?, params, resource_version)
            .await
    }

    /// [`ClusterClient::watch`] for a kind handled as JSON. Event objects are as the
    /// cluster sends them (a watch event's object carries its `apiVersion` and `kind`).
    pub async fn watch_values(
        &self,
        kind: &DynamicKind,
        ns: Option<&str>,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<serde_json::Value>, ClientError> {
        let collection = dynamic_collection_path(kind.api_version, kind.plural, ns)?;
        self.watch_at(collection, params, resource_version).await
    }

    async fn watch_at<K: DeserializeOwned>(
        &self,
        collection: String,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<K>, ClientError> {
        let mut extra = vec![("watch", "true"), ("allowWatchBookmarks", "true")];
        if let Some(rv) = resource_version {
            extra.push(("resourceVersion", rv));
        }
        let path = format!("{collection}?{}", params.query(&extra));
        let res = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.send(Method::GET, &path, None, Body::empty()),
        )
        .await
        .map_err(|_| {
            self.transport(format!(
                "GET {path} was not answered within {REQUEST_TIMEOUT:?}"
            ))
        })??;
        if !res.status().is_success() {
            let status = res.status();
            let body = http_body_util::Limited::new(res.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(self.status_error(status, &body));
        }
        Ok(WatchStream {
            client: self.clone(),
            what: path,
            body: res.into_body(),
            buf: BytesMut::new(),
            lines: VecDeque::new(),
            _kind: std::marker::PhantomData,
        })
    }
}

/// The events of a watch ([`ClusterClient::watch`]).
pub struct WatchStream<K> {
    client: ClusterClient,
    what: String,
    body: hyper::body::Incoming,
    buf: BytesMut,
    lines: VecDeque<Bytes>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: DeserializeOwned> WatchStream<K> {
    /// The next event; `None` when the stream has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent<K>, ClientError>> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(self.client.decode(&self.what, &line));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => {
                    return Some(Err(self
                        .client
                        .transport(format!("watch {}: {e}", self.what))));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.buf.extend_from_slice(&data);
                    while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                        let line = self.buf.split_to(i + 1).freeze();
                        self.lines.push_back(line);
                    }
                    if self.buf.len() > MAX_RESPONSE {
                        return Some(Err(self.client.transport(format!(
                            "watch {}: an event exceeds {MAX_RESPONSE} bytes",
                            self.what
                        ))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    #[test]
    fn typed_paths() {
        assert_eq!(
            collection_path::<Namespace>(None).unwrap(),
            "/api/v1/namespaces"
        );
        assert_eq!(
            object_path::<Pod>(Some("shop"), "web").unwrap(),
            "/api/v1/namespaces/shop/pods/web"
        );
        assert_eq!(
            collection_path::<NetworkPolicy>(Some("shop")).unwrap(),
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"
        );
        for bad in ["", "a/b", "a?b", "../x", "..", "A"] {
            assert!(object_path::<Pod>(Some("shop"), bad).is_err(), "{bad:?}");
            assert!(collection_path::<Pod>(Some(bad)).is_err(), "{bad:?}");
        }
        let q = ListParams {
            label_selector: Some("app in (a,b)".into()),
            field_selector: None,
        }
        .query(&[("watch", "true")]);
        assert_eq!(q, "labelSelector=app+in+%28a%2Cb%29&watch=true");
    }
}
