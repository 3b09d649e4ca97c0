//! The compiled authorizer: indexes bindings by subject at construction,
//! then answers decisions with a few hash lookups and rule scans.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::rule::{CompiledRole, CompiledRule, Interner};
use crate::{AUTHENTICATED_GROUP, Decision, Names, Policy, Request, Requester};

/// One binding resolved to its role: "these rules, in this scope".
#[derive(Debug)]
pub(crate) struct Grant {
    /// `ClusterRoleBinding` or `RoleBinding`.
    binding_kind: &'static str,
    /// Binding name, `ns/name` for RoleBindings.
    binding: String,
    /// `ClusterRole` or `Role`.
    role_kind: &'static str,
    /// Role name.
    role_name: String,
    /// `Some(ns)` for RoleBindings: the grant applies only in that namespace.
    pub(crate) namespace: Option<String>,
    /// Index into [`Authorizer::roles`].
    role: usize,
}

impl Grant {
    /// Whether the grant applies to a request in `namespace`.
    #[inline]
    fn applies_in(&self, namespace: Option<&str>) -> bool {
        match &self.namespace {
            None => true,
            Some(ns) => namespace == Some(ns.as_str()),
        }
    }
}

/// A subject's link to a grant, with the subject described for reasons.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Index into [`Authorizer::grants`].
    grant: usize,
    /// E.g. `Group "dev"`, `ServiceAccount "agent/cattery-system"`.
    pub(crate) subject: Box<str>,
}

/// An immutable, compiled view of a [`Policy`], cheap to query and safe to
/// share between threads; rebuild it on every RBAC change.
///
/// Construction resolves every binding's roleRef once (a binding whose role
/// does not exist grants nothing) and indexes bindings by user name
/// (ServiceAccounts as `system:serviceaccount:NS:NAME`) and by group name,
/// so a decision only looks at the grants of the requester's subjects.
/// When two roles have the same name (and namespace), the later one in the
/// policy wins, so callers should append built-ins last.
pub struct Authorizer {
    /// Ids of the verbs, apiGroups and resources rules mention.
    pub(crate) interner: Interner,
    /// Compiled rules of every role, ClusterRoles first.
    roles: Vec<CompiledRole>,
    /// Every binding whose role exists.
    grants: Vec<Grant>,
    /// Grants by user name.
    by_user: HashMap<String, Vec<Entry>>,
    /// Grants by group name.
    by_group: HashMap<String, Vec<Entry>>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("roles", &self.roles.len())
            .field("grants", &self.grants.len())
            .field("users", &self.by_user.len())
            .field("groups", &self.by_group.len())
            .finish()
    }
}

/// `""` means "none" in Kubernetes request attributes.
#[inline]
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl Authorizer {
    /// Compiles `policy`. Never fails: invalid or dangling objects simply
    /// grant nothing (validation happens before objects are stored).
    pub fn new(policy: &Policy) -> Authorizer {
        let mut interner = Interner::default();
        let mut roles: Vec<CompiledRole> =
            Vec::with_capacity(policy.cluster_roles.len() + policy.roles.len());
        let mut cluster_role_index: HashMap<&str, usize> = HashMap::new();
        for cr in &policy.cluster_roles {
            let Some(name) = cr.metadata.name.as_deref() else {
                continue;
            };
            let rules = cr.rules.as_deref().unwrap_or_default();
            cluster_role_index.insert(name, roles.len());
            roles.push(CompiledRole::new(rules, true, &mut interner));
        }
        let mut role_index: HashMap<(&str, &str), usize> = HashMap::new();
        for r in &policy.roles {
            let (Some(ns), Some(name)) =
                (r.metadata.namespace.as_deref(), r.metadata.name.as_deref())
            else {
                continue;
            };
            let rules = r.rules.as_deref().unwrap_or_default();
            role_index.insert((ns, name), roles.len());
            // nonResourceURLs are meaningless in a namespaced Role.
            roles.push(CompiledRole::new(rules, false, &mut interner));
        }

        let mut az = Authorizer {
            interner,
            roles,
            grants: Vec::new(),
            by_user: HashMap::new(),
            by_group: HashMap::new(),
        };

        for b in &policy.cluster_role_bindings {
            let Some(name) = b.metadata.name.as_deref() else {
                continue;
            };
            if b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(&role) = cluster_role_index.get(b.role_ref.name.as_str()) else {
                continue;
            };
            let grant = Grant {
                binding_kind: "ClusterRoleBinding",
                binding: name.to_owned(),
                role_kind: "ClusterRole",
                role_name: b.role_ref.name.clone(),
                namespace: None,
                role,
            };
            az.add(grant, b.subjects.as_deref().unwrap_or_default());
        }
        for b in &policy.role_bindings {
            let (Some(ns), Some(name)) =
                (b.metadata.namespace.as_deref(), b.metadata.name.as_deref())
            else {
                continue;
            };
            let (role_kind, role) = match b.role_ref.kind.as_str() {
                "ClusterRole" => (
                    "ClusterRole",
                    cluster_role_index.get(b.role_ref.name.as_str()),
                ),
                "Role" => ("Role", role_index.get(&(ns, b.role_ref.name.as_str()))),
                _ => continue,
            };
            let Some(&role) = role else {
                continue;
            };
            let grant = Grant {
                binding_kind: "RoleBinding",
                binding: format!("{ns}/{name}"),
                role_kind,
                role_name: b.role_ref.name.clone(),
                namespace: Some(ns.to_owned()),
                role,
            };
            az.add(grant, b.subjects.as_deref().unwrap_or_default());
        }
        az
    }

    /// Records `grant` and indexes it under each of its subjects.
    fn add(&mut self, grant: Grant, subjects: &[crate::Subject]) {
        let id = self.grants.len();
        for s in subjects {
            if s.name.is_empty() {
                continue;
            }
            match s.kind.as_str() {
                "User" => self.by_user.entry(s.name.clone()).or_default().push(Entry {
                    grant: id,
                    subject: format!("User {:?}", s.name).into(),
                }),
                "Group" => self
                    .by_group
                    .entry(s.name.clone())
                    .or_default()
                    .push(Entry {
                        grant: id,
                        subject: format!("Group {:?}", s.name).into(),
                    }),
                "ServiceAccount" => {
                    // A RoleBinding's ServiceAccount defaults to its namespace.
                    let ns = match (s.namespace.as_deref(), grant.namespace.as_deref()) {
                        (Some(ns), _) if !ns.is_empty() => ns,
                        (_, Some(ns)) => ns,
                        _ => continue,
                    };
                    let user = format!("system:serviceaccount:{ns}:{}", s.name);
                    self.by_user.entry(user).or_default().push(Entry {
                        grant: id,
                        subject: format!("ServiceAccount {:?}", format!("{}/{ns}", s.name)).into(),
                    });
                }
                _ => {}
            }
        }
        self.grants.push(grant);
    }

    /// Calls `f` for each rule of each grant that applies to `who` (their
    /// user name, their groups, the implicit [`AUTHENTICATED_GROUP`]) for a
    /// request in `namespace` (None = cluster-scoped: ClusterRoleBindings
    /// only) and whose role passes `keep`, until `f` returns Some.
    #[inline]
    pub(crate) fn scan<'s, T>(
        &'s self,
        who: &Requester<'_>,
        namespace: Option<&str>,
        keep: impl Fn(&CompiledRole) -> bool,
        mut f: impl FnMut(&'s Grant, &'s Entry, &'s CompiledRule) -> Option<T>,
    ) -> Option<T> {
        let namespace = non_empty(namespace);
        let mut visit = |entries: &'s [Entry]| -> Option<T> {
            for e in entries {
                let g = &self.grants[e.grant];
                if !g.applies_in(namespace) {
                    continue;
                }
                let role = &self.roles[g.role];
                if !keep(role) {
                    continue;
                }
                for r in &role.rules {
                    if let Some(t) = f(g, e, r) {
                        return Some(t);
                    }
                }
            }
            None
        };
        if let Some(entries) = self.by_user.get(who.user)
            && let Some(t) = visit(entries)
        {
            return Some(t);
        }
        let mut authenticated_listed = false;
        for group in who.groups {
            authenticated_listed |= group == AUTHENTICATED_GROUP;
            if let Some(entries) = self.by_group.get(group.as_str())
                && let Some(t) = visit(entries)
            {
                return Some(t);
            }
        }
        if !authenticated_listed && let Some(entries) = self.by_group.get(AUTHENTICATED_GROUP) {
            return visit(entries);
        }
        None
    }

    /// The first grant (and subject) that allows `req`, without allocating.
    pub(crate) fn find_grant<'s>(
        &'s self,
        who: &Requester<'_>,
        req: &Request<'_>,
    ) -> Option<(&'s Grant, &'s Entry)> {
        match *req {
            Request::Resource {
                verb,
                api_group,
                resource,
                subresource,
                name,
                namespace,
            } => {
                let q = self.interner.query(
                    verb,
                    api_group,
                    resource,
                    non_empty(subresource),
                    non_empty(name),
                );
                self.scan(
                    who,
                    namespace,
                    |role| role.may_match(&q),
                    |g, e, r| r.matches_resource(&q).then_some((g, e)),
                )
            }
            Request::NonResource { verb, path } => {
                let verb = self.interner.id(verb);
                self.scan(
                    who,
                    None,
                    |role| role.may_match_verb(verb),
                    |g, e, r| r.matches_non_resource(verb, path).then_some((g, e)),
                )
            }
        }
    }

    /// Decides `req` for `who` with Kubernetes RBAC semantics (deny by
    /// default). The reason names the granting binding, role and subject
    /// (like kube-apiserver) or, on deny, the requester and the request.
    pub fn authorize(&self, who: &Requester, req: &Request) -> Decision {
        match self.find_grant(who, req) {
            Some((g, e)) => Decision {
                allowed: true,
                reason: allow_reason(g, e),
            },
            None => Decision {
                allowed: false,
                reason: format!(
                    "{} may not {}: no role bound to them grants it",
                    describe_requester(who),
                    describe_request(req)
                ),
            },
        }
    }

    /// The names of `resource[/subresource]` in `api_group` that `who` may
    /// `verb` (in `namespace`, or cluster-wide when None): [`Names::All`]
    /// when some matching rule has no resourceNames, else the union of the
    /// resourceNames of the matching rules. Used to filter lists.
    pub fn allowed_names(
        &self,
        who: &Requester,
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
    ) -> Names {
        let q = self
            .interner
            .query(verb, api_group, resource, non_empty(subresource), None);
        let mut names = BTreeSet::new();
        let all = self.scan(
            who,
            namespace,
            |role| role.may_match(&q),
            |_, _, r| {
                if !r.matches_resource_any_name(&q) {
                    return None;
                }
                if r.resource_names.items.is_empty() {
                    return Some(());
                }
                names.extend(r.resource_names.items.iter().cloned());
                None
            },
        );
        if all.is_some() {
            return Names::All;
        }
        Names::Only(names)
    }
}

/// `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to Group "g"`.
pub(crate) fn allow_reason(g: &Grant, e: &Entry) -> String {
    format!(
        "RBAC: allowed by {} {:?} of {} {:?} to {}",
        g.binding_kind, g.binding, g.role_kind, g.role_name, e.subject
    )
}

/// `user "bob" (groups ["dev"])`.
pub(crate) fn describe_requester(who: &Requester) -> String {
    format!("user {:?} (groups {:?})", who.user, who.groups)
}

/// `(apiGroup cattery.dev)`, or `(core apiGroup "")`.
pub(crate) fn describe_group(api_group: &str) -> String {
    if api_group.is_empty() {
        "(core apiGroup \"\")".to_owned()
    } else {
        format!("(apiGroup {api_group})")
    }
}

/// `get managedclusters/proxy "east" (apiGroup cattery.dev) cluster-wide`.
pub(crate) fn describe_request(req: &Request) -> String {
    match *req {
        Request::Resource {
            verb,
            api_group,
            resource,
            subresource,
            name,
            namespace,
        } => {
            let mut s = format!("{verb} {resource}");
            if let Some(sub) = non_empty(subresource) {
                s.push('/');
                s.push_str(sub);
            }
            if let Some(name) = non_empty(name) {
                s.push_str(&format!(" {name:?}"));
            }
            s.push(' ');
            s.push_str(&describe_group(api_group));
            match non_empty(namespace) {
                Some(ns) => s.push_str(&format!(" in namespace {ns:?}")),
                None => s.push_str(" cluster-wide"),
            }
            s
        }
        Request::NonResource { verb, path } => format!("{verb} non-resource URL {path:?}"),
    }
}
