//! Rule matching: a [`PolicyRule`] compiled into a form that is cheap to test.
//!
//! The semantics are kube-apiserver's (`pkg/apis/rbac/v1/evaluation_helpers.go`):
//!
//! * verbs and apiGroups match exactly or through `"*"`;
//! * resources match `"*"`, the exact `resource` or `resource/subresource`,
//!   or `"*/subresource"` for any resource's subresource. A rule naming
//!   `managedclusters` does not cover `managedclusters/proxy`. As in
//!   Kubernetes, `"res/*"` is not a wildcard: it only matches the literal
//!   subresource `*` (which is what makes escalation checks exact);
//! * resourceNames, when present, must contain the requested name; a request
//!   without a name (list, create, ...) never matches such a rule, and `"*"`
//!   in resourceNames is a literal name;
//! * nonResourceURLs match `"*"`, exactly, or by prefix when they end in `*`
//!   (`/apis/*` matches `/apis/cattery.dev`).

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::PolicyRule;

/// The wildcard that matches every verb, apiGroup, resource and URL.
pub(crate) const ALL: &str = "*";

/// Id of a string that no rule mentions: it matches only wildcards.
pub(crate) const UNKNOWN: u32 = u32::MAX;

/// Maps every verb, apiGroup, resource and subresource string that appears
/// in a rule to a small integer, so rule tests are integer comparisons and a
/// request's strings are hashed once per decision rather than compared
/// against every rule.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    strings: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 distinct strings");
        assert!(id != UNKNOWN, "fewer than 2^32 - 1 distinct strings");
        self.ids.insert(s.to_owned(), id);
        self.strings.push(s.to_owned());
        id
    }

    /// The id of `s`, or [`UNKNOWN`] when no rule mentions it.
    #[inline]
    pub(crate) fn id(&self, s: &str) -> u32 {
        self.ids.get(s).copied().unwrap_or(UNKNOWN)
    }

    /// The string of an id handed out by this interner.
    pub(crate) fn string(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    /// Resolves the strings of a resource request.
    #[inline]
    pub(crate) fn query<'q>(
        &self,
        verb: &str,
        api_group: &str,
        resource: &str,
        sub: Option<&str>,
        name: Option<&'q str>,
    ) -> Query<'q> {
        Query {
            verb: self.id(verb),
            api_group: self.id(api_group),
            resource: self.id(resource),
            sub: sub.map(|s| self.id(s)),
            name,
        }
    }
}

/// A resource request with its strings interned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Query<'q> {
    pub(crate) verb: u32,
    pub(crate) api_group: u32,
    pub(crate) resource: u32,
    /// None when the request has no subresource.
    pub(crate) sub: Option<u32>,
    /// None when the request names no object.
    pub(crate) name: Option<&'q str>,
}

/// A set of interned strings, optionally containing the wildcard.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    /// Whether `"*"` was present.
    pub(crate) any: bool,
    /// The literal items.
    pub(crate) items: Box<[u32]>,
}

impl IdSet {
    fn new(items: &[String], interner: &mut Interner) -> IdSet {
        let any = items.iter().any(|s| s == ALL);
        let mut v: Vec<u32> = items
            .iter()
            .filter(|s| *s != ALL)
            .map(|s| interner.intern(s))
            .collect();
        v.sort_unstable();
        v.dedup();
        IdSet {
            any,
            items: v.into_boxed_slice(),
        }
    }

    /// Whether `id` is in the set (or the set has the wildcard).
    #[inline]
    pub(crate) fn matches(&self, id: u32) -> bool {
        self.any || self.items.contains(&id)
    }
}

/// Above this many items a name set is binary-searched instead of scanned.
const LINEAR_MAX: usize = 12;

/// A rule's resourceNames: literal strings (`"*"` is just a name here).
#[derive(Clone, Debug, Default)]
pub(crate) struct NameSet {
    /// Sorted, de-duplicated names.
    pub(crate) items: Box<[String]>,
}

impl NameSet {
    fn new(items: &[String]) -> NameSet {
        let mut v = items.to_vec();
        v.sort_unstable();
        v.dedup();
        NameSet {
            items: v.into_boxed_slice(),
        }
    }

    /// Whether `s` is one of the names.
    #[inline]
    pub(crate) fn contains(&self, s: &str) -> bool {
        if self.items.len() <= LINEAR_MAX {
            self.items.iter().any(|i| i == s)
        } else {
            self.items.binary_search_by(|i| i.as_str().cmp(s)).is_ok()
        }
    }
}

/// A rule's `resources`, split so that `resource/subresource` is tested
/// without building the combined string.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceSet {
    /// `"*"` was present.
    pub(crate) any: bool,
    /// `resource` (sub None) or `resource/subresource` (sub Some) entries.
    pub(crate) exact: Box<[(u32, Option<u32>)]>,
    /// Subresources from `"*/subresource"` entries.
    pub(crate) any_resource_sub: Box<[u32]>,
}

impl ResourceSet {
    fn new(items: &[String], interner: &mut Interner) -> ResourceSet {
        let mut set = ResourceSet::default();
        let mut exact = Vec::new();
        let mut subs = Vec::new();
        for item in items {
            if item == ALL {
                set.any = true;
            } else if let Some(sub) = item.strip_prefix("*/") {
                subs.push(interner.intern(sub));
            } else {
                exact.push(match item.split_once('/') {
                    Some((r, s)) => (interner.intern(r), Some(interner.intern(s))),
                    None => (interner.intern(item), None),
                });
            }
        }
        exact.sort_unstable();
        exact.dedup();
        set.exact = exact.into_boxed_slice();
        set.any_resource_sub = subs.into_boxed_slice();
        set
    }

    /// Whether `resource[/sub]` is covered.
    #[inline]
    fn matches(&self, resource: u32, sub: Option<u32>) -> bool {
        self.any
            || self.exact.iter().any(|&(r, s)| r == resource && s == sub)
            || sub.is_some_and(|sub| self.any_resource_sub.contains(&sub))
    }
}

/// A rule's `nonResourceURLs`.
#[derive(Clone, Debug, Default)]
pub(crate) struct UrlSet {
    /// `"*"` was present.
    any: bool,
    /// URLs that must match exactly.
    exact: Box<[String]>,
    /// Prefixes from URLs ending in `*` (the stars removed).
    prefixes: Box<[String]>,
}

impl UrlSet {
    fn new(items: &[String]) -> UrlSet {
        let mut set = UrlSet::default();
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for item in items {
            if item == ALL {
                set.any = true;
            } else if item.ends_with('*') {
                prefixes.push(item.trim_end_matches('*').to_owned());
            } else {
                exact.push(item.clone());
            }
        }
        set.exact = exact.into_boxed_slice();
        set.prefixes = prefixes.into_boxed_slice();
        set
    }

    /// Whether `path` is covered.
    #[inline]
    fn matches(&self, path: &str) -> bool {
        self.any
            || self.exact.iter().any(|u| u == path)
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// A [`PolicyRule`] ready for matching.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledRule {
    /// verbs, `"*"` = all.
    pub(crate) verbs: IdSet,
    /// apiGroups, `"*"` = all.
    pub(crate) api_groups: IdSet,
    /// resources.
    pub(crate) resources: ResourceSet,
    /// resourceNames; empty = any name (and requests without a name).
    pub(crate) resource_names: NameSet,
    /// nonResourceURLs.
    urls: UrlSet,
}

impl CompiledRule {
    /// Compiles `rule`. Namespaced roles pass `allow_non_resource = false`
    /// so that nonResourceURLs in a Role are ignored, as in Kubernetes.
    pub(crate) fn new(
        rule: &PolicyRule,
        allow_non_resource: bool,
        interner: &mut Interner,
    ) -> CompiledRule {
        let empty: &[String] = &[];
        CompiledRule {
            verbs: IdSet::new(&rule.verbs, interner),
            api_groups: IdSet::new(rule.api_groups.as_deref().unwrap_or(empty), interner),
            resources: ResourceSet::new(rule.resources.as_deref().unwrap_or(empty), interner),
            resource_names: NameSet::new(rule.resource_names.as_deref().unwrap_or(empty)),
            urls: if allow_non_resource {
                UrlSet::new(rule.non_resource_urls.as_deref().unwrap_or(empty))
            } else {
                UrlSet::default()
            },
        }
    }

    /// Whether the rule covers the request `q`, including its name when the
    /// rule lists resourceNames.
    #[inline]
    pub(crate) fn matches_resource(&self, q: &Query) -> bool {
        self.matches_resource_any_name(q) && self.matches_name(q.name)
    }

    /// Like [`Self::matches_resource`] but ignoring resourceNames (for
    /// computing the set of allowed names).
    #[inline]
    pub(crate) fn matches_resource_any_name(&self, q: &Query) -> bool {
        self.verbs.matches(q.verb)
            && self.api_groups.matches(q.api_group)
            && self.resources.matches(q.resource, q.sub)
    }

    /// Whether the rule's resourceNames admit `name`.
    #[inline]
    pub(crate) fn matches_name(&self, name: Option<&str>) -> bool {
        self.resource_names.items.is_empty()
            || name.is_some_and(|n| self.resource_names.contains(n))
    }

    /// Whether the rule covers `verb` (interned) on the non-resource URL `path`.
    #[inline]
    pub(crate) fn matches_non_resource(&self, verb: u32, path: &str) -> bool {
        self.verbs.matches(verb) && self.urls.matches(path)
    }
}

/// Bit of an interned id in a role summary mask.
#[inline]
fn bit(id: u32) -> u64 {
    1u64 << (id & 63)
}

/// A role's rules plus a summary (bit masks of the verbs, apiGroups and
/// resources its rules mention) that rules out most roles for a request
/// with three AND operations, before any rule is looked at. Masks may give
/// false positives (ids share bits), never false negatives.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledRole {
    /// The rules.
    pub(crate) rules: Box<[CompiledRule]>,
    verbs: u64,
    api_groups: u64,
    resources: u64,
}

impl CompiledRole {
    /// Compiles a role's rules (`allow_non_resource` as for [`CompiledRule::new`]).
    pub(crate) fn new(
        rules: &[PolicyRule],
        allow_non_resource: bool,
        interner: &mut Interner,
    ) -> CompiledRole {
        let rules: Box<[CompiledRule]> = rules
            .iter()
            .map(|r| CompiledRule::new(r, allow_non_resource, interner))
            .collect();
        let mask = |set: &IdSet| {
            if set.any {
                u64::MAX
            } else {
                set.items.iter().fold(0, |m, &id| m | bit(id))
            }
        };
        let mut role = CompiledRole::default();
        for r in &rules {
            role.verbs |= mask(&r.verbs);
            role.api_groups |= mask(&r.api_groups);
            role.resources |= if r.resources.any || !r.resources.any_resource_sub.is_empty() {
                u64::MAX
            } else {
                r.resources.exact.iter().fold(0, |m, &(id, _)| m | bit(id))
            };
        }
        role.rules = rules;
        role
    }

    /// Whether some rule may match a request for `verb` on `api_group`.
    #[inline]
    pub(crate) fn may_match_verb_group(&self, verb: u32, api_group: u32) -> bool {
        self.verbs & bit(verb) != 0 && self.api_groups & bit(api_group) != 0
    }

    /// Whether some rule may match the resource request `q`.
    #[inline]
    pub(crate) fn may_match(&self, q: &Query) -> bool {
        self.may_match_verb_group(q.verb, q.api_group) && self.resources & bit(q.resource) != 0
    }

    /// Whether some rule may match a non-resource request with `verb`.
    #[inline]
    pub(crate) fn may_match_verb(&self, verb: u32) -> bool {
        self.verbs & bit(verb) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|x| x.to_string()).collect())
    }

    /// A compiled rule with its interner, queried by strings.
    struct T(Interner, CompiledRule);

    impl T {
        fn new(rule: PolicyRule, allow_non_resource: bool) -> T {
            let mut i = Interner::default();
            let r = CompiledRule::new(&rule, allow_non_resource, &mut i);
            T(i, r)
        }

        fn res(
            &self,
            verb: &str,
            group: &str,
            res: &str,
            sub: Option<&str>,
            name: Option<&str>,
        ) -> bool {
            self.1
                .matches_resource(&self.0.query(verb, group, res, sub, name))
        }

        fn url(&self, verb: &str, path: &str) -> bool {
            self.1.matches_non_resource(self.0.id(verb), path)
        }
    }

    fn rule(verbs: &[&str], groups: &[&str], res: &[&str], names: &[&str]) -> T {
        T::new(
            PolicyRule {
                verbs: s(verbs).unwrap(),
                api_groups: s(groups),
                resources: s(res),
                resource_names: if names.is_empty() { None } else { s(names) },
                non_resource_urls: None,
            },
            true,
        )
    }

    fn urls(verbs: &[&str], urls: &[&str], allow: bool) -> T {
        T::new(
            PolicyRule {
                verbs: s(verbs).unwrap(),
                non_resource_urls: s(urls),
                ..Default::default()
            },
            allow,
        )
    }

    #[test]
    fn wildcard_verbs_groups_resources() {
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(r.res("delete", "anything", "x", Some("y"), Some("n")));
        let r = rule(&["get"], &["cattery.dev"], &["*"], &[]);
        assert!(r.res("get", "cattery.dev", "tokens", None, None));
        assert!(!r.res("list", "cattery.dev", "tokens", None, None));
        assert!(!r.res("get", "", "tokens", None, None));
        let r = rule(&["get", "*"], &["a", "*"], &["pods"], &[]);
        assert!(r.res("patch", "b", "pods", None, None));
        assert!(!r.res("patch", "b", "secrets", None, None));
    }

    #[test]
    fn literal_star_request_only_matches_wildcard() {
        let r = rule(&["get"], &["g"], &["pods"], &[]);
        assert!(!r.res("*", "g", "pods", None, None));
        assert!(!r.res("get", "*", "pods", None, None));
        assert!(!r.res("get", "g", "*", None, None));
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(r.res("*", "*", "*", None, None));
        // "*" interned as a subresource must not make a "*" verb match "get".
        let r = rule(&["get"], &["g"], &["pods/*"], &[]);
        assert!(!r.res("*", "g", "pods", Some("*"), None));
        assert!(r.res("get", "g", "pods", Some("*"), None));
    }

    #[test]
    fn subresources() {
        let r = rule(&["get"], &["cattery.dev"], &["managedclusters"], &[]);
        assert!(r.res("get", "cattery.dev", "managedclusters", None, None));
        assert!(!r.res("get", "cattery.dev", "managedclusters", Some("proxy"), None));
        let r = rule(&["get"], &["cattery.dev"], &["managedclusters/proxy"], &[]);
        assert!(r.res("get", "cattery.dev", "managedclusters", Some("proxy"), None));
        assert!(!r.res("get", "cattery.dev", "managedclusters", None, None));
        assert!(!r.res(
            "get",
            "cattery.dev",
            "managedclusters",
            Some("status"),
            None
        ));
        assert!(!r.res("get", "cattery.dev", "proxy", None, None));
        // "*/proxy" = the proxy subresource of every resource.
        let r = rule(&["get"], &["*"], &["*/proxy"], &[]);
        assert!(r.res("get", "x", "managedclusters", Some("proxy"), None));
        assert!(r.res("get", "x", "services", Some("proxy"), None));
        assert!(!r.res("get", "x", "services", None, None));
        assert!(!r.res("get", "x", "services", Some("status"), None));
        // "res/*" is literal, as in Kubernetes.
        let r = rule(&["get"], &["*"], &["pods/*"], &[]);
        assert!(!r.res("get", "", "pods", Some("log"), None));
        assert!(r.res("get", "", "pods", Some("*"), None));
        // "*" covers subresources.
        let r = rule(&["get"], &["*"], &["*"], &[]);
        assert!(r.res("get", "", "pods", Some("log"), None));
    }

    #[test]
    fn resource_names() {
        let r = rule(&["get", "list"], &[""], &["configmaps"], &["a", "b"]);
        assert!(r.res("get", "", "configmaps", None, Some("a")));
        assert!(!r.res("get", "", "configmaps", None, Some("c")));
        // No name in the request: a rule with resourceNames never matches.
        assert!(!r.res("list", "", "configmaps", None, None));
        let r = rule(&["get"], &[""], &["configmaps"], &["*"]);
        assert!(!r.res("get", "", "configmaps", None, Some("x")));
        assert!(r.res("get", "", "configmaps", None, Some("*")));
        // Many names: binary search path.
        let names: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let r = rule(&["get"], &[""], &["x"], &refs);
        assert!(r.res("get", "", "x", None, Some("n37")));
        assert!(r.res("get", "", "x", None, Some("n0")));
        assert!(!r.res("get", "", "x", None, Some("n50")));
    }

    #[test]
    fn non_resource_urls() {
        let r = urls(&["get"], &["/version", "/apis/*"], true);
        assert!(r.url("get", "/version"));
        assert!(!r.url("get", "/version/x"));
        assert!(!r.url("post", "/version"));
        assert!(r.url("get", "/apis/"));
        assert!(r.url("get", "/apis/cattery.dev/v1"));
        assert!(!r.url("get", "/apis"));
        let r = urls(&["*"], &["*"], true);
        assert!(r.url("delete", "/anything"));
        // Ignored in Roles.
        let r = urls(&["*"], &["*"], false);
        assert!(!r.url("get", "/version"));
        // A resource rule never matches a non-resource request.
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(!r.url("get", "/version"));
    }

    #[test]
    fn role_summary_never_rules_out_a_match() {
        let mut i = Interner::default();
        let rules = [
            PolicyRule {
                verbs: s(&["get"]).unwrap(),
                api_groups: s(&["a"]),
                resources: s(&["x", "y/z"]),
                ..Default::default()
            },
            PolicyRule {
                verbs: s(&["list"]).unwrap(),
                api_groups: s(&["*"]),
                resources: s(&["*/scale"]),
                ..Default::default()
            },
        ];
        let role = CompiledRole::new(&rules, true, &mut i);
        let q = |v, g, r, sub| i.query(v, g, r, sub, None);
        assert!(role.may_match(&q("get", "a", "x", None)));
        assert!(role.may_match(&q("get", "a", "y", Some("z"))));
        assert!(role.may_match(&q("list", "b", "deployments", Some("scale"))));
        // Nothing mentions "delete" (interned ids are small, so no collision here).
        assert!(!role.may_match(&q("delete", "a", "x", None)));
        assert!(!role.may_match_verb(i.id("delete")));
        assert!(role.may_match_verb(i.id("get")));
    }
}
