//! One module per subcommand.

pub mod agent;
pub mod auth;
pub mod cluster;
pub mod demo;
pub mod kubeconfig;
pub mod login;
pub mod logs;
pub mod policy;
pub mod resources;
pub mod server;
pub mod sim;
pub mod token;

use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM, so every long-running command shuts down cleanly.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

/// Parses durations like `500ms`, `2s`, `5m`, `1h` (humantime's forms); a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| format!("invalid duration {s:?}: too large"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e}; use e.g. 500ms, 30s, 5m, 1h"))
}
