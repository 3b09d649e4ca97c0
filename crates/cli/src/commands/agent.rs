//! `cattery agent`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cattery_agent::{AgentSettings, UpstreamSettings};
use cattery_api::ManagementClusterConnectionSpec;

/// Flags of `cattery agent`.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// AgentConfig file from `cattery cluster add --format agent-config`.
    #[arg(long, conflicts_with_all = ["connection", "credentials_dir"])]
    pub config: Option<PathBuf>,
    /// In a cluster: name of the ManagementClusterConnection resource to read.
    #[arg(long, requires = "credentials_dir")]
    pub connection: Option<String>,
    /// In a cluster: directory with tls.crt, tls.key and ca.crt (the mounted Secret).
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
    /// Kubernetes API URL (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Bearer token file for --upstream.
    #[arg(long)]
    pub upstream_token_file: Option<PathBuf>,
    /// CA bundle for an https --upstream (default: system roots).
    #[arg(long)]
    pub upstream_ca_file: Option<PathBuf>,
    /// Cap of the exponential reconnect step (e.g. 60s, 5m); jitter adds up to as much again.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub reconnect_max_delay: Duration,
    /// Directory of the disk spool; enables log shipping.
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Spool size cap in bytes (sources wait when it is full).
    #[arg(long, default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
    /// A JSON-lines log file to tail: TYPE=PATH, e.g. flows=/var/log/calico/flowlogs/flows.log (repeatable).
    #[arg(long = "log-file", value_name = "TYPE=PATH", value_parser = parse_log_file)]
    pub log_files: Vec<(cattery_api::logs::LogType, PathBuf)>,
    /// Serve the Kubernetes audit webhook (HTTPS) on this address.
    #[arg(long)]
    pub audit_webhook_addr: Option<std::net::SocketAddr>,
    /// Where the audit webhook keeps its certificate, token and kubeconfig (default: the spool dir).
    #[arg(long)]
    pub audit_webhook_dir: Option<PathBuf>,
    /// Extra names/IPs for the audit webhook's certificate (how kube-apiserver reaches it).
    #[arg(long = "audit-webhook-host")]
    pub audit_webhook_hosts: Vec<String>,
    /// Serve Prometheus metrics over plain HTTP on this address.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn parse_log_file(s: &str) -> Result<(cattery_api::logs::LogType, PathBuf), String> {
    let (t, p) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: use TYPE=PATH, e.g. flows=/var/log/calico/flowlogs/flows.log")
    })?;
    let t: cattery_api::logs::LogType = t.parse()?;
    if t == cattery_api::logs::LogType::Audit {
        return Err("audit events come through --audit-webhook-addr, not a file".into());
    }
    Ok((t, PathBuf::from(p)))
}

fn upstream(args: &AgentArgs) -> anyhow::Result<UpstreamSettings> {
    Ok(match &args.upstream {
        Some(url) => UpstreamSettings {
            url: url.clone(),
            token_file: args.upstream_token_file.clone(),
            ca_file: args.upstream_ca_file.clone(),
        },
        None => UpstreamSettings::in_cluster()?,
    })
}

/// Loads settings from either source.
pub async fn settings(args: &AgentArgs) -> anyhow::Result<AgentSettings> {
    let upstream = upstream(args)?;
    let mut s = match (&args.config, &args.connection, &args.credentials_dir) {
        (Some(file), _, _) => AgentSettings::from_config_file(file, upstream)?,
        (None, Some(name), Some(dir)) => {
            let client = cattery_agent::upstream::Upstream::new(&upstream)?;
            let path = format!("/apis/cattery.dev/v1/managementclusterconnections/{name}");
            let obj = client.get_json(&path).await.with_context(|| {
                format!(
                    "reading ManagementClusterConnection {name:?} from {}",
                    upstream.url
                )
            })?;
            let spec: ManagementClusterConnectionSpec = serde_json::from_value(obj["spec"].clone())
                .with_context(|| format!("ManagementClusterConnection {name:?} spec"))?;
            AgentSettings::from_credentials_dir(dir, &spec, upstream)?
        }
        _ => anyhow::bail!("give --config FILE, or --connection NAME with --credentials-dir DIR"),
    };
    s.reconnect_max_delay = args.reconnect_max_delay;
    s.logs = cattery_agent::settings::LogSettings {
        spool_dir: args.spool_dir.clone(),
        spool_max_bytes: args.spool_max_bytes,
        files: args.log_files.clone(),
        audit_webhook: args.audit_webhook_addr.map(|addr| {
            cattery_agent::audit_webhook::AuditWebhookConfig {
                addr,
                dir: args
                    .audit_webhook_dir
                    .clone()
                    .or_else(|| args.spool_dir.clone())
                    .unwrap_or_else(|| PathBuf::from(".")),
                hosts: args.audit_webhook_hosts.clone(),
            }
        }),
        metrics_addr: args.metrics_addr,
    };
    Ok(s)
}

/// Runs the agent until Ctrl-C or a permanent error.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let settings = settings(&args).await?;
    let shutdown = super::shutdown_on_signal();
    // The agent is I/O-bound: one thread, no cross-thread wake-ups per proxied request.
    cattery_agent::run::run_on_dedicated_thread(settings, shutdown).await?;
    Ok(())
}
