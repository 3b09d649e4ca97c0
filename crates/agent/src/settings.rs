//! Where the agent's settings come from: an `AgentConfig` file, or (inside Kubernetes) the
//! `ManagementClusterConnection` resource plus the mounted credentials Secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cattery_api::{AgentConfig, CaType, Impersonation, ManagementClusterConnectionSpec};
use cattery_tunnel::tls::ServerRoots;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Default in-cluster service-account paths.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the cluster's Kubernetes API.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Base URL, e.g. `https://10.96.0.1:443` or `http://127.0.0.1:6443`.
    pub url: String,
    /// File holding the bearer token (re-read periodically: projected tokens rotate).
    pub token_file: Option<PathBuf>,
    /// CA bundle for an `https` upstream; the system roots when `None`.
    pub ca_file: Option<PathBuf>,
}

impl UpstreamSettings {
    /// The in-cluster defaults (`KUBERNETES_SERVICE_HOST/PORT`, service-account token and CA).
    pub fn in_cluster() -> anyhow::Result<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").context(
            "KUBERNETES_SERVICE_HOST is not set: not running in a pod; pass --upstream URL",
        )?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(UpstreamSettings {
            url: format!("https://{host}:{port}"),
            token_file: Some(Path::new(SA_DIR).join("token")),
            ca_file: Some(Path::new(SA_DIR).join("ca.crt")),
        })
    }
}

/// The agent's log pipeline: spool, sources, audit webhook, metrics.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// Spool directory; `None` disables the log pipeline.
    pub spool_dir: Option<PathBuf>,
    /// Spool size cap in bytes.
    pub spool_max_bytes: u64,
    /// JSON-lines files to tail.
    pub files: Vec<(cattery_api::logs::LogType, PathBuf)>,
    /// The Kubernetes audit webhook, when enabled.
    pub audit_webhook: Option<crate::audit_webhook::AuditWebhookConfig>,
    /// Plain-HTTP address for `/metrics`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Everything the agent needs to run.
pub struct AgentSettings {
    /// Cluster name (the certificate's CN).
    pub cluster: String,
    /// `host:port` to dial.
    pub management_cluster_addr: String,
    /// Roots that verify the management plane.
    pub server_roots: ServerRoots,
    /// Client certificate chain.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Client key.
    pub key: PrivateKeyDer<'static>,
    /// Who may be impersonated.
    pub impersonation: Impersonation,
    /// The cluster's Kubernetes API.
    pub upstream: UpstreamSettings,
    /// Cap of the reconnect backoff.
    pub reconnect_max_delay: Duration,
    /// Log pipeline.
    pub logs: LogSettings,
}

impl Clone for AgentSettings {
    fn clone(&self) -> Self {
        AgentSettings {
            cluster: self.cluster.clone(),
            management_cluster_addr: self.management_cluster_addr.clone(),
            server_roots: self.server_roots.clone(),
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            impersonation: self.impersonation.clone(),
            upstream: self.upstream.clone(),
            reconnect_max_delay: self.reconnect_max_delay,
            logs: self.logs.clone(),
        }
    }
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("cluster", &self.cluster)
            .field("management_cluster_addr", &self.management_cluster_addr)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

fn roots(ca: CaType, ca_pem: &str, what: &str) -> anyhow::Result<ServerRoots> {
    Ok(match ca {
        CaType::Tigera => ServerRoots::Ca(cattery_tunnel::pem::certs(what, ca_pem)?),
        CaType::Public => ServerRoots::System,
    })
}

impl AgentSettings {
    /// Builds settings from a connection spec and PEM credentials.
    pub fn from_parts(
        connection: &ManagementClusterConnectionSpec,
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
        upstream: UpstreamSettings,
        source: &str,
    ) -> anyhow::Result<Self> {
        let cert_chain = cattery_tunnel::pem::certs(&format!("{source}: certificate"), cert_pem)?;
        let key = cattery_tunnel::pem::private_key(&format!("{source}: private key"), key_pem)?;
        let cluster = common_name(&cert_chain[0])
            .with_context(|| format!("{source}: the certificate has no common name"))?;
        cattery_tunnel::dial::split_host_port(&connection.management_cluster_addr)
            .with_context(|| format!("{source}: spec.managementClusterAddr"))?;
        Ok(AgentSettings {
            cluster,
            management_cluster_addr: connection.management_cluster_addr.clone(),
            server_roots: roots(
                connection.tls.ca,
                ca_pem,
                &format!("{source}: CA certificate"),
            )?,
            cert_chain,
            key,
            impersonation: connection.impersonation.clone(),
            upstream,
            reconnect_max_delay: Duration::from_secs(60),
            logs: LogSettings::default(),
        })
    }

    /// Reads an `AgentConfig` file (`cattery cluster add --format agent-config`).
    pub fn from_config_file(path: &Path, upstream: UpstreamSettings) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: AgentConfig =
            cattery_api::wire::decode(&text).with_context(|| format!("{}", path.display()))?;
        cattery_api::wire::check_type(
            &cfg.api_version,
            &cfg.kind,
            &[cattery_api::API_VERSION],
            "AgentConfig",
        )
        .with_context(|| format!("{}", path.display()))?;
        let c = &cfg.spec.credentials;
        let s = Self::from_parts(
            &cfg.spec.connection(),
            &c.certificate,
            &c.private_key,
            &c.ca_certificate,
            upstream,
            &path.display().to_string(),
        )?;
        if !cfg.metadata.name.is_empty() && cfg.metadata.name != s.cluster {
            anyhow::bail!(
                "{}: metadata.name {:?} does not match the certificate's cluster {:?}",
                path.display(),
                cfg.metadata.name,
                s.cluster
            );
        }
        Ok(s)
    }

    /// Reads `tls.crt`, `tls.key` and `ca.crt` from a mounted Secret directory and the
    /// connection spec fetched from the cluster.
    pub fn from_credentials_dir(
        dir: &Path,
        connection: &ManagementClusterConnectionSpec,
        upstream: UpstreamSettings,
    ) -> anyhow::Result<Self> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .with_context(|| format!("reading {}", dir.join(f).display()))
        };
        Self::from_parts(
            connection,
            &read("tls.crt")?,
            &read("tls.key")?,
            &read("ca.crt")?,
            upstream,
            &dir.display().to_string(),
        )
    }

    /// When the client certificate expires.
    pub fn cert_not_after(&self) -> Option<time::OffsetDateTime> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.cert_chain[0]).ok()?;
        Some(cert.validity().not_after.to_datetime())
    }
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}
