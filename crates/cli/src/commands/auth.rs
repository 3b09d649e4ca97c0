//! `cattery auth can-i VERB RESOURCE [NAME]` and `cattery auth whoami`: ask the management
//! plane what it decides, through Kubernetes' SelfSubjectAccessReview and
//! SelfSubjectReview APIs.

use serde_json::{Value, json};

use crate::client::{ApiClient, ConnectArgs};
use crate::output::{Format, print_object};

/// Auth subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AuthCommand {
    /// Whether you may do something; prints yes or no (exit status 0 or 1) and why.
    CanI {
        /// Verb: get, list, create, update, delete, … (`*` for all).
        verb: String,
        /// RESOURCE[/SUBRESOURCE][.GROUP], e.g. managedclusters, managedclusters/proxy,
        /// flows (a log type), clusterroles, or a path starting with / (e.g. /metrics).
        resource: String,
        /// Object name: a cluster for managedclusters and log types.
        name: Option<String>,
        /// Namespace for roles and rolebindings.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Print only yes/no.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Who the management plane thinks you are.
    Whoami {
        /// Output format.
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// The API group of a resource named without one.
fn default_group(resource: &str) -> &'static str {
    match resource {
        "managedclusters" | "managementclusters" | "tokens" => "cattery.dev",
        "flows" | "dns" | "l7" | "audit" => "logs.cattery.dev",
        "clusterroles" | "clusterrolebindings" | "roles" | "rolebindings" => {
            "rbac.authorization.k8s.io"
        }
        _ => "",
    }
}

/// Splits `resource/sub.group` into (group, resource, subresource).
fn parse_resource(s: &str) -> (String, String, Option<String>) {
    let (main, sub) = match s.split_once('/') {
        Some((m, rest)) => match rest.split_once('.') {
            Some((sub, group)) => (format!("{m}.{group}"), Some(sub.to_string())),
            None => (m.to_string(), Some(rest.to_string())),
        },
        None => (s.to_string(), None),
    };
    let (resource, group) = match main.split_once('.') {
        Some((r, g)) => (r.to_string(), g.to_string()),
        None => (main.clone(), default_group(&main).to_string()),
    };
    (group, resource, sub)
}

/// Builds the review body.
fn review(verb: &str, resource: &str, name: Option<&str>, namespace: Option<&str>) -> Value {
    if resource.starts_with('/') {
        return json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"nonResourceAttributes": {"path": resource, "verb": verb}},
        });
    }
    let (group, res, sub) = parse_resource(resource);
    let mut attrs = json!({"verb": verb, "group": group, "resource": res});
    if let Some(s) = sub {
        attrs["subresource"] = json!(s);
    }
    if let Some(n) = name {
        attrs["name"] = json!(n);
    }
    if let Some(ns) = namespace {
        attrs["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    })
}

/// Runs an auth subcommand. `can-i` answering "no" is an error exit without a message.
pub async fn run(cmd: AuthCommand) -> anyhow::Result<bool> {
    match cmd {
        AuthCommand::CanI {
            verb,
            resource,
            name,
            namespace,
            quiet,
            connect,
        } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let body = review(&verb, &resource, name.as_deref(), namespace.as_deref());
            let bytes = client
                .call(
                    http::Method::POST,
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            let v: Value = serde_json::from_slice(&bytes)?;
            let allowed = v
                .pointer("/status/allowed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            println!("{}", if allowed { "yes" } else { "no" });
            if !quiet && let Some(reason) = v.pointer("/status/reason").and_then(Value::as_str) {
                eprintln!("{reason}");
            }
            Ok(allowed)
        }
        AuthCommand::Whoami { output, connect } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let body =
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
            let bytes = client
                .call(
                    http::Method::POST,
                    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            let v: Value = serde_json::from_slice(&bytes)?;
            if output != Format::Table {
                print_object(output, &v)?;
                return Ok(true);
            }
            let info = v.pointer("/status/userInfo").cloned().unwrap_or_default();
            println!(
                "Username: {}",
                info.get("username").and_then(Value::as_str).unwrap_or("")
            );
            let groups: Vec<&str> = info
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("Groups:   {}", groups.join(", "));
            if let Some(by) = info
                .pointer("/extra/cattery.dev~1authenticated-by/0")
                .and_then(Value::as_str)
            {
                println!("Via:      {by}");
            }
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_with_default_groups() {
        assert_eq!(
            parse_resource("managedclusters/proxy"),
            (
                "cattery.dev".into(),
                "managedclusters".into(),
                Some("proxy".into())
            )
        );
        assert_eq!(
            parse_resource("flows"),
            ("logs.cattery.dev".into(), "flows".into(), None)
        );
        assert_eq!(
            parse_resource("east.lma.tigera.io"),
            ("lma.tigera.io".into(), "east".into(), None)
        );
        assert_eq!(
            parse_resource("pods/exec.example.com"),
            ("example.com".into(), "pods".into(), Some("exec".into()))
        );
    }
}
