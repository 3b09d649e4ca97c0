//! `cattery sim-cluster`.

/// Runs a simulated cluster until Ctrl-C.
pub async fn run(args: cattery_sim::SimClusterArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_on_signal();
    let sim = cattery_sim::SimServer::bind_cluster(&args).await?;
    eprintln!(
        "simulated cluster {:?} serving {} (a simulator, not a real Kubernetes cluster)",
        args.sim.name, sim.url
    );
    sim.run(shutdown).await
}
