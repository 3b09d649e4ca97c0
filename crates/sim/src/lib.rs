//! `cattery sim-cluster`: a simulated managed cluster.
//!
//! STUB — being written. Public interface is fixed (see below).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Command-line options of `cattery sim-cluster`.
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Name of the simulated cluster (shown in /_sim/info and seeded objects).
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// Serve HTTPS with a self-signed CA written to DIR/ca.crt.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Require `Authorization: Bearer <contents of FILE>` like a kube-apiserver would.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// A bound, not yet running, simulated cluster.
pub struct SimServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Base URL, e.g. `http://127.0.0.1:6443`.
    pub url: String,
    /// PEM of the CA that signed the serving certificate when `--tls-dir` is set.
    pub ca_cert_pem: Option<String>,
    listener: tokio::net::TcpListener,
}

impl SimServer {
    /// Binds the listener (and creates TLS material when asked).
    pub async fn bind(args: &SimArgs) -> anyhow::Result<SimServer> {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(SimServer { local_addr, url: format!("http://{local_addr}"), ca_cert_pem: None, listener })
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let _ = &self.listener;
        shutdown.cancelled().await;
        Ok(())
    }
}
