//! Who may act as whom: Kubernetes' impersonation rule, used wherever a caller asks to
//! act as, or mint a credential for, an identity other than their own.
//!
//! A credential for an identity is as strong as that identity, so minting one must need
//! what acting as it through `Impersonate-User`/`Impersonate-Group` needs in Kubernetes:
//! `impersonate` on `users` NAME (on `serviceaccounts` NAME in namespace NS for
//! `system:serviceaccount:NS:NAME`) and on `groups` NAME for every group. Nothing is
//! needed for being oneself with a subset of one's own groups, nor for the two groups
//! Kubernetes gives every service account when its user is impersonated.

use crate::authorizer::{Authorizer, describe_requester};
use crate::{Request, Requester};

/// `(namespace, name)` of a service-account user name `system:serviceaccount:NS:NAME`.
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

impl Authorizer {
    /// `Ok` when `who` may act as `target` (user and groups, as a token or impersonation
    /// headers would present it), otherwise an error naming every missing permission.
    pub fn check_impersonation(&self, who: &Requester, target: &Requester) -> Result<(), String> {
        let is_self = who.user == target.user;
        let service_account = service_account_of(target.user);
        let mut missing: Vec<String> = Vec::new();
        let mut need = |resource: &str, name: &str, namespace: Option<&str>| {
            let req = Request::Resource {
                verb: "impersonate",
                api_group: "",
                resource,
                subresource: None,
                name: Some(name),
                namespace,
            };
            if self.find_grant(who, &req).is_none() {
                let scope = namespace
                    .map(|ns| format!(" in namespace {ns:?}"))
                    .unwrap_or_default();
                missing.push(format!("impersonate {resource} {name:?}{scope}"));
            }
        };
        if !is_self {
            match service_account {
                Some((ns, name)) => need("serviceaccounts", name, Some(ns)),
                None => need("users", target.user, None),
            }
        }
        for g in target.groups {
            let own = is_self && who.groups.contains(g);
            let given_to_service_account = service_account.is_some_and(|(ns, _)| {
                g == "system:serviceaccounts" || *g == format!("system:serviceaccounts:{ns}")
            });
            if !own && !given_to_service_account {
                need("groups", g, None);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} may not act as user {:?} with groups {:?}: missing {} (core apiGroup \"\")",
            describe_requester(who),
            target.user,
            target.groups,
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::{ClusterRole, ClusterRoleBinding, GROUP_RBAC, Policy};

    fn role(name: &str, resource: &str, names: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec![resource.into()]),
                resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
                verbs: vec!["impersonate".into()],
                ..Default::default()
            }]),
            aggregation_rule: None,
        }
    }

    fn bind(role: &str, user: &str) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{role}-{user}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some(GROUP_RBAC.into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: user.into(),
                api_group: Some(GROUP_RBAC.into()),
                namespace: None,
            }]),
        }
    }

    fn authorizer() -> Authorizer {
        Authorizer::new(&Policy {
            cluster_roles: vec![
                role("as-ci", "users", &["ci"]),
                role("as-builders", "groups", &["builders"]),
                role("as-deployer", "serviceaccounts", &["deployer"]),
            ],
            cluster_role_bindings: vec![
                bind("as-ci", "bob"),
                bind("as-builders", "bob"),
                bind("as-deployer", "bob"),
            ],
            ..Default::default()
        })
    }

    fn r<'a>(user: &'a str, groups: &'a [String]) -> Requester<'a> {
        Requester { user, groups }
    }

    #[test]
    fn only_identities_one_could_impersonate() {
        let a = authorizer();
        let bob_groups = ["dev".to_string()];
        let bob = r("bob", &bob_groups);
        let none: [String; 0] = [];
        // Oneself, with a subset of one's groups: nothing needed.
        assert_eq!(a.check_impersonation(&bob, &r("bob", &bob_groups)), Ok(()));
        assert_eq!(a.check_impersonation(&bob, &r("bob", &none)), Ok(()));
        // Oneself with a group one lacks: impersonate groups.
        let admins = ["cattery:admins".to_string()];
        let e = a.check_impersonation(&bob, &r("bob", &admins)).unwrap_err();
        assert!(
            e.contains(r#"missing impersonate groups "cattery:admins""#),
            "{e}"
        );
        // Someone else: impersonate users, and groups for every group (even one's own).
        assert_eq!(a.check_impersonation(&bob, &r("ci", &none)), Ok(()));
        let builders = ["builders".to_string()];
        assert_eq!(a.check_impersonation(&bob, &r("ci", &builders)), Ok(()));
        let e = a
            .check_impersonation(&bob, &r("ci", &bob_groups))
            .unwrap_err();
        assert!(e.contains(r#"missing impersonate groups "dev""#), "{e}");
        let e = a
            .check_impersonation(&bob, &r("cattery:admin", &admins))
            .unwrap_err();
        assert_eq!(
            e,
            r#"user "bob" (groups ["dev"]) may not act as user "cattery:admin" with groups ["cattery:admins"]: missing impersonate users "cattery:admin", impersonate groups "cattery:admins" (core apiGroup "")"#
        );
        // Service accounts: impersonate serviceaccounts NAME in NS; their own groups are free.
        let sa_groups = [
            "system:serviceaccounts".to_string(),
            "system:serviceaccounts:ci".to_string(),
        ];
        assert_eq!(
            a.check_impersonation(&bob, &r("system:serviceaccount:ci:deployer", &sa_groups)),
            Ok(())
        );
        let e = a
            .check_impersonation(&bob, &r("system:serviceaccount:ci:admin", &sa_groups))
            .unwrap_err();
        assert!(
            e.contains(r#"missing impersonate serviceaccounts "admin" in namespace "ci""#),
            "{e}"
        );
        let other_ns = ["system:serviceaccounts:kube-system".to_string()];
        let e = a
            .check_impersonation(&bob, &r("system:serviceaccount:ci:deployer", &other_ns))
            .unwrap_err();
        assert!(e.contains("system:serviceaccounts:kube-system"), "{e}");
    }
}
