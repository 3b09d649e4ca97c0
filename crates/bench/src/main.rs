//! `cattery-bench`: Cattery's performance measurements, written up in docs/benchmarks.md.
//!
//! They live in their own crate so that the `cattery` binary carries no benchmark code and
//! the production server has none of the access-control modes the RBAC bench compares
//! against (those are compiled in only here, through `cattery-server`'s `bench-modes`
//! feature). Run as `cargo run --release -p cattery-bench -- COMMAND`.
//!
//! - `tunnel`: small GETs and one large stream, directly to an HTTPS simulator, through a
//!   chain of two haproxy instances (when `haproxy` is installed) and through the
//!   management plane → tunnel → agent, all with three TLS legs;
//! - `idle`: the management plane's memory with idle connected clusters;
//! - `rbac`: the proxy's request rate with RBAC and the audit trail on and off;
//! - `logstore`: ingest, search and disk use of the log store, fed the flow records the
//!   simulator's traffic model writes;
//! - `ui`: the Manager UI's render time (overview, clusters page, service graph) with
//!   10,000 clusters and 10 M flows, through a signed-in browser session;
//! - `federation`: time from creating a FederatedPolicy to `Applied` on every selected
//!   cluster, and for a label change to add a cluster, with up to 1,000 simulated
//!   clusters and real agents;
//! - `preview`: time of a FederatedPolicy preview over 24 h of flows of 100 clusters.
//!
//! `tunnel`, `idle`, `ui`, `federation` and `preview` run the management plane as a separate `cattery server` process (the
//! real binary, see [`server_proc::cattery_binary`]) so its memory and CPU can be read
//! from `/proc`; `rbac` hosts its servers in this process, because only this crate's build
//! of `cattery-server` has the modes it compares.

mod api;
mod browser;
mod clickhouse;
mod clusters;
mod federation;
mod haproxy;
mod idle;
mod load;
mod logstore;
mod preview;
mod rbac;
mod report;
mod server_proc;
mod tunnel;
mod ui;
mod upstream;

use clap::{Parser, Subcommand};

/// The allocator of the `cattery` binary (`crates/cli`), so the servers `rbac` hosts in
/// this process and the store `logstore` drives allocate as they do in production.
/// (`cattery` also sets mimalloc's `purge_delay` to 0, which needs `unsafe`; this crate
/// forbids it and keeps mimalloc's default.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cattery's benchmarks (results and method: docs/benchmarks.md).
#[derive(Parser)]
#[command(name = "cattery-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tunnel overhead: direct vs a two-haproxy chain vs server → tunnel → agent.
    Tunnel(tunnel::TunnelBenchArgs),
    /// Management-plane memory with many idle connected clusters.
    Idle(idle::IdleBenchArgs),
    /// Proxy request rate with RBAC on (authorization + audit) vs off (authentication only).
    Rbac(rbac::RbacBenchArgs),
    /// Log store ingest, search and disk use on the simulator's flow records.
    Logstore(logstore::LogstoreBenchArgs),
    /// Manager UI render time (overview, clusters, service graph) for a big fleet.
    Ui(ui::UiBenchArgs),
    /// FederatedPolicy propagation: create → every selected cluster `Applied`.
    Federation(federation::FederationBenchArgs),
    /// FederatedPolicy preview time over 24 h of flows of a fleet.
    Preview(preview::PreviewBenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CATTERY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Tunnel(a) => block_on(tunnel::run(a)),
        Command::Idle(a) => block_on(idle::run_bench(a)),
        Command::Rbac(a) => block_on(rbac::run(a)),
        // Synchronous: it runs and times threads of its own.
        Command::Logstore(a) => logstore::run(a),
        Command::Ui(a) => block_on(ui::run(a)),
        Command::Federation(a) => block_on(federation::run(a)),
        Command::Preview(a) => block_on(preview::run(a)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `f` on a multi-threaded runtime, as `cattery` runs its commands.
fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
        .block_on(f)
}

/// Parses a duration flag (`300ms`, `5s`, `2m`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use e.g. 500ms, 5s, 2m"))
}

/// Parses a size flag (`2GiB`, `512MiB`, `1000000`); zero is refused.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let n = s
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("invalid size {s:?} ({e}): use e.g. 2GiB, 512MiB or 1000000"))?
        .as_u64();
    if n == 0 {
        return Err(format!("invalid size {s:?}: must be more than 0 bytes"));
    }
    Ok(n)
}

/// A fresh working directory under `$TMPDIR` for one run (server data, logs, configs).
fn work_dir() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("cattery-bench-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("2 parsecs").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("300ms"),
            Ok(std::time::Duration::from_millis(300))
        );
        assert_eq!(parse_duration("5s"), Ok(std::time::Duration::from_secs(5)));
        assert!(parse_duration("5").is_err());
    }
}
