//! The simulator the `tunnel` and `idle` benches talk to: HTTPS like a kube-apiserver
//! (the default) or plain HTTP/1.1, running in this process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cattery_agent::UpstreamSettings;
use tokio_util::sync::CancellationToken;

use crate::load;

/// How the bench's simulator serves its API.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamScheme {
    /// HTTPS with a self-signed CA, HTTP/2 or HTTP/1.1 by ALPN.
    Https,
    /// Plain HTTP/1.1.
    Http,
}

/// A running simulator, directly reachable and the agents' upstream.
pub(crate) struct Upstream {
    /// Its base URL.
    pub url: String,
    /// Its CA (certificate file and PEM) when it serves HTTPS.
    pub ca: Option<(PathBuf, String)>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Upstream {
    /// Starts a simulator named `bench` on a free loopback port; its TLS files (for
    /// `https`) go to `dir/sim-tls`.
    pub async fn start(dir: &Path, scheme: UpstreamScheme) -> anyhow::Result<Upstream> {
        let tls_dir = (scheme == UpstreamScheme::Https).then(|| dir.join("sim-tls"));
        let sim = cattery_sim::SimServer::bind(&cattery_sim::SimArgs {
            listen: "127.0.0.1:0".parse()?,
            name: "bench".into(),
            tls_dir: tls_dir.clone(),
            token_file: None,
            pod_cidr: None,
        })
        .await
        .context("starting the simulator")?;
        let ca = match &tls_dir {
            Some(d) => {
                let file = d.join("ca.crt");
                let pem = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the simulator's CA {}", file.display()))?;
                Some((file, pem))
            }
            None => None,
        };
        let url = sim.url.clone();
        let stop = CancellationToken::new();
        let sd = stop.clone();
        let task = tokio::spawn(async move { sim.run(sd).await });
        Ok(Upstream {
            url,
            ca,
            stop,
            task,
        })
    }

    /// Stops the simulator (bounded wait).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }

    /// Describes the direct path in the report.
    pub fn direct_label(&self) -> &'static str {
        if self.ca.is_some() {
            "direct (h2+TLS → simulator)"
        } else {
            "direct (HTTP/1.1 → simulator)"
        }
    }

    /// Describes the tunnel path in the report.
    pub fn tunnel_label(&self) -> &'static str {
        if self.ca.is_some() {
            "tunnel (h2+TLS → server → tunnel → agent → TLS → simulator)"
        } else {
            "tunnel (h2+TLS → server → tunnel → agent → HTTP/1.1 → simulator)"
        }
    }

    /// The upstream an agent is configured with.
    pub fn agent_settings(&self, server_ca: &Path) -> UpstreamSettings {
        UpstreamSettings {
            url: self.url.clone(),
            token_file: None,
            // With a plain-HTTP simulator a CA file only spares each agent loading the
            // system trust store.
            ca_file: Some(
                self.ca
                    .as_ref()
                    .map_or_else(|| server_ca.to_path_buf(), |(f, _)| f.clone()),
            ),
        }
    }

    /// A client for the direct path: kubectl's (h2 over TLS) against HTTPS, HTTP/1.1
    /// keep-alive against plain HTTP.
    pub fn direct_client(&self) -> anyhow::Result<load::HttpsClient> {
        match &self.ca {
            Some((_, pem)) => load::http2_client(pem),
            None => load::http1_client(),
        }
    }
}
