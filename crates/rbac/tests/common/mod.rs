//! Builders for RBAC objects used by the integration tests.
#![allow(dead_code)]

use cattery_rbac::{
    ClusterRole, ClusterRoleBinding, GROUP_RBAC, PolicyRule, Request, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        non_resource_urls: None,
    }
}

pub fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: Some(strings(urls)),
        ..Default::default()
    }
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    }
}

pub fn cr(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

pub fn role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(Some(ns), name),
        rules: Some(rules),
    }
}

pub fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(GROUP_RBAC.into()),
        kind: kind.into(),
        name: name.into(),
    }
}

pub fn crb(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    }
}

pub fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(ns), name),
        role_ref: role_ref(kind, role),
        subjects: Some(subjects),
    }
}

pub fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(GROUP_RBAC.into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

pub fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(GROUP_RBAC.into()),
        kind: "Group".into(),
        name: name.into(),
        namespace: None,
    }
}

pub fn sa(ns: Option<&str>, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: ns.map(Into::into),
    }
}

/// A resource request.
pub fn res<'a>(
    verb: &'a str,
    api_group: &'a str,
    resource: &'a str,
    subresource: Option<&'a str>,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
) -> Request<'a> {
    Request::Resource {
        verb,
        api_group,
        resource,
        subresource,
        name,
        namespace,
    }
}
