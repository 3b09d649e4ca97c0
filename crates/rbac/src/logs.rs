//! Log permissions under the two accepted conventions.
//!
//! * Cattery: apiGroup `logs.cattery.dev`, resource = log type (`flows`,
//!   `dns`, `l7`, `audit`), resourceNames = cluster names (none = every
//!   cluster).
//! * Calico Enterprise: apiGroup `lma.tigera.io`, resource = cluster name
//!   (`*` = every cluster), resourceNames = Calico log type names (none =
//!   every type).
//!
//! Both are checked with verb `get`, cluster-wide (only ClusterRoleBindings
//! grant log access: logs are not namespaced objects).
//!
//! Calico's log type names map onto ours as `flows`→`flows`, `dns`→`dns`,
//! `l7`→`l7`, and `audit*` (Calico's name for all audit logs) or `audit` →
//! `audit`. Calico's narrower names (`audit_kube`, `audit_ee`, `events`,
//! `bgp`, ...) never grant any of our types: a narrower Calico grant must not
//! over-grant. Log types we do not know have no Calico equivalent, so only
//! the Cattery convention can grant them.

use std::fmt::Write as _;

use crate::authorizer::{Authorizer, allow_reason, describe_requester};
use crate::{Decision, GROUP_CALICO_LMA, GROUP_LOGS, Names, Request, Requester};

/// The verb log reads are authorized with.
const VERB: &str = "get";

/// Calico resourceNames that grant our `log_type` (in Calico's convention).
pub(crate) fn calico_names(log_type: &str) -> &'static [&'static str] {
    match log_type {
        "flows" => &["flows"],
        "dns" => &["dns"],
        "l7" => &["l7"],
        "audit" => &["audit*", "audit"],
        _ => &[],
    }
}

impl Authorizer {
    /// May `who` read logs of `log_type` (`flows`, `dns`, `l7`, `audit`)
    /// from `cluster`? Allowed if either convention grants verb `get` (see
    /// the module docs); the deny reason says what neither convention had.
    pub fn log_access(&self, who: &Requester, log_type: &str, cluster: &str) -> Decision {
        let cattery = Request::Resource {
            verb: VERB,
            api_group: GROUP_LOGS,
            resource: log_type,
            subresource: None,
            name: Some(cluster),
            namespace: None,
        };
        if let Some((g, e)) = self.find_grant(who, &cattery) {
            return Decision {
                allowed: true,
                reason: allow_reason(g, e),
            };
        }
        let calico = calico_names(log_type);
        for name in calico {
            let req = Request::Resource {
                verb: VERB,
                api_group: GROUP_CALICO_LMA,
                resource: cluster,
                subresource: None,
                name: Some(name),
                namespace: None,
            };
            if let Some((g, e)) = self.find_grant(who, &req) {
                return Decision {
                    allowed: true,
                    reason: allow_reason(g, e),
                };
            }
        }
        let mut reason = format!(
            "{} may not read {log_type} logs of cluster {cluster:?}: no role bound to them grants \
             verb {VERB} on {log_type} (apiGroup {GROUP_LOGS}) for resourceName {cluster:?}",
            describe_requester(who)
        );
        if calico.is_empty() {
            let _ = write!(
                reason,
                " (log type {log_type:?} has no {GROUP_CALICO_LMA} equivalent)"
            );
        } else {
            let names: Vec<String> = calico.iter().map(|n| format!("{n:?}")).collect();
            let _ = write!(
                reason,
                ", nor on {cluster} (apiGroup {GROUP_CALICO_LMA}) for resourceName {}",
                names.join(" or ")
            );
        }
        Decision {
            allowed: false,
            reason,
        }
    }

    /// The clusters whose `log_type` logs `who` may read: the union over
    /// both conventions, [`Names::All`] if any matching rule is unrestricted
    /// (a Cattery rule without resourceNames, a Calico rule with resources
    /// `["*"]`). Agrees with [`Authorizer::log_access`] for every cluster.
    pub fn log_clusters(&self, who: &Requester, log_type: &str) -> Names {
        let mut clusters = match self.allowed_names(who, VERB, GROUP_LOGS, log_type, None, None) {
            Names::All => return Names::All,
            Names::Only(names) => names,
        };
        let calico = calico_names(log_type);
        if calico.is_empty() {
            return Names::Only(clusters);
        }
        let verb = self.interner.id(VERB);
        let group = self.interner.id(GROUP_CALICO_LMA);
        let all = self.scan(
            who,
            None,
            |role| role.may_match_verb_group(verb, group),
            |_, _, r| {
                if !r.verbs.matches(verb) || !r.api_groups.matches(group) {
                    return None;
                }
                let names_ok = r.resource_names.items.is_empty()
                    || calico.iter().any(|n| r.resource_names.contains(n));
                if !names_ok {
                    return None;
                }
                if r.resources.any {
                    return Some(());
                }
                // Subresource forms ("east/x", "*/x") never match a cluster
                // request (which has no subresource), so only plain names count.
                clusters.extend(
                    r.resources
                        .exact
                        .iter()
                        .filter(|(_, sub)| sub.is_none())
                        .map(|&(res, _)| self.interner.string(res).to_owned()),
                );
                None
            },
        );
        if all.is_some() {
            return Names::All;
        }
        Names::Only(clusters)
    }
}
