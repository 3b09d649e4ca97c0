//! `cattery cluster add|list|get|remove`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cattery_api::{API_VERSION, List, ManagedCluster, ObjectMeta};

use crate::client::{ApiClient, ConnectArgs};
use crate::output::{Format, print_object, print_table, render_object};

const BASE: &str = "/apis/cattery.dev/v1/managedclusters";

/// Cluster subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Register a cluster and print its installation manifest (shown once).
    ///
    /// The manifest holds the cluster's private key: printed to stdout it ends up wherever
    /// stdout goes (terminal scrollback, CI logs). Use --output-file to write it to a file
    /// only you can read instead.
    Add {
        /// Cluster name (DNS-1123 label).
        name: String,
        /// Labels, e.g. env=prod,region=eu.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Manifest shape.
        #[arg(long, default_value = "kubernetes", value_parser = ["kubernetes", "agent-config"])]
        format: String,
        /// Print the whole ManagedCluster (manifest in spec.installationManifest) instead.
        #[arg(short, long)]
        output: Option<Format>,
        /// Write the manifest (it holds a private key) to FILE, atomically with mode 0600,
        /// instead of stdout. An existing FILE is not overwritten unless --force is given.
        #[arg(long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        /// With --output-file: replace FILE if it exists.
        #[arg(long, requires = "output_file")]
        force: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List clusters and their connection status.
    List {
        /// Output format.
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one cluster.
    Get {
        /// Cluster name.
        name: String,
        /// Output format.
        #[arg(short, long, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a cluster: takes the objects FederatedPolicies placed there off it (or warns,
    /// naming them, when the cluster cannot be reached), closes its tunnel and revokes its
    /// certificate. Its logs stay searchable under its name.
    Remove {
        /// Cluster name.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("label {l:?} must be KEY=VALUE"))?;
            cattery_api::validate_qualified_name(k)
                .map_err(|e| anyhow::anyhow!("--labels {l:?}: key {k:?} {e}"))?;
            cattery_api::validate_label_value(v)
                .map_err(|e| anyhow::anyhow!("--labels {l:?}: value {v:?} {e}"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn age(ts: &str) -> String {
    let Ok(t) = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
    else {
        return "-".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn row(c: &ManagedCluster) -> Vec<String> {
    let status = c.status.clone().unwrap_or_default();
    let cond = status.connected();
    vec![
        c.metadata.name.clone(),
        cond.map(|c| c.status.to_string())
            .unwrap_or_else(|| "Unknown".into()),
        cond.map(|c| c.reason.clone()).unwrap_or_default(),
        cond.map(|c| age(&c.last_transition_time))
            .unwrap_or_else(|| "-".into()),
        status.remote_address.unwrap_or_else(|| "-".into()),
        status.agent_version.unwrap_or_else(|| "-".into()),
        status.kubernetes_version.unwrap_or_else(|| "-".into()),
        if c.metadata.labels.is_empty() {
            "-".into()
        } else {
            c.metadata
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    ]
}

const HEADER: &[&str] = &[
    "NAME",
    "CONNECTED",
    "REASON",
    "SINCE",
    "REMOTE",
    "AGENT",
    "KUBERNETES",
    "LABELS",
];

/// Runs a cluster subcommand.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Add {
            name,
            labels,
            format,
            output,
            output_file,
            force,
            connect,
        } => {
            // Checked before the cluster is registered: its manifest is shown only once.
            if let Some(path) = &output_file
                && !force
                && path.symlink_metadata().is_ok()
            {
                anyhow::bail!(
                    "{} already exists; choose another --output-file or add --force to replace it",
                    path.display()
                );
            }
            let client = ApiClient::new(connect.resolve()?)?;
            let body = ManagedCluster {
                api_version: API_VERSION.into(),
                kind: "ManagedCluster".into(),
                metadata: ObjectMeta {
                    name: name.clone(),
                    labels: parse_labels(&labels)?,
                    ..Default::default()
                },
                spec: Default::default(),
                status: None,
            };
            let bytes = client
                .call(
                    http::Method::POST,
                    &format!("{BASE}?manifestFormat={format}"),
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            let created: ManagedCluster = serde_json::from_slice(&bytes)?;
            let text = match output {
                Some(f @ (Format::Json | Format::Yaml)) => render_object(f, &created)?,
                _ => created
                    .spec
                    .installation_manifest
                    .context("the server returned no installation manifest")?,
            };
            match &output_file {
                Some(path) => {
                    save_manifest(path, &text, force)?;
                    eprintln!(
                        "cluster {name:?} added; its manifest (shown only once, holding the cluster's private key) is in {} (mode 0600)",
                        path.display()
                    );
                }
                None => {
                    print!("{text}");
                    eprintln!(
                        "cluster {name:?} added; the manifest above is shown only once and holds the cluster's private key"
                    );
                }
            }
        }
        ClusterCommand::List { output, connect } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let list: List<ManagedCluster> = client.get(BASE).await?;
            match output {
                Format::Table => {
                    print_table(HEADER, &list.items.iter().map(row).collect::<Vec<_>>())
                }
                f => print_object(f, &list)?,
            }
        }
        ClusterCommand::Get {
            name,
            output,
            connect,
        } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let c: ManagedCluster = client.get(&format!("{BASE}/{}", encode(&name))).await?;
            match output {
                Format::Table => {
                    print_table(HEADER, &[row(&c)]);
                    if let Some(cond) = c.status.as_ref().and_then(|s| s.connected()) {
                        println!("\n{}: {}", cond.reason, cond.message);
                    }
                }
                f => print_object(f, &c)?,
            }
        }
        ClusterCommand::Remove { name, connect } => {
            let client = ApiClient::new(connect.resolve()?)?;
            let bytes = client
                .call(
                    http::Method::DELETE,
                    &format!("{BASE}/{}", encode(&name)),
                    None,
                )
                .await?;
            eprintln!("cluster {name:?} removed; its tunnel is closed and its certificate revoked");
            // What became of the objects FederatedPolicies had placed there; the cluster
            // is removed either way, so a leftover is a warning, not a failure.
            let last: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let removed = last["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "FederatedObjectsRemoved");
            if let Some(c) = removed {
                let message = c["message"].as_str().unwrap_or("");
                if c["status"] == "True" {
                    eprintln!("{message}");
                } else {
                    eprintln!("warning: {message}");
                }
            }
        }
    }
    Ok(())
}

/// Writes a manifest atomically with mode 0600; without `force`, never over an existing file.
fn save_manifest(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let written = if force {
        cattery_files::write_private(path, text.as_bytes())
    } else {
        cattery_files::write_private_new(path, text.as_bytes())
    };
    written.with_context(|| {
        format!(
            "writing the manifest to {} (the cluster is registered: remove it and add it again to get a new manifest)",
            path.display()
        )
    })
}

/// Percent-encodes a path segment so any user input reaches the server as one segment
/// (the server then rejects invalid names with a clear error).
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_by_kubernetes_rules() {
        let ok = parse_labels(&["env=prod".into(), "app.kubernetes.io/part-of=".into()]).unwrap();
        assert_eq!(ok["env"], "prod");
        assert_eq!(ok["app.kubernetes.io/part-of"], "");
        for (bad, needle) in [
            ("env", "KEY=VALUE"),
            ("=x", "key \"\""),
            ("bad key=x", "key \"bad key\""),
            ("env=-prod", "value \"-prod\""),
            ("Example.com/x=y", "prefix"),
        ] {
            let e = parse_labels(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
