//! Kubernetes-style RBAC for the Cattery management plane.
//!
//! The management plane authorizes every request against the real
//! `rbac.authorization.k8s.io/v1` objects (ClusterRole, ClusterRoleBinding,
//! Role, RoleBinding) with Kubernetes semantics: verbs, apiGroups, resources
//! (with `resource/subresource` and `*/subresource`), resourceNames,
//! nonResourceURLs, wildcards, deny by default.
//!
//! * [`Authorizer`] compiles a [`Policy`] once (on every RBAC change) into
//!   indexes that make a decision cost a few hash lookups and rule scans.
//! * [`Authorizer::log_access`] understands both log-permission conventions:
//!   Cattery's (`logs.cattery.dev`, resource = log type, resourceName =
//!   cluster) and Calico's (`lma.tigera.io`, resource = cluster,
//!   resourceName = log type).
//! * [`Authorizer::check_escalation`] prevents users from granting
//!   permissions they do not hold, and
//!   [`Authorizer::check_impersonation`] from acting as (or minting tokens
//!   for) identities they could not impersonate.
//! * The `validate_*` functions reject malformed objects before they are
//!   stored, with messages naming the offending field.
//! * [`builtin`] holds the read-only roles and bindings every installation has.
#![forbid(unsafe_code)]

mod authorizer;
pub mod builtin;
mod escalation;
mod impersonation;
mod logs;
mod rule;
mod validate;

use std::collections::BTreeSet;

pub use authorizer::Authorizer;
pub use impersonation::service_account_of;
pub use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
pub use validate::{
    ValidationError, validate_cluster_role, validate_cluster_role_binding, validate_role,
    validate_role_binding,
};

/// API group of Cattery's own resources (`managedclusters`,
/// `managedclusters/proxy`, `tokens`).
pub const GROUP_CATTERY: &str = "cattery.dev";
/// API group of Cattery's log permissions: resources are log types
/// (`flows`, `dns`, `l7`, `audit`), resourceNames are cluster names.
pub const GROUP_LOGS: &str = "logs.cattery.dev";
/// API group of Calico Enterprise's log permissions, accepted so Calico
/// roles keep working: resources are cluster names, resourceNames are log
/// types.
pub const GROUP_CALICO_LMA: &str = "lma.tigera.io";
/// API group of the RBAC objects themselves (also the only valid
/// `roleRef.apiGroup`).
pub const GROUP_RBAC: &str = "rbac.authorization.k8s.io";
/// Group every authenticated requester belongs to; the authorizer adds it
/// implicitly, as kube-apiserver's authenticators do.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who is asking: the authenticated user name and the groups the
/// authenticator put them in ([`AUTHENTICATED_GROUP`] is implied).
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    /// User name; ServiceAccounts are `system:serviceaccount:NS:NAME`.
    pub user: &'a str,
    /// Groups, as asserted by the authenticator.
    pub groups: &'a [String],
}

/// What a requester asks to do, in the terms RBAC rules are written in.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// An action on an API resource (`/apis/GROUP/VERSION/...`).
    Resource {
        /// Kubernetes verb: get, list, watch, create, update, patch, delete, ...
        verb: &'a str,
        /// API group; `""` is the core group.
        api_group: &'a str,
        /// Plural resource name, e.g. `managedclusters`.
        resource: &'a str,
        /// Subresource, e.g. `proxy` for `managedclusters/proxy`.
        subresource: Option<&'a str>,
        /// Object name, when the request targets one object.
        name: Option<&'a str>,
        /// Namespace, for namespaced resources.
        namespace: Option<&'a str>,
    },
    /// An action on a URL that is not an API resource (`/version`, `/healthz`).
    NonResource {
        /// Lower-case HTTP-derived verb (get, post, ...).
        verb: &'a str,
        /// Request path.
        path: &'a str,
    },
}

/// An authorization decision with a human-readable reason; the reason goes
/// into audit records and 403 messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why: the granting binding on allow, what is missing on deny.
    pub reason: String,
}

/// The object names a requester may act on, used to filter list results
/// (e.g. which clusters appear in `GET /apis/cattery.dev/v1/managedclusters`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Names {
    /// Every name, including ones created later.
    All,
    /// Only these names; an empty set means none.
    Only(BTreeSet<String>),
}

impl Names {
    /// Whether `name` is among the allowed names.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Names::All => true,
            Names::Only(names) => names.contains(name),
        }
    }

    /// Whether no name at all is allowed.
    pub fn is_empty(&self) -> bool {
        matches!(self, Names::Only(names) if names.is_empty())
    }

    /// Union of two name sets (used to merge the two log conventions).
    pub fn union(self, other: Names) -> Names {
        match (self, other) {
            (Names::All, _) | (_, Names::All) => Names::All,
            (Names::Only(mut a), Names::Only(b)) => {
                a.extend(b);
                Names::Only(a)
            }
        }
    }
}

/// The RBAC objects in force: the stored ones plus the built-ins (the
/// caller concatenates, e.g. with [`builtin::policy`]).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Cluster-scoped roles.
    pub cluster_roles: Vec<ClusterRole>,
    /// Cluster-wide grants of ClusterRoles.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Namespaced roles.
    pub roles: Vec<Role>,
    /// Namespace-scoped grants of Roles or ClusterRoles.
    pub role_bindings: Vec<RoleBinding>,
}

impl Policy {
    /// Appends `other`'s objects to this policy (stored objects + built-ins).
    pub fn extend(&mut self, other: Policy) {
        self.cluster_roles.extend(other.cluster_roles);
        self.cluster_role_bindings
            .extend(other.cluster_role_bindings);
        self.roles.extend(other.roles);
        self.role_bindings.extend(other.role_bindings);
    }
}
