//! Privilege-escalation prevention, as in Kubernetes: a user may only
//! create or update a role (or bind one) whose every permission they
//! already hold.
//!
//! Each rule is expanded into atomic checks — (verb, apiGroup,
//! resource[/subresource], resourceName or none) and (verb, nonResourceURL)
//! — and each is authorized as an ordinary request. A literal `"*"` in the
//! new rule therefore needs a `"*"` in one of the holder's rules (a `"*"`
//! request only matches a wildcard), and a rule without resourceNames needs
//! an unrestricted rule. The exemptions Kubernetes grants through the
//! `escalate` and `bind` verbs are the caller's business.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authorizer::{Authorizer, describe_group, describe_requester};
use crate::{Request, Requester};

/// How many missing permissions the error lists.
const LIST_MAX: usize = 5;

impl Authorizer {
    /// `Ok` when every permission in `rules` is already held by `who`
    /// (cluster-wide when `namespace` is None, else in that namespace),
    /// otherwise an error listing the first few missing permissions.
    pub fn check_escalation(
        &self,
        who: &Requester,
        rules: &[PolicyRule],
        namespace: Option<&str>,
    ) -> Result<(), String> {
        let mut missing: Vec<String> = Vec::new();
        let mut count = 0usize;
        let mut miss = |what: &dyn Fn() -> String| {
            count += 1;
            if missing.len() < LIST_MAX {
                missing.push(what());
            }
        };
        let none: &[String] = &[];
        for rule in rules {
            for verb in &rule.verbs {
                for url in rule.non_resource_urls.as_deref().unwrap_or(none) {
                    let req = Request::NonResource { verb, path: url };
                    if self.find_grant(who, &req).is_none() {
                        miss(&|| format!("{verb} non-resource URL {url:?}"));
                    }
                }
                for group in rule.api_groups.as_deref().unwrap_or(none) {
                    for res in rule.resources.as_deref().unwrap_or(none) {
                        let (resource, sub) = match res.split_once('/') {
                            Some((r, s)) => (r, Some(s)),
                            None => (res.as_str(), None),
                        };
                        let names = rule.resource_names.as_deref().unwrap_or(none);
                        let names: Vec<Option<&str>> = if names.is_empty() {
                            vec![None]
                        } else {
                            names.iter().map(|n| Some(n.as_str())).collect()
                        };
                        for name in names {
                            let req = Request::Resource {
                                verb,
                                api_group: group,
                                resource,
                                subresource: sub,
                                name,
                                namespace,
                            };
                            if self.find_grant(who, &req).is_none() {
                                miss(&|| {
                                    let name = name.map(|n| format!(" {n:?}")).unwrap_or_default();
                                    format!("{verb} {res}{name} {}", describe_group(group))
                                });
                            }
                        }
                    }
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        let scope = match namespace.filter(|n| !n.is_empty()) {
            Some(ns) => format!("in namespace {ns:?}"),
            None => "cluster-wide".to_owned(),
        };
        let mut msg = format!(
            "{} may not grant permissions they do not hold {scope}: {}",
            describe_requester(who),
            missing.join(", ")
        );
        if count > missing.len() {
            msg.push_str(&format!(" and {} more", count - missing.len()));
        }
        Err(msg)
    }
}
