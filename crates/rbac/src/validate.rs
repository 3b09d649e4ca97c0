//! Validation of RBAC objects before they are stored, so that a malformed
//! object is rejected with a 400 naming the field rather than silently
//! granting nothing. Rules follow kube-apiserver's RBAC validation, plus
//! Cattery's restrictions (no aggregationRule). Labels and annotation keys
//! follow Kubernetes' rules ([`cattery_api::validate_labels`]).

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{ClusterRole, ClusterRoleBinding, GROUP_RBAC, Role, RoleBinding};

/// Why an object was rejected; displays as
/// `ClusterRole "x" rules[2].verbs: must not be empty` (namespaced objects
/// as `Role "ns/x" ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {:?} {field}: {message}", qualified(.namespace, .name))]
pub struct ValidationError {
    /// Object kind: `ClusterRole`, `Role`, `ClusterRoleBinding`, `RoleBinding`.
    pub kind: &'static str,
    /// Object namespace, for namespaced kinds that have one.
    pub namespace: Option<String>,
    /// Object name (may be empty when the name itself is the problem).
    pub name: String,
    /// The offending field, e.g. `rules[2].verbs`, `subjects[0].kind`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// `ns/name` or `name`.
fn qualified(namespace: &Option<String>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Builds errors for one object.
struct Ctx<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            kind: self.kind,
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone().unwrap_or_default(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Checks metadata.name (and metadata.namespace when `namespaced`).
    fn meta(&self, namespaced: bool) -> Result<(), ValidationError> {
        match self.meta.name.as_deref() {
            None | Some("") => return Err(self.err("metadata.name", "must not be empty")),
            Some(name) => {
                if let Err(m) = check_name(name) {
                    return Err(self.err("metadata.name", m));
                }
            }
        }
        if let Some(labels) = &self.meta.labels {
            cattery_api::validate_labels(labels)
                .map_err(|e| self.err("metadata.labels", e.to_string()))?;
        }
        if let Some(annotations) = &self.meta.annotations {
            cattery_api::validate_annotations(annotations)
                .map_err(|e| self.err("metadata.annotations", e.to_string()))?;
        }
        match (namespaced, self.meta.namespace.as_deref()) {
            (true, None | Some("")) => Err(self.err("metadata.namespace", "required")),
            (true, Some(ns)) => check_namespace(ns).map_err(|m| self.err("metadata.namespace", m)),
            (false, Some(ns)) if !ns.is_empty() => Err(self.err(
                "metadata.namespace",
                format!("must not be set on a cluster-scoped {}", self.kind),
            )),
            _ => Ok(()),
        }
    }
}

/// Role and binding names: like a DNS-1123 subdomain, but `:` is allowed
/// (`system:foo`), as in Kubernetes' built-in role names.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!(
            "must be at most 253 characters, not {}",
            name.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c);
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.chars().all(ok_char) || !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err(format!(
            "{name:?} must consist of lower-case letters, digits, '-', '.' and ':', \
             and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// Namespaces are DNS-1123 labels.
fn check_namespace(ns: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if ns.len() > 63
        || !ns.chars().all(|c| alnum(c) || c == '-')
        || !ns.starts_with(alnum)
        || !ns.ends_with(alnum)
    {
        return Err(format!(
            "{ns:?} must be a DNS-1123 label (at most 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// Checks that no entry of `list` (field `rules[i].<what>`) is empty.
fn no_empty_entries(ctx: &Ctx, field: &str, list: &[String]) -> Result<(), ValidationError> {
    match list.iter().position(|s| s.is_empty()) {
        Some(j) => Err(ctx.err(format!("{field}[{j}]"), "must not be empty")),
        None => Ok(()),
    }
}

fn check_rules(ctx: &Ctx, rules: &[PolicyRule], namespaced: bool) -> Result<(), ValidationError> {
    let none: &[String] = &[];
    for (i, rule) in rules.iter().enumerate() {
        let f = |name: &str| format!("rules[{i}].{name}");
        if rule.verbs.is_empty() {
            return Err(ctx.err(f("verbs"), "must not be empty"));
        }
        no_empty_entries(ctx, &f("verbs"), &rule.verbs)?;
        let groups = rule.api_groups.as_deref().unwrap_or(none);
        let resources = rule.resources.as_deref().unwrap_or(none);
        let names = rule.resource_names.as_deref().unwrap_or(none);
        let urls = rule.non_resource_urls.as_deref().unwrap_or(none);
        if !urls.is_empty() {
            if namespaced {
                return Err(ctx.err(
                    f("nonResourceURLs"),
                    "not allowed in a Role (namespaced rules cannot apply to non-resource URLs)",
                ));
            }
            if !resources.is_empty() || !groups.is_empty() || !names.is_empty() {
                return Err(ctx.err(
                    f("nonResourceURLs"),
                    "a rule applies to either resources (apiGroups, resources, resourceNames) \
                     or nonResourceURLs, not both",
                ));
            }
            for (j, url) in urls.iter().enumerate() {
                let star = url.find('*');
                let ok =
                    url == "*" || (url.starts_with('/') && star.is_none_or(|k| k == url.len() - 1));
                if !ok {
                    return Err(ctx.err(
                        format!("rules[{i}].nonResourceURLs[{j}]"),
                        format!(
                            "{url:?} must be \"*\" or a path starting with '/', \
                             with '*' only as the last character"
                        ),
                    ));
                }
            }
            continue;
        }
        if resources.is_empty() {
            return Err(ctx.err(
                f("resources"),
                if namespaced {
                    "must not be empty"
                } else {
                    "must not be empty (or set nonResourceURLs instead)"
                },
            ));
        }
        if groups.is_empty() {
            return Err(ctx.err(
                f("apiGroups"),
                "required for resource rules (use [\"\"] for the core group, [\"*\"] for all)",
            ));
        }
        no_empty_entries(ctx, &f("resources"), resources)?;
        no_empty_entries(ctx, &f("resourceNames"), names)?;
    }
    Ok(())
}

fn check_role_ref(ctx: &Ctx, r: &RoleRef, cluster: bool) -> Result<(), ValidationError> {
    if r.api_group.as_deref() != Some(GROUP_RBAC) {
        return Err(ctx.err("roleRef.apiGroup", format!("must be {GROUP_RBAC:?}")));
    }
    match (r.kind.as_str(), cluster) {
        ("ClusterRole", _) | ("Role", false) => {}
        (_, true) => return Err(ctx.err("roleRef.kind", "must be \"ClusterRole\"")),
        (_, false) => {
            return Err(ctx.err("roleRef.kind", "must be \"ClusterRole\" or \"Role\""));
        }
    }
    if r.name.is_empty() {
        return Err(ctx.err("roleRef.name", "must not be empty"));
    }
    check_name(&r.name).map_err(|m| ctx.err("roleRef.name", m))
}

fn check_subjects(ctx: &Ctx, subjects: &[Subject], cluster: bool) -> Result<(), ValidationError> {
    for (i, s) in subjects.iter().enumerate() {
        let f = |name: &str| format!("subjects[{i}].{name}");
        if s.name.is_empty() {
            return Err(ctx.err(f("name"), "must not be empty"));
        }
        let api_group = s.api_group.as_deref().unwrap_or("");
        match s.kind.as_str() {
            "User" | "Group" => {
                if !api_group.is_empty() && api_group != GROUP_RBAC {
                    return Err(ctx.err(f("apiGroup"), format!("must be {GROUP_RBAC:?}")));
                }
            }
            "ServiceAccount" => {
                if !api_group.is_empty() {
                    return Err(ctx.err(f("apiGroup"), "must be \"\" for a ServiceAccount"));
                }
                match s.namespace.as_deref() {
                    None | Some("") if cluster => {
                        return Err(ctx.err(
                            f("namespace"),
                            "required for a ServiceAccount in a ClusterRoleBinding",
                        ));
                    }
                    Some(ns) if !ns.is_empty() => {
                        check_namespace(ns).map_err(|m| ctx.err(f("namespace"), m))?;
                    }
                    _ => {}
                }
            }
            other => {
                return Err(ctx.err(
                    f("kind"),
                    format!("{other:?} is not one of \"User\", \"Group\", \"ServiceAccount\""),
                ));
            }
        }
    }
    Ok(())
}

/// Validates a ClusterRole before it is stored.
pub fn validate_cluster_role(r: &ClusterRole) -> Result<(), ValidationError> {
    let ctx = Ctx {
        kind: "ClusterRole",
        meta: &r.metadata,
    };
    ctx.meta(false)?;
    if r.aggregation_rule.is_some() {
        return Err(ctx.err(
            "aggregationRule",
            "aggregationRule is not supported; list the rules explicitly",
        ));
    }
    check_rules(&ctx, r.rules.as_deref().unwrap_or_default(), false)
}

/// Validates a Role before it is stored.
pub fn validate_role(r: &Role) -> Result<(), ValidationError> {
    let ctx = Ctx {
        kind: "Role",
        meta: &r.metadata,
    };
    ctx.meta(true)?;
    check_rules(&ctx, r.rules.as_deref().unwrap_or_default(), true)
}

/// Validates a ClusterRoleBinding before it is stored.
pub fn validate_cluster_role_binding(b: &ClusterRoleBinding) -> Result<(), ValidationError> {
    let ctx = Ctx {
        kind: "ClusterRoleBinding",
        meta: &b.metadata,
    };
    ctx.meta(false)?;
    check_role_ref(&ctx, &b.role_ref, true)?;
    check_subjects(&ctx, b.subjects.as_deref().unwrap_or_default(), true)
}

/// Validates a RoleBinding before it is stored.
pub fn validate_role_binding(b: &RoleBinding) -> Result<(), ValidationError> {
    let ctx = Ctx {
        kind: "RoleBinding",
        meta: &b.metadata,
    };
    ctx.meta(true)?;
    check_role_ref(&ctx, &b.role_ref, false)?;
    check_subjects(&ctx, b.subjects.as_deref().unwrap_or_default(), false)
}
