//! `cattery bench …`: performance measurements (written up in docs/benchmarks.md).

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Tunnel overhead: direct vs through server → tunnel → agent; idle-cluster memory.
    Tunnel(TunnelBenchArgs),
}

/// Flags of `cattery bench tunnel`.
#[derive(clap::Args, Debug)]
pub struct TunnelBenchArgs {}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Tunnel(_) => anyhow::bail!("not written yet"),
    }
}
