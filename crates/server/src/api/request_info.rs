//! What a request asks for, in RBAC terms (Kubernetes calls this `RequestInfo`).
//!
//! Every route of the API maps to a verb and either a resource (API group, resource,
//! subresource, namespace, name) or a non-resource path. Log reads name their clusters in
//! the body or query, so their check is delegated to the handler, which knows them.

use cattery_rbac::{GROUP_CATTERY, GROUP_RBAC};

/// The RBAC view of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Kubernetes verb.
    pub verb: String,
    /// What it is about.
    pub target: Target,
}

/// What a request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A resource of an API group.
    Resource {
        /// API group.
        api_group: String,
        /// Resource (plural).
        resource: String,
        /// Subresource, e.g. `proxy`.
        subresource: Option<String>,
        /// Namespace of namespaced RBAC objects.
        namespace: Option<String>,
        /// Object name.
        name: Option<String>,
    },
    /// A path that is not a resource (`/version`, `/metrics`, unknown paths).
    NonResource {
        /// The path.
        path: String,
    },
    /// A log read: the handler authorizes per cluster once it has parsed the request.
    Logs {
        /// Log type as written in the URL (validated by the handler).
        log_type: String,
    },
}

fn resource(
    api_group: &str,
    resource: &str,
    subresource: Option<&str>,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Target {
    Target::Resource {
        api_group: api_group.into(),
        resource: resource.into(),
        subresource: subresource.map(Into::into),
        namespace: namespace.map(Into::into),
        name: name.map(Into::into),
    }
}

/// The verb of a request on a collection (`name` absent) or an object.
fn rest_verb(method: &http::Method, has_name: bool, query: Option<&str>) -> &'static str {
    let watch = query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    });
    match (method.as_str(), has_name) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

/// The verb of a request through a cluster proxy, as kube-apiserver authorizes its own
/// proxy subresources; an upgrade (exec, attach, port-forward) is a `create`.
fn proxy_verb(method: &http::Method, upgrade: bool) -> &'static str {
    if upgrade || method == http::Method::CONNECT {
        return "create";
    }
    match method.as_str() {
        "GET" | "HEAD" | "OPTIONS" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "unknown",
    }
}

/// Resolves a request. `upgrade` is whether it asks for a protocol upgrade.
pub fn resolve(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    upgrade: bool,
) -> RequestInfo {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let non_resource = || RequestInfo {
        verb: method.as_str().to_ascii_lowercase(),
        target: Target::NonResource {
            path: path.to_string(),
        },
    };
    let info = |verb: &str, target: Target| RequestInfo {
        verb: verb.to_string(),
        target,
    };
    match segs.as_slice() {
        ["clusters", name, "k8s", ..] => info(
            proxy_verb(method, upgrade),
            resource(
                GROUP_CATTERY,
                "managedclusters",
                Some("proxy"),
                None,
                Some(name),
            ),
        ),
        ["apis", "logs.cattery.dev", "v1", t, "search" | "tail"] => info(
            "get",
            Target::Logs {
                log_type: t.to_string(),
            },
        ),
        ["apis", "cattery.dev", "v1", res] => info(
            rest_verb(method, false, query),
            resource(GROUP_CATTERY, res, None, None, None),
        ),
        ["apis", "cattery.dev", "v1", res, name] => info(
            rest_verb(method, true, query),
            resource(GROUP_CATTERY, res, None, None, Some(name)),
        ),
        [
            "apis",
            "rbac.authorization.k8s.io",
            "v1",
            "namespaces",
            ns,
            res,
        ] => info(
            rest_verb(method, false, query),
            resource(GROUP_RBAC, res, None, Some(ns), None),
        ),
        [
            "apis",
            "rbac.authorization.k8s.io",
            "v1",
            "namespaces",
            ns,
            res,
            name,
        ] => info(
            rest_verb(method, true, query),
            resource(GROUP_RBAC, res, None, Some(ns), Some(name)),
        ),
        ["apis", "rbac.authorization.k8s.io", "v1", res] => info(
            rest_verb(method, false, query),
            resource(GROUP_RBAC, res, None, None, None),
        ),
        ["apis", "rbac.authorization.k8s.io", "v1", res, name] => info(
            rest_verb(method, true, query),
            resource(GROUP_RBAC, res, None, None, Some(name)),
        ),
        [
            "apis",
            group @ ("authorization.k8s.io" | "authentication.k8s.io"),
            "v1",
            res,
        ] => info(
            rest_verb(method, false, query),
            resource(group, res, None, None, None),
        ),
        _ => non_resource(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn r(m: Method, p: &str, q: Option<&str>) -> (String, Target) {
        let i = resolve(&m, p, q, false);
        (i.verb, i.target)
    }

    #[test]
    fn resolves_routes() {
        assert_eq!(
            r(Method::GET, "/apis/cattery.dev/v1/managedclusters", None),
            (
                "list".into(),
                resource(GROUP_CATTERY, "managedclusters", None, None, None)
            )
        );
        assert_eq!(
            r(
                Method::DELETE,
                "/apis/cattery.dev/v1/managedclusters/east",
                None
            )
            .0,
            "delete"
        );
        assert_eq!(
            r(
                Method::GET,
                "/clusters/east/k8s/api/v1/pods",
                Some("watch=true")
            ),
            (
                "get".into(),
                resource(
                    GROUP_CATTERY,
                    "managedclusters",
                    Some("proxy"),
                    None,
                    Some("east")
                )
            )
        );
        assert_eq!(
            resolve(&Method::GET, "/clusters/east/k8s/api/v1/x/exec", None, true).verb,
            "create"
        );
        assert_eq!(
            r(
                Method::PUT,
                "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles/r",
                None
            ),
            (
                "update".into(),
                resource(GROUP_RBAC, "roles", None, Some("ns1"), Some("r"))
            )
        );
        assert_eq!(
            r(Method::POST, "/apis/logs.cattery.dev/v1/flows/search", None).1,
            Target::Logs {
                log_type: "flows".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/metrics", None),
            (
                "get".into(),
                Target::NonResource {
                    path: "/metrics".into()
                }
            )
        );
        assert_eq!(
            r(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                None
            ),
            (
                "create".into(),
                resource(
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    None,
                    None,
                    None
                )
            )
        );
    }
}
