//! `cattery kubeconfig [--hub] [NAME...]`: a kubeconfig with a context per cluster (the
//! management plane's proxy URL) and, with `--hub`, a `cattery-hub` context for the
//! management plane's own API (`kubectl get managedclusters`).

use base64::Engine;
use cattery_api::ManagedCluster;
use serde_json::json;

use crate::client::{ApiClient, ConnectArgs, Target};

/// Flags of `cattery kubeconfig`.
#[derive(clap::Args, Debug)]
pub struct KubeconfigArgs {
    /// Cluster name(s); the first becomes the current context (unless `--hub`).
    #[arg(required_unless_present = "hub")]
    pub names: Vec<String>,
    /// Add a `cattery-hub` context for the management plane's own API, and make it current.
    #[arg(long)]
    pub hub: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Builds a kubeconfig with one context per cluster.
pub fn render(target: &Target, names: &[String], hub: bool) -> anyhow::Result<String> {
    let ca = target
        .ca_pem
        .as_ref()
        .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
    // (context and cluster name, server URL)
    let mut entries: Vec<(String, String)> = Vec::new();
    if hub {
        entries.push(("cattery-hub".into(), target.server.clone()));
    }
    entries.extend(names.iter().map(|n| {
        (
            format!("cattery-{n}"),
            format!("{}/clusters/{n}/k8s", target.server),
        )
    }));
    let clusters: Vec<_> = entries
        .iter()
        .map(|(name, server)| {
            let mut cluster = json!({"server": server});
            if let Some(ca) = &ca {
                cluster["certificate-authority-data"] = json!(ca);
            }
            json!({"name": name, "cluster": cluster})
        })
        .collect();
    let contexts: Vec<_> = entries
        .iter()
        .map(|(name, _)| json!({"name": name, "context": {"cluster": name, "user": "cattery"}}))
        .collect();
    let cfg = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "cattery", "user": {"token": target.token}}],
        "contexts": contexts,
        "current-context": entries[0].0,
        "preferences": {},
    });
    Ok(serde_saphyr::to_string(&cfg)?)
}

/// Checks that every cluster exists, then prints the kubeconfig.
pub async fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(args.connect.resolve()?)?;
    for n in &args.names {
        let _: ManagedCluster = client
            .get(&format!(
                "/apis/cattery.dev/v1/managedclusters/{}",
                super::cluster::encode(n)
            ))
            .await?;
    }
    print!("{}", render(client.target(), &args.names, args.hub)?);
    Ok(())
}
