//! CustomResourceDefinitions: an `apiextensions.k8s.io/v1` CRD stored in the simulator
//! makes its resource a served type, with the same store path, discovery, OpenAPI and
//! Table printing as the built-in ones ([`crate::resources`]).
//!
//! - A CRD is validated as kube-apiserver does for what the simulator uses (name is
//!   `<plural>.<group>`, a group with a dot, names, scope, exactly one storage version,
//!   a schema per version, printer columns); a bad one is a 422 naming the field.
//! - The type served is the CRD's storage version when it is `served`: the simulator
//!   stores one version and converts nothing, so other versions are not served, and
//!   changing the storage version or the scope of a stored CRD is refused.
//! - `subresources.status` gives the type a `/status` subresource;
//!   `additionalPrinterColumns` become `kubectl get` columns (simple JSONPaths such as
//!   `.spec.order` or `.spec.nets[0]`; a filter or wildcard prints an empty cell).
//! - Custom resources are stored as sent: their bodies are NOT validated against the
//!   CRD's schema (`x-kubernetes-preserve-unknown-fields` or not), nothing is pruned or
//!   defaulted.
//! - Deleting the CRD deletes every object of its type in the same transaction (watchers
//!   see them DELETED) and the type stops being served.
//! - A CRD for a type the simulator serves built in (Cattery's own
//!   `managementclusterconnections.cattery.dev`, which the `cluster add` manifest applies)
//!   is stored, but the built-in type keeps serving those objects.
//!
//! Types are `&'static` (the store's kind, compared by identity): each distinct
//! definition is leaked once and interned, so applying the same CRD again, or to
//! another simulator in the process, reuses it. Memory grows only with the number of
//! distinct definitions ever applied.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};

use serde_json::{Value, json};

use crate::resources::{PrinterColumn, RESOURCES, ResourceType};
use crate::status::ApiError;

/// The types served for the CRDs stored in one simulator, by CRD name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    served: RwLock<BTreeMap<String, &'static ResourceType>>,
}

impl Registry {
    /// The CRD-served type at `group`/`version`/`plural`, if any.
    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        self.read()
            .values()
            .copied()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Every CRD-served type, in CRD name order.
    pub(crate) fn all(&self) -> Vec<&'static ResourceType> {
        self.read().values().copied().collect()
    }

    /// The type served for the CRD called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'static ResourceType> {
        self.read().get(name).copied()
    }

    /// Records what the CRD called `name` serves now (None: nothing).
    pub(crate) fn set(&self, name: &str, served: Option<&'static ResourceType>) {
        let mut map = self.served.write().unwrap_or_else(PoisonError::into_inner);
        match served {
            Some(t) => map.insert(name.to_string(), t),
            None => map.remove(name),
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, &'static ResourceType>> {
        self.served.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a CRD defines, read and checked from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Definition {
    group: String,
    version: String,
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
    namespaced: bool,
    served: bool,
    status: bool,
    columns: Vec<(String, String, u8, Option<String>)>,
}

const CRD_KIND: &str = "CustomResourceDefinition";

fn invalid(name: &str, field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::Invalid {
        kind: CRD_KIND.into(),
        name: name.into(),
        field: field.into(),
        detail: detail.into(),
    }
}

fn str_field<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// A lowercase RFC 1123 label (plural and singular names, version names).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn strings(v: &Value, ptr: &str, name: &str, field: &str) -> Result<Vec<String>, ApiError> {
    match v.pointer(ptr) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .filter(|s| is_label(s))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        invalid(
                            name,
                            &format!("{field}[{i}]"),
                            format!("Invalid value: {s}: must be a lowercase RFC 1123 label"),
                        )
                    })
            })
            .collect(),
        Some(other) => Err(invalid(
            name,
            field,
            format!("Invalid value: {other}: must be a list of strings"),
        )),
    }
}

/// Converts a printer column's JSONPath (`.spec.order`, `.spec.nets[0]`) to a JSON
/// pointer; None for what is not a plain path of fields and indices.
fn json_path_pointer(path: &str) -> Option<String> {
    let mut out = String::new();
    let rest = path.strip_prefix('.')?;
    for seg in rest.split('.') {
        let (field, indices) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if field.is_empty()
            || !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        out.push('/');
        out.push_str(field);
        let mut idx = indices;
        while !idx.is_empty() {
            let close = idx.find(']')?;
            let n = idx.get(1..close)?;
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            out.push('/');
            out.push_str(n);
            idx = &idx[close + 1..];
            if !idx.is_empty() && !idx.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

impl Definition {
    /// Reads and validates a CRD object (as stored, or as sent in a write).
    pub(crate) fn parse(crd: &Value) -> Result<Definition, ApiError> {
        let name = str_field(crd, "/metadata/name");
        let group = str_field(crd, "/spec/group");
        if group.is_empty() {
            return Err(invalid(name, "spec.group", "Required value"));
        }
        if !group.contains('.') || !group.split('.').all(is_label) || group.len() > 253 {
            return Err(invalid(
                name,
                "spec.group",
                format!("Invalid value: {group:?}: should be a domain with at least one dot"),
            ));
        }
        let plural = str_field(crd, "/spec/names/plural");
        if plural.is_empty() {
            return Err(invalid(name, "spec.names.plural", "Required value"));
        }
        if !is_label(plural) {
            return Err(invalid(
                name,
                "spec.names.plural",
                format!(
                    "Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
                ),
            ));
        }
        if name != format!("{plural}.{group}") {
            return Err(invalid(
                name,
                "metadata.name",
                format!(
                    "Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group ({plural}.{group})"
                ),
            ));
        }
        let kind = str_field(crd, "/spec/names/kind");
        if kind.is_empty() {
            return Err(invalid(name, "spec.names.kind", "Required value"));
        }
        if !kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            || !kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(invalid(
                name,
                "spec.names.kind",
                format!(
                    "Invalid value: {kind:?}: must be an alphanumeric name starting with a letter"
                ),
            ));
        }
        let singular = match str_field(crd, "/spec/names/singular") {
            "" => kind.to_ascii_lowercase(),
            s if is_label(s) => s.to_string(),
            s => {
                return Err(invalid(
                    name,
                    "spec.names.singular",
                    format!("Invalid value: {s:?}: must be a lowercase RFC 1123 label"),
                ));
            }
        };
        let list_kind = match str_field(crd, "/spec/names/listKind") {
            "" => format!("{kind}List"),
            s => s.to_string(),
        };
        if list_kind == kind {
            return Err(invalid(
                name,
                "spec.names.listKind",
                "Invalid value: kind and listKind may not be the same",
            ));
        }
        let short_names = strings(crd, "/spec/names/shortNames", name, "spec.names.shortNames")?;
        let categories = strings(crd, "/spec/names/categories", name, "spec.names.categories")?;
        let namespaced = match str_field(crd, "/spec/scope") {
            "Namespaced" => true,
            "Cluster" => false,
            "" => return Err(invalid(name, "spec.scope", "Required value")),
            other => {
                return Err(invalid(
                    name,
                    "spec.scope",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
                    ),
                ));
            }
        };
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                invalid(
                    name,
                    "spec.versions",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            })?;
        let mut storage = None;
        let mut seen = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            let vname = str_field(v, "/name");
            if !is_label(vname) {
                return Err(invalid(
                    name,
                    &format!("spec.versions[{i}].name"),
                    format!("Invalid value: {vname:?}: must be a lowercase RFC 1123 label"),
                ));
            }
            if seen.contains(&vname) {
                return Err(invalid(
                    name,
                    &format!("spec.versions[{i}].name"),
                    format!("Duplicate value: {vname:?}"),
                ));
            }
            seen.push(vname);
            for flag in ["served", "storage"] {
                if !v.get(flag).is_some_and(Value::is_boolean) {
                    return Err(invalid(
                        name,
                        &format!("spec.versions[{i}].{flag}"),
                        "Required value: must be true or false",
                    ));
                }
            }
            if !v
                .pointer("/schema/openAPIV3Schema")
                .is_some_and(Value::is_object)
            {
                return Err(invalid(
                    name,
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "Required value: schemas are required",
                ));
            }
            if v["storage"] == true {
                if storage.is_some() {
                    return Err(invalid(
                        name,
                        "spec.versions",
                        "Invalid value: must have exactly one version marked as storage version",
                    ));
                }
                storage = Some((i, v));
            }
        }
        let Some((si, sv)) = storage else {
            return Err(invalid(
                name,
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            ));
        };
        let mut columns = Vec::new();
        for (i, c) in sv
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = |f: &str| format!("spec.versions[{si}].additionalPrinterColumns[{i}].{f}");
            let cname = str_field(c, "/name");
            if cname.is_empty() {
                return Err(invalid(name, &at("name"), "Required value"));
            }
            let ty = str_field(c, "/type");
            if !["integer", "number", "string", "boolean", "date"].contains(&ty) {
                return Err(invalid(
                    name,
                    &at("type"),
                    format!(
                        "Unsupported value: {ty:?}: supported values: \"boolean\", \"date\", \"integer\", \"number\", \"string\""
                    ),
                ));
            }
            let path = str_field(c, "/jsonPath");
            if !path.starts_with('.') {
                return Err(invalid(
                    name,
                    &at("jsonPath"),
                    format!("Invalid value: {path:?}: must be a simple json path starting with ."),
                ));
            }
            let priority = match c.get("priority") {
                None | Some(Value::Null) => 0,
                Some(p) => p
                    .as_u64()
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or_else(|| {
                        invalid(
                            name,
                            &at("priority"),
                            format!("Invalid value: {p}: must be a small non-negative integer"),
                        )
                    })?,
            };
            columns.push((
                cname.to_string(),
                ty.to_string(),
                priority,
                json_path_pointer(path),
            ));
        }
        Ok(Definition {
            group: group.into(),
            version: str_field(sv, "/name").into(),
            plural: plural.into(),
            singular,
            kind: kind.into(),
            list_kind,
            short_names,
            categories,
            namespaced,
            served: sv["served"] == true,
            status: sv
                .pointer("/subresources/status")
                .is_some_and(Value::is_object),
            columns,
        })
    }

    /// Checks a change of a stored CRD: the scope and the storage version stay (the
    /// simulator stores one version and converts nothing).
    pub(crate) fn check_update(&self, old: &Definition, name: &str) -> Result<(), ApiError> {
        if self.namespaced != old.namespaced {
            return Err(invalid(
                name,
                "spec.scope",
                "Invalid value: field is immutable",
            ));
        }
        if self.version != old.version {
            return Err(invalid(
                name,
                "spec.versions",
                format!(
                    "Invalid value: the storage version must stay {:?}: the simulator stores one version and does not convert objects",
                    old.version
                ),
            ));
        }
        Ok(())
    }

    /// Checks that the CRD called `name` does not clash with another served type of its
    /// group: the same kind, or the same list kind.
    pub(crate) fn check_names(&self, name: &str, registry: &Registry) -> Result<(), ApiError> {
        let others: Vec<&'static ResourceType> = registry
            .read()
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, t)| *t)
            .collect();
        for t in RESOURCES
            .iter()
            .chain(others)
            .filter(|t| t.group == self.group)
        {
            if t.plural == self.plural {
                continue; // a built-in type: see `builtin`
            }
            if t.kind == self.kind {
                return Err(invalid(
                    name,
                    "spec.names.kind",
                    format!(
                        "Invalid value: {:?}: kind {} is already served in group {} as {}",
                        self.kind, self.kind, self.group, t.plural
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the simulator serves this group and plural built in.
    pub(crate) fn builtin(&self) -> bool {
        RESOURCES
            .iter()
            .any(|r| r.group == self.group && r.plural == self.plural)
    }

    /// The type to serve, if the storage version is served and no built-in type serves it.
    pub(crate) fn served_type(&self) -> Option<&'static ResourceType> {
        (self.served && !self.builtin()).then(|| intern(self))
    }

    /// The `status` kube-apiserver's CRD controllers write: names accepted, established,
    /// the stored version.
    pub(crate) fn status(&self) -> Value {
        let now = cattery_store::now_rfc3339();
        let cond = |t: &str, reason: &str, message: &str| {
            json!({"type": t, "status": "True", "lastTransitionTime": now,
                "reason": reason, "message": message})
        };
        let mut accepted = json!({"plural": self.plural, "singular": self.singular,
            "kind": self.kind, "listKind": self.list_kind});
        if !self.short_names.is_empty() {
            accepted["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            accepted["categories"] = json!(self.categories);
        }
        json!({
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": accepted,
            "storedVersions": [self.version],
        })
    }

    fn describes(&self, t: &ResourceType) -> bool {
        let short: Vec<&str> = self.short_names.iter().map(String::as_str).collect();
        let cats: Vec<&str> = self.categories.iter().map(String::as_str).collect();
        t.custom
            && t.group == self.group
            && t.version == self.version
            && t.plural == self.plural
            && t.singular == self.singular
            && t.kind == self.kind
            && t.namespaced == self.namespaced
            && t.short_names == short.as_slice()
            && t.categories == cats.as_slice()
            && t.status_subresource == self.status
            && t.printer_columns.len() == self.columns.len()
            && t.printer_columns
                .iter()
                .zip(&self.columns)
                .all(|(a, (n, ty, p, ptr))| {
                    a.name == n && a.ty == ty && a.priority == *p && a.pointer == ptr.as_deref()
                })
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_all(v: &[String]) -> &'static [&'static str] {
    Box::leak(
        v.iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// Every CRD-served type made in this process (see the module docs).
static INTERNED: Mutex<Vec<&'static ResourceType>> = Mutex::new(Vec::new());

fn intern(d: &Definition) -> &'static ResourceType {
    let mut all = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = all.iter().find(|t| d.describes(t)) {
        return t;
    }
    let columns: Vec<PrinterColumn> = d
        .columns
        .iter()
        .map(|(n, ty, p, ptr)| PrinterColumn {
            name: leak(n),
            ty: leak(ty),
            priority: *p,
            pointer: ptr.as_deref().map(leak),
        })
        .collect();
    let t: &'static ResourceType = Box::leak(Box::new(ResourceType {
        group: leak(&d.group),
        version: leak(&d.version),
        plural: leak(&d.plural),
        singular: leak(&d.singular),
        kind: leak(&d.kind),
        namespaced: d.namespaced,
        short_names: leak_all(&d.short_names),
        columns: &[],
        printer_columns: Box::leak(columns.into_boxed_slice()),
        categories: leak_all(&d.categories),
        status_subresource: d.status,
        custom: true,
    }));
    all.push(t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "globalnetworksets.projectcalico.org"},
            "spec": {"group": "projectcalico.org", "scope": "Cluster",
                "names": {"plural": "globalnetworksets", "kind": "GlobalNetworkSet", "shortNames": ["gns"]},
                "versions": [{"name": "v3", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                    "additionalPrinterColumns": [{"name": "First-Net", "type": "string", "jsonPath": ".spec.nets[0]"}]}]}
        })
    }

    #[test]
    fn a_valid_crd_serves_its_storage_version_once_interned() {
        let d = Definition::parse(&crd()).unwrap();
        let t = d.served_type().unwrap();
        assert_eq!(
            (
                t.group,
                t.version,
                t.plural,
                t.kind,
                t.singular,
                t.namespaced
            ),
            (
                "projectcalico.org",
                "v3",
                "globalnetworksets",
                "GlobalNetworkSet",
                "globalnetworkset",
                false
            )
        );
        assert_eq!(t.short_names, &["gns"]);
        assert_eq!(t.printer_columns[0].pointer, Some("/spec/nets/0"));
        assert!(std::ptr::eq(t, d.served_type().unwrap()), "interned");
        let st = d.status();
        assert_eq!(st["acceptedNames"]["listKind"], "GlobalNetworkSetList");
        assert_eq!(st["storedVersions"], json!(["v3"]));
    }

    #[test]
    fn bad_crds_name_the_field() {
        let field = |f: &dyn Fn(&mut Value)| {
            let mut c = crd();
            f(&mut c);
            match Definition::parse(&c).unwrap_err() {
                ApiError::Invalid { field, .. } => field,
                e => panic!("{e}"),
            }
        };
        assert_eq!(
            field(&|c| c["metadata"]["name"] = json!("x")),
            "metadata.name"
        );
        assert_eq!(
            field(&|c| c["spec"]["group"] = json!("nodots")),
            "spec.group"
        );
        assert_eq!(
            field(&|c| c["spec"]["scope"] = json!("Global")),
            "spec.scope"
        );
        assert_eq!(
            field(&|c| c["spec"]["versions"][0]["storage"] = json!(false)),
            "spec.versions"
        );
        assert_eq!(
            field(&|c| c["spec"]["versions"][0]
                .as_object_mut()
                .unwrap()
                .remove("schema")
                .map(drop)
                .unwrap_or(())),
            "spec.versions[0].schema.openAPIV3Schema"
        );
        assert_eq!(
            field(&|c| c["spec"]["names"]["kind"] = json!("")),
            "spec.names.kind"
        );
        assert_eq!(
            field(
                &|c| c["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("map")
            ),
            "spec.versions[0].additionalPrinterColumns[0].type"
        );
        let old = Definition::parse(&crd()).unwrap();
        let mut c = crd();
        c["spec"]["scope"] = json!("Namespaced");
        let new = Definition::parse(&c).unwrap();
        assert!(new.check_update(&old, "n").is_err());
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            json_path_pointer(".spec.order").as_deref(),
            Some("/spec/order")
        );
        assert_eq!(json_path_pointer(".a[1][2].b").as_deref(), Some("/a/1/2/b"));
        assert_eq!(
            json_path_pointer(".status.conditions[?(@.type==\"Ready\")].status"),
            None
        );
        assert_eq!(json_path_pointer("spec"), None);
        assert_eq!(json_path_pointer(".a[*]"), None);
    }

    #[test]
    fn builtin_types_are_not_served_twice() {
        let mut c = crd();
        c["metadata"]["name"] = json!("managementclusterconnections.cattery.dev");
        c["spec"]["group"] = json!("cattery.dev");
        c["spec"]["names"] = json!({"plural": "managementclusterconnections", "kind": "ManagementClusterConnection"});
        let d = Definition::parse(&c).unwrap();
        assert!(d.builtin());
        assert!(d.served_type().is_none());
    }
}
