//! Registering a cluster through the API (as `cattery cluster register` does) and
//! watching its agent connect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use cattery_agent::{AgentSettings, UpstreamSettings};
use cattery_api::{API_VERSION, AgentConfig, ConditionStatus, List, ManagedCluster, ObjectMeta};

use crate::api::ApiClient;

/// Registrations in flight at once (each signs a certificate on the server).
const REGISTER_CONCURRENCY: usize = 8;
/// Agents started per batch, and the pause between batches, so the server's handshake
/// limiter is not the thing being measured.
const AGENT_BATCH: usize = 100;
const AGENT_BATCH_PAUSE: Duration = Duration::from_millis(200);

const BASE: &str = "/apis/cattery.dev/v1/managedclusters";

/// Registers cluster `name` and returns the settings its agent runs with (the agent's
/// upstream being `upstream`).
pub(crate) async fn register(
    api: &ApiClient,
    name: String,
    upstream: UpstreamSettings,
) -> anyhow::Result<AgentSettings> {
    register_labelled(api, name, BTreeMap::new(), upstream).await
}

/// [`register`] with `metadata.labels`.
pub(crate) async fn register_labelled(
    api: &ApiClient,
    name: String,
    labels: BTreeMap<String, String>,
    upstream: UpstreamSettings,
) -> anyhow::Result<AgentSettings> {
    let body = ManagedCluster {
        api_version: API_VERSION.into(),
        kind: "ManagedCluster".into(),
        metadata: ObjectMeta {
            name: name.clone(),
            labels,
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

/// A cluster to register: name, labels, and its agent's upstream.
pub(crate) type NewCluster = (String, BTreeMap<String, String>, UpstreamSettings);

/// Registers `clusters` (a few at a time) and returns their agents' settings, in the order
/// given.
pub(crate) async fn register_all(
    api: &Arc<ApiClient>,
    clusters: Vec<NewCluster>,
) -> anyhow::Result<Vec<AgentSettings>> {
    let mut out = Vec::with_capacity(clusters.len());
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, labels, upstream)) in clusters.into_iter().enumerate() {
        if set.len() >= REGISTER_CONCURRENCY
            && let Some(r) = set.join_next().await
        {
            out.push(r.context("registration task panicked")??);
        }
        let api = api.clone();
        set.spawn(async move {
            register_labelled(&api, name, labels, upstream)
                .await
                .map(|s| (i, s))
        });
    }
    while let Some(r) = set.join_next().await {
        out.push(r.context("registration task panicked")??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

/// Agents running as tasks of this process, stopped together.
pub(crate) struct Agents {
    shutdown: tokio_util::sync::CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    failures: Arc<AtomicUsize>,
}

impl Agents {
    pub fn new() -> Agents {
        Agents {
            shutdown: tokio_util::sync::CancellationToken::new(),
            tasks: tokio::task::JoinSet::new(),
            failures: Arc::default(),
        }
    }

    /// Starts one agent per settings, in batches (see [`AGENT_BATCH`]).
    pub async fn start(&mut self, settings: Vec<AgentSettings>) {
        for (i, s) in settings.into_iter().enumerate() {
            if i > 0 && i % AGENT_BATCH == 0 {
                tokio::time::sleep(AGENT_BATCH_PAUSE).await;
            }
            let (sd, failures) = (self.shutdown.clone(), self.failures.clone());
            self.tasks.spawn(async move {
                let name = s.cluster.clone();
                if let Err(e) = cattery_agent::run(s, sd).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("agent of {name} stopped: {e}");
                }
            });
        }
    }

    /// Agents that stopped with an error so far.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    /// Stops every agent (bounded wait, then abort).
    pub async fn stop(mut self) -> usize {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        self.failures()
    }
}
