//! `cattery apply -f`, `cattery get KIND [NAME]` and `cattery delete KIND NAME`: generic
//! commands over the management plane's Kubernetes-style resources (RBAC objects,
//! clusters, tokens), shaped like their kubectl namesakes.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::client::{ApiClient, ApiFailure, ConnectArgs};
use crate::output::{Format, print_object, print_table};

/// A kind of resource the generic commands know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kind {
    kind: &'static str,
    plural: &'static str,
    api_version: &'static str,
    namespaced: bool,
    /// Whether `apply` may write it.
    appliable: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        kind: "ClusterRole",
        plural: "clusterroles",
        api_version: "rbac.authorization.k8s.io/v1",
        namespaced: false,
        appliable: true,
    },
    Kind {
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        api_version: "rbac.authorization.k8s.io/v1",
        namespaced: false,
        appliable: true,
    },
    Kind {
        kind: "Role",
        plural: "roles",
        api_version: "rbac.authorization.k8s.io/v1",
        namespaced: true,
        appliable: true,
    },
    Kind {
        kind: "RoleBinding",
        plural: "rolebindings",
        api_version: "rbac.authorization.k8s.io/v1",
        namespaced: true,
        appliable: true,
    },
    Kind {
        kind: "ManagedCluster",
        plural: "managedclusters",
        api_version: "cattery.dev/v1",
        namespaced: false,
        appliable: false,
    },
    Kind {
        kind: "Token",
        plural: "tokens",
        api_version: "cattery.dev/v1",
        namespaced: false,
        appliable: false,
    },
];

fn kind_named(name: &str) -> anyhow::Result<Kind> {
    let n = name.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|k| {
            k.plural == n || k.kind.to_ascii_lowercase() == n || k.plural.trim_end_matches('s') == n
        })
        .copied()
        .with_context(|| {
            format!(
                "unknown resource type {name:?}; known: {}",
                KINDS
                    .iter()
                    .map(|k| k.plural)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn collection_path(k: Kind, namespace: Option<&str>) -> String {
    match (k.namespaced, namespace) {
        (true, Some(ns)) => format!("/apis/{}/namespaces/{ns}/{}", k.api_version, k.plural),
        _ => format!("/apis/{}/{}", k.api_version, k.plural),
    }
}

/// Checks a name or namespace before it goes into a URL path.
fn check_segment(what: &str, v: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !v.is_empty()
            && v.len() <= 253
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_')),
        "{what} {v:?}: only letters, digits, '-', '.', ':' and '_' are allowed"
    );
    Ok(())
}

/// Flags of `cattery apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// YAML (several documents allowed) or JSON file, or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Flags of `cattery get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Resource type: clusterroles, clusterrolebindings, roles, rolebindings, managedclusters, tokens.
    pub kind: String,
    /// One object's name.
    pub name: Option<String>,
    /// Namespace of roles and rolebindings (default: all namespaces).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short, long, default_value = "table")]
    pub output: Format,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Flags of `cattery delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Resource type: clusterroles, clusterrolebindings, roles, rolebindings.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Namespace of roles and rolebindings.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// The documents of one file: YAML documents, or a JSON object, or a `List`'s items.
fn documents(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let docs: Vec<Value> = if text.trim_start().starts_with('{') {
        vec![
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", path.display()))?,
        ]
    } else {
        serde_saphyr::from_multiple(&text)
            .map_err(|e| anyhow::anyhow!("{}: invalid YAML: {e}", path.display()))?
    };
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Null => {}
            Value::Object(ref o)
                if o.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && o.get("items").is_some_and(Value::is_array) =>
            {
                out.extend(o["items"].as_array().cloned().unwrap_or_default())
            }
            Value::Object(_) => out.push(d),
            _ => anyhow::bail!("{}: every document must be an object", path.display()),
        }
    }
    Ok(out)
}

/// Creates or replaces every object in the files, in order; stops at the first error.
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    for f in &args.files {
        for (i, d) in documents(f)?.into_iter().enumerate() {
            let where_ = format!("{} document {}", f.display(), i + 1);
            let kind_name = d.get("kind").and_then(Value::as_str).unwrap_or("");
            let k = KINDS
                .iter()
                .find(|k| k.kind == kind_name)
                .copied()
                .with_context(|| format!("{where_}: unknown kind {kind_name:?}"))?;
            anyhow::ensure!(
                k.appliable,
                "{where_}: {} objects cannot be applied (use `cattery cluster add` or `cattery token create`)",
                k.kind
            );
            let api_version = d.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            anyhow::ensure!(
                api_version == k.api_version,
                "{where_}: {} needs apiVersion {:?}, not {api_version:?}",
                k.kind,
                k.api_version
            );
            let name = d
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            check_segment(&format!("{where_}: metadata.name"), &name)?;
            let ns = d
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            if k.namespaced {
                let ns = ns.as_deref().unwrap_or("");
                check_segment(&format!("{where_}: metadata.namespace"), ns)?;
            }
            objects.push((where_, k, name, ns, d));
        }
    }
    let client = ApiClient::new(args.connect.resolve()?)?;
    for (where_, k, name, ns, d) in objects {
        let path = format!(
            "{}/{name}",
            collection_path(k, ns.as_deref().filter(|_| k.namespaced))
        );
        let res = client
            .call_status(http::Method::PUT, &path, Some(serde_json::to_vec(&d)?))
            .await
            .with_context(|| where_.clone())?;
        let shown = match ns.filter(|_| k.namespaced) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
        let verb = if res == http::StatusCode::CREATED {
            "created"
        } else {
            "configured"
        };
        println!("{}/{shown} {verb}", k.kind.to_ascii_lowercase());
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn summary_row(k: Kind, v: &Value) -> Vec<String> {
    let mut row = Vec::new();
    if k.namespaced {
        row.push(str_at(v, "/metadata/namespace").to_string());
    }
    row.push(str_at(v, "/metadata/name").to_string());
    match k.kind {
        "ClusterRole" | "Role" => {
            let rules = v.get("rules").and_then(Value::as_array).map_or(0, Vec::len);
            row.push(rules.to_string());
            row.push(
                if v.pointer("/metadata/labels/cattery.dev~1builtin").is_some() {
                    "yes".into()
                } else {
                    "no".into()
                },
            );
        }
        "ClusterRoleBinding" | "RoleBinding" => {
            row.push(format!(
                "{}/{}",
                str_at(v, "/roleRef/kind"),
                str_at(v, "/roleRef/name")
            ));
            let subjects: Vec<String> = v
                .get("subjects")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .map(|s| format!("{}:{}", str_at(s, "/kind"), str_at(s, "/name")))
                        .collect()
                })
                .unwrap_or_default();
            row.push(if subjects.is_empty() {
                "-".into()
            } else {
                subjects.join(",")
            });
        }
        "Token" => {
            row.push(str_at(v, "/spec/user").to_string());
            row.push(str_at(v, "/status/revocationTimestamp").to_string());
        }
        _ => {
            let connected = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| str_at(c, "/type") == "ManagedClusterConnected")
                })
                .map(|c| str_at(c, "/status").to_string())
                .unwrap_or_else(|| "Unknown".into());
            row.push(connected);
        }
    }
    row.push(str_at(v, "/metadata/creationTimestamp").to_string());
    row
}

fn header(k: Kind) -> Vec<&'static str> {
    let mut h = Vec::new();
    if k.namespaced {
        h.push("NAMESPACE");
    }
    h.push("NAME");
    match k.kind {
        "ClusterRole" | "Role" => h.extend(["RULES", "BUILT-IN"]),
        "ClusterRoleBinding" | "RoleBinding" => h.extend(["ROLE", "SUBJECTS"]),
        "Token" => h.extend(["USER", "REVOKED"]),
        _ => h.push("CONNECTED"),
    }
    h.push("CREATED");
    h
}

/// Prints one object or a list.
pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let k = kind_named(&args.kind)?;
    if let Some(ns) = &args.namespace {
        check_segment("--namespace", ns)?;
    }
    let client = ApiClient::new(args.connect.resolve()?)?;
    let items: Vec<Value> = match &args.name {
        Some(name) => {
            check_segment("name", name)?;
            anyhow::ensure!(
                !k.namespaced || args.namespace.is_some(),
                "{} are namespaced: give --namespace with a name",
                k.plural
            );
            let v: Value = client
                .get(&format!(
                    "{}/{name}",
                    collection_path(k, args.namespace.as_deref())
                ))
                .await?;
            if args.output != Format::Table {
                return print_object(args.output, &v);
            }
            vec![v]
        }
        None => {
            let list: Value = client
                .get(&collection_path(k, args.namespace.as_deref()))
                .await?;
            if args.output != Format::Table {
                return print_object(args.output, &list);
            }
            list.get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
    };
    let rows: Vec<Vec<String>> = items.iter().map(|v| summary_row(k, v)).collect();
    print_table(&header(k), &rows);
    Ok(())
}

/// Deletes one RBAC object.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let k = kind_named(&args.kind)?;
    anyhow::ensure!(
        k.appliable,
        "use `cattery cluster remove` or `cattery token revoke` for {}",
        k.plural
    );
    check_segment("name", &args.name)?;
    anyhow::ensure!(
        !k.namespaced || args.namespace.is_some(),
        "{} are namespaced: give --namespace",
        k.plural
    );
    if let Some(ns) = &args.namespace {
        check_segment("--namespace", ns)?;
    }
    let client = ApiClient::new(args.connect.resolve()?)?;
    let path = format!(
        "{}/{}",
        collection_path(k, args.namespace.as_deref()),
        args.name
    );
    match client.call(http::Method::DELETE, &path, None).await {
        Ok(_) => {
            println!("{}/{} deleted", k.kind.to_ascii_lowercase(), args.name);
            Ok(())
        }
        Err(e) => match e.downcast_ref::<ApiFailure>() {
            Some(f) if f.0.code == 404 => Err(anyhow::anyhow!("{}", f.0.message)),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_any_name() {
        assert_eq!(kind_named("clusterroles").unwrap().kind, "ClusterRole");
        assert_eq!(kind_named("ClusterRole").unwrap().kind, "ClusterRole");
        assert_eq!(kind_named("rolebinding").unwrap().kind, "RoleBinding");
        assert!(kind_named("pods").is_err());
    }

    #[test]
    fn multi_document_yaml_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: ClusterRole\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- {kind: Role, metadata: {name: b}}\n",
        )
        .unwrap();
        let docs = documents(&p).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "Role");
        assert!(check_segment("n", "a/b").is_err());
        assert!(check_segment("n", "system:viewer").is_ok());
    }
}
