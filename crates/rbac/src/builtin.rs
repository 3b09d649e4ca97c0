//! Built-in roles and bindings every Cattery installation has. They are
//! read-only to users (see [`is_builtin`]) and carry the label
//! [`BUILTIN_LABEL`]` = "true"`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{
    AUTHENTICATED_GROUP, ClusterRole, ClusterRoleBinding, GROUP_CATTERY, GROUP_LOGS, GROUP_RBAC,
    Policy,
};

/// Label marking built-in objects, so clients can tell them apart.
pub const BUILTIN_LABEL: &str = "cattery.dev/builtin";

/// Full control of everything, including non-resource URLs.
pub const ADMIN: &str = "cattery-admin";
/// Full control of managed clusters (including the proxy), nothing else.
pub const CLUSTER_ADMIN: &str = "cattery-cluster-admin";
/// Read-only view of clusters, RBAC objects and all logs.
pub const VIEWER: &str = "cattery-viewer";
/// Read-only view of clusters and network logs (not audit logs).
pub const NETWORK_VIEWER: &str = "cattery-network-viewer";
/// What every authenticated user may do: version, health, self-review.
pub const BASIC_USER: &str = "cattery-basic-user";
/// Group bound to [`ADMIN`] by the built-in binding of the same name.
pub const ADMINS_GROUP: &str = "cattery:admins";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            BUILTIN_LABEL.to_owned(),
            "true".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn resource_rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(strings(urls)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

const READ: &[&str] = &["get", "list", "watch"];

/// The built-in ClusterRoles, in a fixed order: admin, cluster-admin,
/// viewer, network-viewer, basic-user.
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        cluster_role(
            ADMIN,
            vec![
                resource_rule(&["*"], &["*"], &["*"]),
                url_rule(&["*"], &["*"]),
            ],
        ),
        cluster_role(
            CLUSTER_ADMIN,
            vec![resource_rule(
                &[GROUP_CATTERY],
                &["managedclusters", "managedclusters/proxy"],
                &["*"],
            )],
        ),
        cluster_role(
            VIEWER,
            vec![
                resource_rule(&[GROUP_CATTERY], &["managedclusters"], READ),
                resource_rule(
                    &[GROUP_RBAC],
                    &[
                        "clusterroles",
                        "clusterrolebindings",
                        "roles",
                        "rolebindings",
                    ],
                    READ,
                ),
                resource_rule(&[GROUP_LOGS], &["flows", "dns", "l7", "audit"], &["get"]),
            ],
        ),
        cluster_role(
            NETWORK_VIEWER,
            vec![
                resource_rule(&[GROUP_CATTERY], &["managedclusters"], READ),
                resource_rule(&[GROUP_LOGS], &["flows", "dns", "l7"], &["get"]),
            ],
        ),
        cluster_role(
            BASIC_USER,
            vec![
                url_rule(&["/version", "/healthz"], &["get"]),
                // Discovery, as Kubernetes' system:discovery grants it: kubectl reads these
                // before anything else.
                url_rule(
                    &[
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/openapi/v3",
                        "/openapi/v3/*",
                    ],
                    &["get"],
                ),
                resource_rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews"],
                    &["create"],
                ),
                resource_rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
    ]
}

fn binding(name: &str, role: &str, group: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some(GROUP_RBAC.to_owned()),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(GROUP_RBAC.to_owned()),
            kind: "Group".to_owned(),
            name: group.to_owned(),
            namespace: None,
        }]),
    }
}

/// The built-in ClusterRoleBindings: `cattery-admin` (group
/// `cattery:admins`) and `cattery-basic-user` (group `system:authenticated`).
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding(ADMIN, ADMIN, ADMINS_GROUP),
        binding(BASIC_USER, BASIC_USER, AUTHENTICATED_GROUP),
    ]
}

/// Whether the object `kind`/`name` is built in, so users may not create,
/// replace or delete it.
pub fn is_builtin(kind: &str, name: &str) -> bool {
    match kind {
        "ClusterRole" => [ADMIN, CLUSTER_ADMIN, VIEWER, NETWORK_VIEWER, BASIC_USER].contains(&name),
        "ClusterRoleBinding" => [ADMIN, BASIC_USER].contains(&name),
        _ => false,
    }
}

/// The built-ins as a [`Policy`], to be appended to the stored objects.
pub fn policy() -> Policy {
    Policy {
        cluster_roles: cluster_roles(),
        cluster_role_bindings: cluster_role_bindings(),
        roles: Vec::new(),
        role_bindings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Authorizer, GROUP_CALICO_LMA, Request, Requester, validate_cluster_role,
        validate_cluster_role_binding,
    };

    fn res<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
    ) -> Request<'a> {
        Request::Resource {
            verb,
            api_group: group,
            resource,
            subresource: sub,
            name: Some("east"),
            namespace: None,
        }
    }

    /// Built-ins plus one binding of `role` to user `u`.
    fn with_user(role: &str) -> Authorizer {
        let mut p = policy();
        p.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some(GROUP_RBAC.into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "u".into(),
                ..Default::default()
            }]),
        });
        Authorizer::new(&p)
    }

    #[test]
    fn builtins_are_valid_labelled_and_listed() {
        let roles = cluster_roles();
        let names: Vec<_> = roles
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [ADMIN, CLUSTER_ADMIN, VIEWER, NETWORK_VIEWER, BASIC_USER]
        );
        for r in &roles {
            validate_cluster_role(r).unwrap();
            assert_eq!(r.metadata.labels.as_ref().unwrap()[BUILTIN_LABEL], "true");
            assert!(is_builtin(
                "ClusterRole",
                r.metadata.name.as_deref().unwrap()
            ));
        }
        for b in cluster_role_bindings() {
            validate_cluster_role_binding(&b).unwrap();
            assert_eq!(b.metadata.labels.as_ref().unwrap()[BUILTIN_LABEL], "true");
            assert!(is_builtin(
                "ClusterRoleBinding",
                b.metadata.name.as_deref().unwrap()
            ));
        }
        assert!(!is_builtin("ClusterRole", "my-role"));
        assert!(!is_builtin("Role", ADMIN));
        assert!(!is_builtin("ClusterRoleBinding", VIEWER));
    }

    #[test]
    fn admins_group_may_do_everything() {
        let az = Authorizer::new(&policy());
        let groups = vec![ADMINS_GROUP.to_owned()];
        let who = Requester {
            user: "alice",
            groups: &groups,
        };
        for req in [
            res("delete", GROUP_CATTERY, "managedclusters", None),
            res("create", GROUP_CATTERY, "tokens", None),
            res("get", GROUP_CATTERY, "managedclusters", Some("proxy")),
            res("escalate", GROUP_RBAC, "clusterroles", None),
            Request::NonResource {
                verb: "post",
                path: "/anything",
            },
        ] {
            let d = az.authorize(&who, &req);
            assert!(d.allowed, "{req:?}: {}", d.reason);
            assert_eq!(
                d.reason,
                "RBAC: allowed by ClusterRoleBinding \"cattery-admin\" of ClusterRole \
                 \"cattery-admin\" to Group \"cattery:admins\""
            );
        }
        assert!(az.log_access(&who, "audit", "cluster").allowed);
        // Without the group: only basic-user.
        let who = Requester {
            user: "alice",
            groups: &[],
        };
        assert!(
            !az.authorize(&who, &res("get", GROUP_CATTERY, "managedclusters", None))
                .allowed
        );
    }

    #[test]
    fn basic_user_is_everyone() {
        let az = Authorizer::new(&policy());
        let who = Requester {
            user: "nobody",
            groups: &[],
        };
        let d = az.authorize(
            &who,
            &Request::NonResource {
                verb: "get",
                path: "/version",
            },
        );
        assert!(d.allowed);
        assert!(
            d.reason.contains("to Group \"system:authenticated\""),
            "{}",
            d.reason
        );
        assert!(
            az.authorize(
                &who,
                &Request::NonResource {
                    verb: "get",
                    path: "/healthz"
                }
            )
            .allowed
        );
        assert!(
            !az.authorize(
                &who,
                &Request::NonResource {
                    verb: "post",
                    path: "/version"
                }
            )
            .allowed
        );
        assert!(
            !az.authorize(
                &who,
                &Request::NonResource {
                    verb: "get",
                    path: "/metrics"
                }
            )
            .allowed
        );
        let ssar = Request::Resource {
            verb: "create",
            api_group: "authorization.k8s.io",
            resource: "selfsubjectaccessreviews",
            subresource: None,
            name: None,
            namespace: None,
        };
        assert!(az.authorize(&who, &ssar).allowed);
        assert!(!az.log_access(&who, "flows", "east").allowed);
    }

    #[test]
    fn network_viewer_has_no_audit() {
        let az = with_user(NETWORK_VIEWER);
        let who = Requester {
            user: "u",
            groups: &[],
        };
        for t in ["flows", "dns", "l7"] {
            assert!(az.log_access(&who, t, "east").allowed, "{t}");
            assert_eq!(az.log_clusters(&who, t), crate::Names::All);
        }
        let d = az.log_access(&who, "audit", "east");
        assert!(!d.allowed);
        assert!(d.reason.contains("may not read audit logs"), "{}", d.reason);
        assert!(az.log_clusters(&who, "audit").is_empty());
        assert!(
            az.authorize(&who, &res("list", GROUP_CATTERY, "managedclusters", None))
                .allowed
        );
        assert!(
            !az.authorize(
                &who,
                &res("get", GROUP_CATTERY, "managedclusters", Some("proxy"))
            )
            .allowed
        );
        assert!(
            !az.authorize(&who, &res("get", GROUP_RBAC, "roles", None))
                .allowed
        );
    }

    #[test]
    fn viewer_and_cluster_admin() {
        let who = Requester {
            user: "u",
            groups: &[],
        };
        let az = with_user(VIEWER);
        assert!(az.log_access(&who, "audit", "west").allowed);
        assert!(
            az.authorize(&who, &res("watch", GROUP_RBAC, "clusterrolebindings", None))
                .allowed
        );
        assert!(
            !az.authorize(&who, &res("create", GROUP_RBAC, "clusterroles", None))
                .allowed
        );
        assert!(
            !az.authorize(
                &who,
                &res("get", GROUP_CATTERY, "managedclusters", Some("proxy"))
            )
            .allowed
        );
        assert!(
            !az.authorize(&who, &res("get", GROUP_CATTERY, "tokens", None))
                .allowed
        );
        assert!(
            !az.authorize(&who, &res("get", GROUP_CALICO_LMA, "east", None))
                .allowed
        );

        let az = with_user(CLUSTER_ADMIN);
        assert!(
            az.authorize(&who, &res("delete", GROUP_CATTERY, "managedclusters", None))
                .allowed
        );
        assert!(
            az.authorize(
                &who,
                &res("create", GROUP_CATTERY, "managedclusters", Some("proxy"))
            )
            .allowed
        );
        assert!(
            !az.authorize(&who, &res("create", GROUP_CATTERY, "tokens", None))
                .allowed
        );
        assert!(
            !az.authorize(&who, &res("list", GROUP_RBAC, "roles", None))
                .allowed
        );
        assert!(!az.log_access(&who, "flows", "east").allowed);
    }
}
