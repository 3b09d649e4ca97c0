//! `cattery-bench idle`: memory of the management plane with many idle connected clusters.
//!
//! A fresh `cattery server` process; clusters registered through the API; their agents
//! run as tasks of this process and share one simulator upstream; the server's RSS is read
//! from `/proc/PID/status` once every cluster reports `ManagedClusterConnected=True`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::clusters::{Agents, connected, register_all};
use crate::report::{machine, mib, num, today, verdict};
use crate::server_proc::{self, ProcStatus, ServerProc, open_fds, proc_status};
use crate::upstream::{Upstream, UpstreamScheme};

/// Flags of `cattery-bench idle`.
#[derive(clap::Args, Debug)]
pub struct IdleBenchArgs {
    /// Numbers of idle connected clusters at which to read the server's memory.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub clusters: Vec<usize>,
    /// Pause before reading memory, so connection set-up garbage is gone.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    pub settle: Duration,
    /// How the simulator the agents connect to serves (see `tunnel --upstream`).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
    /// Keep the working directory (server data and logs) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
}
/// RSS samples taken per measurement (the median is reported).
const RSS_SAMPLES: usize = 3;

/// One measurement point.
#[derive(Clone, Copy, Debug)]
struct IdlePoint {
    /// Connected clusters.
    pub clusters: usize,
    /// Server process status (RSS, threads).
    pub server: ProcStatus,
    /// Server open file descriptors.
    pub server_fds: usize,
    /// This process (agents, simulator, load generator): RSS.
    pub bench: ProcStatus,
    /// Time from starting the new agents until all were reported connected.
    pub connect_time: Duration,
}

/// Result of the idle-cluster measurement.
#[derive(Clone, Debug)]
struct IdleResult {
    /// 0 clusters, then each requested count.
    pub points: Vec<IdlePoint>,
    /// Agents that stopped with an error.
    pub agent_failures: usize,
    /// WARN/ERROR lines in the server's log.
    pub server_problems: Vec<String>,
}

/// Median RSS of a few samples, half a second apart.
async fn sample(pid: u32) -> anyhow::Result<ProcStatus> {
    let mut v = vec![];
    for i in 0..RSS_SAMPLES {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        v.push(proc_status(Some(pid))?);
    }
    v.sort_by_key(|s| s.rss_kib);
    Ok(v[v.len() / 2])
}

/// Fails early, with the fix, if this process may not open enough files for the agents.
pub(crate) fn check_open_files(max_clusters: usize) -> anyhow::Result<()> {
    // Per idle cluster this process holds the tunnel socket, the agent's connection to
    // the simulator and the simulator's end of it; the server inherits the same limit.
    let need = (3 * max_clusters + 256) as u64;
    if let Some(limit) = server_proc::open_files_limit()
        && limit < need
    {
        anyhow::bail!(
            "{max_clusters} idle clusters need about {need} open files, but the limit is {limit}: \
             raise it first (e.g. `ulimit -n 65536` in this shell) or pass a smaller --clusters"
        );
    }
    Ok(())
}

/// Runs `cattery-bench idle` and prints its report.
pub async fn run_bench(args: IdleBenchArgs) -> anyhow::Result<()> {
    let max = args.clusters.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(max > 0, "--clusters must name at least one count above 0");
    check_open_files(max)?;
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let result = async {
        let sim = Upstream::start(&dir, args.upstream).await?;
        eprintln!("starting a management plane for the idle-cluster measurement …");
        let r = measure(&dir, &args.clusters, &sim, args.settle).await;
        sim.stop().await;
        r
    }
    .await;
    let idle = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!("{}", render(&idle));
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

/// Measures server RSS at 0 clusters and at each of `counts` idle connected clusters.
async fn measure(
    dir: &Path,
    counts: &[usize],
    sim: &Upstream,
    settle: Duration,
) -> anyhow::Result<IdleResult> {
    let mut counts: Vec<usize> = counts.iter().copied().filter(|&n| n > 0).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut server = ServerProc::start(dir, "idle-server").await?;
    let pid = server.pid();
    let api = std::sync::Arc::new(server.api_client()?);
    // Exercise the API once so its connection and code paths are in the baseline.
    connected(&api).await?;
    tokio::time::sleep(settle).await;
    let mut points = vec![IdlePoint {
        clusters: 0,
        server: sample(pid).await?,
        server_fds: open_fds(Some(pid)),
        bench: proc_status(None)?,
        connect_time: Duration::ZERO,
    }];
    let upstream = sim.agent_settings(&server.ca_file);
    let mut agents = Agents::new();
    let mut have = 0usize;
    let result: anyhow::Result<()> = async {
        for &n in &counts {
            eprintln!("  idle clusters: registering {} more …", n - have);
            let names = (have..n)
                .map(|i| (format!("idle-{i:05}"), Default::default(), upstream.clone()))
                .collect();
            let settings = register_all(&api, names).await?;
            eprintln!("  idle clusters: starting {} agents …", settings.len());
            let started = Instant::now();
            agents.start(settings).await;
            let limit = Duration::from_secs(60) + Duration::from_millis(60 * n as u64);
            let deadline = started + limit;
            loop {
                let c = connected(&api).await?;
                if c >= n {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "only {c} of {n} clusters connected within {limit:?}; server log tail:\n{}",
                        server.log_tail(15)
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let connect_time = started.elapsed();
            have = n;
            tokio::time::sleep(settle).await;
            points.push(IdlePoint {
                clusters: n,
                server: sample(pid).await?,
                server_fds: open_fds(Some(pid)),
                bench: proc_status(None)?,
                connect_time,
            });
        }
        Ok(())
    }
    .await;
    let agent_failures = agents.stop().await;
    let server_problems = server.problems();
    server.stop();
    result?;
    Ok(IdleResult {
        points,
        agent_failures,
        server_problems,
    })
}

/// The report: one table, one row per measured count.
fn render(i: &IdleResult) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## `{}` — {}\n\nMachine: {}. Server: separate `cattery server` process; simulator and agents: this process.\n",
        crate::report::command_line(),
        today(),
        machine(),
    );
    let _ = writeln!(
        o,
        "RSS is private memory plus mapped file pages (the binary's code as it is first executed, memory-mapped log indices); private is `RssAnon`, what the process allocated.\n\nPrivate memory moves by ±10 MiB with the allocator's timing in returning freed pages, so at small counts the per-cluster figure is mostly that noise; the marginal column (growth since the previous row, per added cluster) shows what each further cluster costs.\n\n| Clusters | Server RSS MiB | Δ vs 0 MiB | KiB per cluster | Server private MiB | Δ private vs 0 MiB | private KiB per cluster | marginal private KiB per added cluster | Server threads | Server fds | Bench process RSS MiB | All connected after s |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let mut targets = vec![];
    let base = i.points[0].server.rss_kib;
    let base_anon = i.points[0].server.rss_anon_kib;
    for (k, p) in i.points.iter().enumerate() {
        let marginal = match k.checked_sub(1).map(|j| &i.points[j]) {
            Some(prev) if p.clusters > prev.clusters => num(
                (p.server.rss_anon_kib as f64 - prev.server.rss_anon_kib as f64)
                    / (p.clusters - prev.clusters) as f64,
                1,
            ),
            _ => "–".to_string(),
        };
        let delta = p.server.rss_kib as f64 - base as f64;
        let delta_anon = p.server.rss_anon_kib as f64 - base_anon as f64;
        let per_cluster = |d: f64| {
            if p.clusters == 0 {
                "–".to_string()
            } else {
                num(d / p.clusters as f64, 1)
            }
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(p.clusters as f64, 0),
            mib(p.server.rss_kib),
            num(delta / 1024.0, 1),
            per_cluster(delta),
            mib(p.server.rss_anon_kib),
            num(delta_anon / 1024.0, 1),
            per_cluster(delta_anon),
            marginal,
            p.server.threads,
            p.server_fds,
            mib(p.bench.rss_kib),
            num(p.connect_time.as_secs_f64(), 1),
        );
        if p.clusters > 0 {
            for (what, d) in [("RSS", delta), ("private memory", delta_anon)] {
                targets.push((
                    format!(
                        "Server {what} ≤ 100 KiB per idle cluster ({} clusters)",
                        num(p.clusters as f64, 0)
                    ),
                    format!("{} KiB", num(d / p.clusters as f64, 1)),
                    verdict(d / (p.clusters as f64) <= 100.0),
                ));
            }
        }
    }
    crate::report::failures(&mut o, i.agent_failures, &i.server_problems);
    let _ = writeln!(o, "\n### Targets\n\n| Target | Measured | |\n|---|--:|---|");
    for (t, m, v) in targets {
        let _ = writeln!(o, "| {t} | {m} | {v} |");
    }
    o
}
