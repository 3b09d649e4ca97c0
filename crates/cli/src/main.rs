//! `cattery`: one binary for the management plane, the agent, the cluster simulator, the
//! demo and the client commands. This file only parses arguments and wires commands.
#![deny(unsafe_code)] // one exception: `allocator.rs` sets a mimalloc option

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: request handling allocates and frees many small
/// buffers on several threads, where glibc's malloc/free/consolidate took ~20 % of CPU in
/// `cattery-bench rbac` profiles; with mimalloc the proxy costs ~13 % less CPU per request
/// (docs/design/0008-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod allocator;
mod client;
mod commands;
mod output;

/// Cattery: one management plane for many Kubernetes clusters.
#[derive(Parser)]
#[command(name = "cattery", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management plane (API on :9443, agent tunnels on :9449).
    Server(commands::server::ServerArgs),
    /// Run the agent of one managed cluster (dials the management plane).
    Agent(commands::agent::AgentArgs),
    /// Run a simulated Kubernetes cluster (for the demo and tests; not a real cluster).
    SimCluster(cattery_sim::SimClusterArgs),
    /// Start a management plane with simulated clusters and their agents, all on loopback.
    Demo(commands::demo::DemoArgs),
    /// Save the management plane's address, token and CA for later commands.
    Login(commands::login::LoginArgs),
    /// Register, list, inspect and remove managed clusters.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Print a kubeconfig that reaches a cluster through the management plane.
    Kubeconfig(commands::kubeconfig::KubeconfigArgs),
    /// Create, list and revoke bearer tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Create or replace RBAC objects from YAML/JSON files (like kubectl apply).
    Apply(commands::resources::ApplyArgs),
    /// Show resources: clusterroles, clusterrolebindings, roles, rolebindings, managedclusters, tokens.
    Get(commands::resources::GetArgs),
    /// Delete an RBAC object.
    Delete(commands::resources::DeleteArgs),
    /// Check your permissions (can-i) and identity (whoami).
    #[command(subcommand)]
    Auth(commands::auth::AuthCommand),
    /// Search, aggregate, export and follow central logs.
    Logs(commands::logs::LogsArgs),
    /// Apply FederatedPolicies and show each cluster's state of one.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CATTERY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> std::process::ExitCode {
    let purging = allocator::purge_freed_memory_at_once();
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Command::Server(_) | Command::Agent(_) | Command::SimCluster(_) | Command::Demo(_)
    );
    init_logging(if long_running { "info" } else { "warn" });
    if matches!(
        cli.command,
        Command::Server(_) | Command::Agent(_) | Command::Demo(_)
    ) {
        // Before any thread exists: files that libraries create themselves (SQLite's WAL,
        // tantivy's segments, spool files) are owner-only (docs/design/0013-private-files.md).
        cattery_files::restrict_umask();
    }
    match purging {
        allocator::Purging::AtOnce => {}
        allocator::Purging::ChosenByOperator => {
            tracing::debug!("mimalloc's purge delay comes from MIMALLOC_PURGE_DELAY")
        }
        allocator::Purging::Unchanged => {
            tracing::debug!("mimalloc's purge_delay option was not where expected; left as is")
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(a) => commands::server::run(a).await,
            Command::Agent(a) => commands::agent::run(a).await,
            Command::SimCluster(a) => commands::sim::run(a).await,
            Command::Demo(a) => commands::demo::run(a).await,
            Command::Login(a) => commands::login::run(a).await,
            Command::Cluster(c) => commands::cluster::run(c).await,
            Command::Kubeconfig(a) => commands::kubeconfig::run(a).await,
            Command::Logs(a) => commands::logs::run(a).await,
            Command::Policy(c) => commands::policy::run(c).await,
            Command::Token(c) => commands::token::run(c).await,
            Command::Apply(a) => commands::resources::apply(a).await,
            Command::Get(a) => commands::resources::get(a).await,
            Command::Delete(a) => commands::resources::delete(a).await,
            Command::Auth(c) => match commands::auth::run(c).await {
                Ok(true) => Ok(()),
                Ok(false) => return Ok(false),
                Err(e) => Err(e),
            },
        }
        .map(|()| true)
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        // A definite "no" (e.g. `auth can-i`), already printed.
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
