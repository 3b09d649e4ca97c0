//! Registering a cluster through the API (as `cattery cluster register` does) and
//! watching its agent connect.

use std::time::Duration;

use anyhow::Context;
use cattery_agent::{AgentSettings, UpstreamSettings};
use cattery_api::{API_VERSION, AgentConfig, ConditionStatus, List, ManagedCluster, ObjectMeta};

use crate::api::ApiClient;

const BASE: &str = "/apis/cattery.dev/v1/managedclusters";

/// Registers cluster `name` and returns the settings its agent runs with (the agent's
/// upstream being `upstream`).
pub(crate) async fn register(
    api: &ApiClient,
    name: String,
    upstream: UpstreamSettings,
) -> anyhow::Result<AgentSettings> {
    let body = ManagedCluster {
        api_version: API_VERSION.into(),
        kind: "ManagedCluster".into(),
        metadata: ObjectMeta {
            name: name.clone(),
            ..Default::default()
        },
        spec: Default::default(),
        status: None,
    };
    let created: ManagedCluster = serde_json::from_slice(
        &api.call(
            http::Method::POST,
            &format!("{BASE}?manifestFormat=agent-config"),
            Some(serde_json::to_vec(&body)?),
        )
        .await
        .with_context(|| format!("registering cluster {name}"))?,
    )?;
    let manifest = created
        .spec
        .installation_manifest
        .with_context(|| format!("cluster {name}: no installation manifest in the answer"))?;
    let cfg: AgentConfig = cattery_api::wire::decode(manifest.as_bytes())
        .with_context(|| format!("cluster {name}: decoding the AgentConfig"))?;
    let c = &cfg.spec.credentials;
    let mut settings = AgentSettings::from_parts(
        &cfg.spec.connection(),
        &c.certificate,
        &c.private_key,
        &c.ca_certificate,
        upstream,
        &name,
    )?;
    settings.reconnect_max_delay = Duration::from_secs(5);
    Ok(settings)
}

/// How many clusters the API reports connected.
pub(crate) async fn connected(api: &ApiClient) -> anyhow::Result<usize> {
    let list: List<ManagedCluster> = api.get(BASE).await?;
    Ok(list
        .items
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.connected())
                .is_some_and(|c| c.status == ConditionStatus::True)
        })
        .count())
}

/// Waits (bounded by `timeout`) until at least `n` clusters are connected.
pub(crate) async fn wait_connected(
    api: &ApiClient,
    n: usize,
    timeout: Duration,
    what: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let c = connected(api).await?;
        if c >= n {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {c} of {n} cluster(s) connected within {timeout:?}{}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
