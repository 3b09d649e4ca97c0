//! `cattery demo`: a management plane plus N simulated clusters and their agents, connected
//! through real mTLS tunnels over loopback, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cattery_agent::{AgentSettings, UpstreamSettings};
use cattery_api::logs::LogType;
use cattery_api::{API_VERSION, ManagedCluster, ObjectMeta};

use crate::client::{ApiClient, Target};

/// Flags of `cattery demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated clusters.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub clusters: u16,
    /// Directory for the demo's state; wiped at start if it holds an earlier demo.
    #[arg(long, default_value = "./cattery-demo")]
    pub data_dir: PathBuf,
    /// API address.
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub api_addr: SocketAddr,
    /// Tunnel address.
    #[arg(long, default_value = "127.0.0.1:9449")]
    pub tunnel_addr: SocketAddr,
    /// Log records per second each simulated cluster generates (0 = none).
    #[arg(long, default_value_t = 20.0)]
    pub log_rate: f64,
}

fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

const MARKER: &str = ".cattery-demo";

fn prepare_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_demo = dir.join(MARKER).exists();
        let is_empty = std::fs::read_dir(dir)?.next().is_none();
        anyhow::ensure!(
            is_demo || is_empty,
            "{} exists and was not created by `cattery demo`; choose another --data-dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), b"created by cattery demo\n")?;
    Ok(())
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    prepare_dir(&args.data_dir)?;
    let shutdown = super::shutdown_on_signal();
    let server = cattery_server::start(
        cattery_server::ServerConfig {
            data_dir: args.data_dir.clone(),
            api_addr: args.api_addr,
            tunnel_addr: args.tunnel_addr,
            address: None,
            api_tls: None,
            retention: Default::default(),
            oidc: None,
            ui_session_idle: None,
            access_control: Default::default(),
        },
        shutdown.clone(),
    )
    .await?;
    let token = server
        .admin_token
        .clone()
        .context("a fresh data dir always yields an admin token")?;
    let target = Target {
        server: format!("https://{}", server.api_addr),
        token: token.clone(),
        ca_pem: Some(std::fs::read_to_string(&server.ca_file)?),
    };
    let client = ApiClient::new(target.clone())?;
    let mut names = vec![];
    let mut tasks = vec![];
    for i in 1..=args.clusters {
        let name = format!("sim-{i}");
        // The agent's audit webhook credentials exist before the simulator starts, so the
        // simulator can post its audit events to it as a kube-apiserver would.
        let agent_dir = args.data_dir.join(format!("agent-{name}"));
        let webhook = cattery_agent::audit_webhook::AuditWebhookConfig {
            addr: free_loopback_addr()?,
            dir: agent_dir.join("audit-webhook"),
            hosts: vec![],
        };
        cattery_agent::audit_webhook::prepare(&webhook)?;
        let logs_dir = args.data_dir.join(format!("{name}-logs"));
        let sim = cattery_sim::SimServer::bind_with_logs(
            &cattery_sim::SimArgs {
                listen: "127.0.0.1:0".parse()?,
                name: name.clone(),
                tls_dir: None,
                token_file: None,
                // Distinct pod IPs per cluster (10.129/16, 10.130/16, ...), as federation needs.
                pod_cidr: u8::try_from(128 + i)
                    .ok()
                    .map(|x| format!("10.{x}.0.0/16").parse())
                    .transpose()?,
            },
            &cattery_sim::LogArgs {
                logs_dir: Some(logs_dir.clone()),
                log_rate: args.log_rate,
                audit_webhook: Some(format!("https://{}/audit", webhook.addr).parse()?),
                audit_webhook_ca_file: Some(webhook.dir.join("webhook-ca.crt")),
                audit_webhook_token_file: Some(webhook.dir.join("webhook.token")),
                ..Default::default()
            },
        )
        .await?;
        let body = ManagedCluster {
            api_version: API_VERSION.into(),
            kind: "ManagedCluster".into(),
            metadata: ObjectMeta {
                name: name.clone(),
                labels: [("cattery.dev/simulated".to_string(), "true".to_string())].into(),
                ..Default::default()
            },
            spec: Default::default(),
            status: None,
        };
        let created: ManagedCluster = serde_json::from_slice(
            &client
                .call(
                    http::Method::POST,
                    "/apis/cattery.dev/v1/managedclusters?manifestFormat=agent-config",
                    Some(serde_json::to_vec(&body)?),
                )
                .await?,
        )?;
        let cfg_path = args.data_dir.join(format!("agent-{name}.yaml"));
        super::login::write_private(
            &cfg_path,
            created
                .spec
                .installation_manifest
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let mut settings = AgentSettings::from_config_file(
            &cfg_path,
            UpstreamSettings {
                url: sim.url.clone(),
                token_file: None,
                ca_file: None,
            },
        )?;
        settings.reconnect_max_delay = Duration::from_secs(5);
        settings.logs = cattery_agent::settings::LogSettings {
            spool_dir: Some(agent_dir.join("spool")),
            spool_max_bytes: 256 << 20,
            files: [LogType::Flows, LogType::Dns, LogType::L7]
                .into_iter()
                .map(|t| (t, logs_dir.join(format!("{t}.log"))))
                .collect(),
            audit_webhook: Some(webhook),
            metrics_addr: None,
        };
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = sim.run(sd).await {
                tracing::error!("simulated cluster stopped: {e:#}");
            }
        }));
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = cattery_agent::run(settings, sd).await {
                tracing::error!("agent stopped: {e}");
            }
        }));
        names.push(name);
    }
    let kubeconfig = args.data_dir.join("kubeconfig");
    super::login::write_private(
        &kubeconfig,
        super::kubeconfig::render(&target, &names, false)?.as_bytes(),
    )?;
    let token_file = args.data_dir.join("admin.token");
    let ca_file = server.ca_file.display().to_string();
    let kc = kubeconfig.display().to_string();
    println!(
        "\nCattery demo is running: {n} simulated clusters ({list}) connected through mTLS tunnels.\n\n  Manager UI:  {api}/ (sign in with the admin token)\n  API:         {api}\n  admin token: {token}\n  CA:          {ca_file}\n  kubeconfig:  {kc}\n\nTry, in another terminal:\n  export CATTERY_SERVER={api} CATTERY_TOKEN=$(cat {tf}) CATTERY_CA_FILE={ca_file}\n  cattery cluster list\n  kubectl --kubeconfig {kc} get pods -A\n  kubectl --kubeconfig {kc} --context cattery-{last} get namespaces\n  cattery logs flows --all-clusters --since 10m --where action=deny\n  cattery logs flows --all-clusters --top source_namespace\n  cattery logs audit --all-clusters -f\n\nThe clusters are simulated (`cattery sim-cluster`), not real Kubernetes. Ctrl-C stops everything.",
        n = names.len(),
        list = names.join(", "),
        api = target.server,
        tf = token_file.display(),
        last = names.last().cloned().unwrap_or_default(),
    );
    shutdown.cancelled().await;
    server.wait().await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}
