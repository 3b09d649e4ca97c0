//! The few requests the management plane sends to an agent itself (not to its cluster)
//! over the tunnel: its versions, a liveness ping, and the reason a tunnel is refused.
//!
//! Kept apart so both the tunnel listener (which asks for versions and refuses) and the
//! registry (which pings a live tunnel before letting a second agent replace it) use it
//! without depending on each other.

use std::time::Duration;

use axum::body::Body;
use cattery_api::agent_protocol::{AGENT_AUTHORITY, AgentInfo, PATH_INFO, PATH_PING, PATH_REFUSED};
use cattery_tunnel::session::Sender;
use http_body_util::BodyExt;

/// How long a ping may take before the agent is considered gone.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

fn control_request(method: http::Method, path: &str, body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{AGENT_AUTHORITY}{path}"))
        .body(body)
        .expect("static request parts are valid")
}

/// Asks the agent for its and its cluster's versions.
pub async fn agent_info(mut sender: Sender<Body>) -> anyhow::Result<AgentInfo> {
    sender.ready().await?;
    let res = sender
        .send_request(control_request(http::Method::GET, PATH_INFO, Body::empty()))
        .await?;
    anyhow::ensure!(res.status().is_success(), "agent answered {}", res.status());
    let bytes = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// True if the agent behind `sender` answers a ping within [`PING_TIMEOUT`].
pub async fn ping(mut sender: Sender<Body>) -> bool {
    let fut = async {
        sender.ready().await.ok()?;
        let res = sender
            .send_request(control_request(http::Method::GET, PATH_PING, Body::empty()))
            .await
            .ok()?;
        res.status().is_success().then_some(())
    };
    matches!(tokio::time::timeout(PING_TIMEOUT, fut).await, Ok(Some(())))
}

/// Tells the agent why its tunnel is refused (it logs the reason), before closing it.
pub async fn refuse(mut sender: Sender<Body>, reason: String) {
    if sender.ready().await.is_ok() {
        let _ = sender
            .send_request(control_request(
                http::Method::POST,
                PATH_REFUSED,
                Body::from(reason),
            ))
            .await;
    }
}
