//! `cattery kubeconfig NAME`: a kubeconfig whose server is the management plane's proxy URL.

use base64::Engine;
use cattery_api::ManagedCluster;
use serde_json::json;

use crate::client::{ApiClient, ConnectArgs, Target};

/// Flags of `cattery kubeconfig`.
#[derive(clap::Args, Debug)]
pub struct KubeconfigArgs {
    /// Cluster name(s); the first becomes the current context.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Builds a kubeconfig with one context per cluster.
pub fn render(target: &Target, names: &[String]) -> anyhow::Result<String> {
    let ca = target
        .ca_pem
        .as_ref()
        .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
    let clusters: Vec<_> = names
        .iter()
        .map(|n| {
            let mut cluster = json!({"server": format!("{}/clusters/{n}/k8s", target.server)});
            if let Some(ca) = &ca {
                cluster["certificate-authority-data"] = json!(ca);
            }
            json!({"name": format!("cattery-{n}"), "cluster": cluster})
        })
        .collect();
    let contexts: Vec<_> = names
        .iter()
        .map(|n| json!({"name": format!("cattery-{n}"), "context": {"cluster": format!("cattery-{n}"), "user": "cattery"}}))
        .collect();
    let cfg = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "cattery", "user": {"token": target.token}}],
        "contexts": contexts,
        "current-context": format!("cattery-{}", names[0]),
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
    print!("{}", render(client.target(), &args.names)?);
    Ok(())
}
