//! Memory of the management plane with many idle connected clusters.
//!
//! A fresh `cattery server` process; clusters registered through the API; their agents
//! run as tasks of this process and share one simulator upstream; the server's RSS is read
//! from `/proc/PID/status` once every cluster reports `ManagedClusterConnected=True`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cattery_agent::{AgentSettings, UpstreamSettings};
use cattery_api::{API_VERSION, AgentConfig, ConditionStatus, List, ManagedCluster, ObjectMeta};
use tokio_util::sync::CancellationToken;

use super::server_proc::{ProcStatus, ServerProc, open_fds, proc_status};
use crate::client::ApiClient;

const BASE: &str = "/apis/cattery.dev/v1/managedclusters";
/// Registrations in flight at once (each signs a certificate on the server).
const REGISTER_CONCURRENCY: usize = 8;
/// Agents started per batch, and the pause between batches, so the server's handshake
/// limiter is not the thing being measured.
const AGENT_BATCH: usize = 100;
const AGENT_BATCH_PAUSE: Duration = Duration::from_millis(200);
/// RSS samples taken per measurement (the median is reported).
const RSS_SAMPLES: usize = 3;

/// One measurement point.
#[derive(Clone, Copy, Debug)]
pub struct IdlePoint {
    /// Connected clusters.
    pub clusters: usize,
    /// Server process status (RSS, threads).
    pub server: ProcStatus,
    /// Server open file descriptors.
    pub server_fds: usize,
    /// This process (agents, simulator, load generator): RSS.
    pub bench: ProcStatus,
    /// Time from starting the new agents until all were reported connected.
    pub connect_time: Duration,
}

/// Result of the idle-cluster measurement.
#[derive(Clone, Debug)]
pub struct IdleResult {
    /// 0 clusters, then each requested count.
    pub points: Vec<IdlePoint>,
    /// Agents that stopped with an error.
    pub agent_failures: usize,
    /// WARN/ERROR lines in the server's log.
    pub server_problems: Vec<String>,
}

/// Median RSS of a few samples, half a second apart.
async fn sample(pid: u32) -> anyhow::Result<ProcStatus> {
    let mut v = vec![];
    for i in 0..RSS_SAMPLES {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        v.push(proc_status(Some(pid))?);
    }
    v.sort_by_key(|s| s.rss_kib);
    Ok(v[v.len() / 2])
}

pub(super) async fn register(
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

/// Registers clusters `names` (a few at a time) and returns their agents' settings.
async fn register_all(
    api: &std::sync::Arc<ApiClient>,
    names: Vec<String>,
    upstream: &UpstreamSettings,
) -> anyhow::Result<Vec<AgentSettings>> {
    let mut out = Vec::with_capacity(names.len());
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        if set.len() >= REGISTER_CONCURRENCY
            && let Some(r) = set.join_next().await
        {
            out.push(r.context("registration task panicked")??);
        }
        let (api, upstream) = (api.clone(), upstream.clone());
        set.spawn(async move { register(&api, name, upstream).await });
    }
    while let Some(r) = set.join_next().await {
        out.push(r.context("registration task panicked")??);
    }
    Ok(out)
}

/// How many clusters the API reports connected.
pub(super) async fn connected(api: &ApiClient) -> anyhow::Result<usize> {
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

/// Measures server RSS at 0 clusters and at each of `counts` idle connected clusters.
pub async fn run(
    dir: &Path,
    counts: &[usize],
    sim: &super::Upstream,
    settle: Duration,
) -> anyhow::Result<IdleResult> {
    let mut counts: Vec<usize> = counts.iter().copied().filter(|&n| n > 0).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut server = ServerProc::start(dir, "idle-server").await?;
    let pid = server.pid();
    let api = std::sync::Arc::new(server.api_client()?);
    // Exercise the API once so its connection and code paths are in the baseline.
    connected(&api).await?;
    tokio::time::sleep(settle).await;
    let mut points = vec![IdlePoint {
        clusters: 0,
        server: sample(pid).await?,
        server_fds: open_fds(Some(pid)),
        bench: proc_status(None)?,
        connect_time: Duration::ZERO,
    }];
    let upstream = sim.agent_settings(&server.ca_file);
    let shutdown = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut have = 0usize;
    let result: anyhow::Result<()> = async {
        for &n in &counts {
            eprintln!("  idle clusters: registering {} more …", n - have);
            let names = (have..n).map(|i| format!("idle-{i:05}")).collect();
            let settings = register_all(&api, names, &upstream).await?;
            eprintln!("  idle clusters: starting {} agents …", settings.len());
            let started = Instant::now();
            for (i, s) in settings.into_iter().enumerate() {
                if i > 0 && i % AGENT_BATCH == 0 {
                    tokio::time::sleep(AGENT_BATCH_PAUSE).await;
                }
                let (sd, failures) = (shutdown.clone(), failures.clone());
                agents.spawn(async move {
                    let name = s.cluster.clone();
                    if let Err(e) = cattery_agent::run(s, sd).await {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::error!("agent of {name} stopped: {e}");
                    }
                });
            }
            let limit = Duration::from_secs(60) + Duration::from_millis(60 * n as u64);
            let deadline = started + limit;
            loop {
                let c = connected(&api).await?;
                if c >= n {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "only {c} of {n} clusters connected within {limit:?}; server log tail:\n{}",
                        server.log_tail(15)
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let connect_time = started.elapsed();
            have = n;
            tokio::time::sleep(settle).await;
            points.push(IdlePoint {
                clusters: n,
                server: sample(pid).await?,
                server_fds: open_fds(Some(pid)),
                bench: proc_status(None)?,
                connect_time,
            });
        }
        Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while agents.join_next().await.is_some() {}
    })
    .await;
    agents.abort_all();
    let server_problems = server.problems();
    server.stop();
    result?;
    Ok(IdleResult {
        points,
        agent_failures: failures.load(std::sync::atomic::Ordering::Relaxed),
        server_problems,
    })
}
