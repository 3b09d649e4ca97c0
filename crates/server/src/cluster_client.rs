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
//! Types are k8s-openapi's (any [`k8s_openapi::Resource`]; a Calico kind only needs a type
//! implementing it). Verbs: get, list, server-side apply (`application/apply-patch+yaml`,
//! field manager [`FIELD_MANAGER`]), delete and watch.

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

/// `/api/v1[/namespaces/NS]/PLURAL` or `/apis/G/V[/namespaces/NS]/PLURAL`.
fn collection_path<K: Resource>(ns: Option<&str>) -> Result<String, ClientError> {
    let prefix = if K::GROUP.is_empty() {
        format!("/api/{}", K::VERSION)
    } else {
        format!("/apis/{}/{}", K::GROUP, K::VERSION)
    };
    Ok(match ns {
        Some(ns) => {
            check_name("namespace", ns)?;
            format!("{prefix}/namespaces/{ns}/{}", K::URL_PATH_SEGMENT)
        }
        None => format!("{prefix}/{}", K::URL_PATH_SEGMENT),
    })
}

fn object_path<K: Resource>(ns: Option<&str>, name: &str) -> Result<String, ClientError> {
    check_name("name", name)?;
    Ok(format!("{}/{name}", collection_path::<K>(ns)?))
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
        let meta = |f: &str| {
            value
                .pointer(&format!("/metadata/{f}"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let name = meta("name").unwrap_or_default();
        let ns = meta("namespace");
        let path = format!(
            "{}?{}",
            object_path::<K>(ns.as_deref(), &name)?,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("fieldManager", FIELD_MANAGER)
                .append_pair("force", if force { "true" } else { "false" })
                .finish()
        );
        // JSON is YAML: the apply content type takes either.
        let bytes = self
            .call(
                Method::PATCH,
                &path,
                Some("application/apply-patch+yaml"),
                Body::from(value.to_string()),
            )
            .await?;
        self.decode(&path, &bytes)
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
        let mut extra = vec![("watch", "true"), ("allowWatchBookmarks", "true")];
        if let Some(rv) = resource_version {
            extra.push(("resourceVersion", rv));
        }
        let path = format!("{}?{}", collection_path::<K>(ns)?, params.query(&extra));
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
