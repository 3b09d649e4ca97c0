//! `cattery bench …`: performance measurements (written up in docs/benchmarks.md).
//!
//! `cattery bench tunnel` measures, in one run on loopback and against one simulator:
//!
//! 1. the rate and latency of small GETs sent directly to the simulator and through
//!    management plane → tunnel → agent → simulator, with many workers and with one. Both
//!    paths use the client kubectl uses (HTTP/2 over TLS); the simulator serves HTTPS as a
//!    kube-apiserver does (`--upstream https`, the default) or plain HTTP/1.1 to the
//!    direct client and the agent (`--upstream http`, the bench before 2026-11-25);
//! 2. the throughput of one large streamed response, both ways;
//! 3. the management plane's resident memory with 0, 100 and 1,000 idle connected
//!    clusters.
//!
//! The management plane runs as a separate `cattery server` process (so its memory and
//! CPU can be read from `/proc`); the simulator, the agents and the load generator run in
//! this process. The agent that carries the load runs as `cattery agent` does, on a
//! single-threaded runtime in a thread of its own; the idle agents share this process's
//! runtime (only the server's memory is measured with them).

mod idle;
mod load;
mod rbac;
mod server_proc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cattery_agent::UpstreamSettings;
use tokio_util::sync::CancellationToken;

use self::load::{LoadResult, StreamResult, Target};
use self::server_proc::{ServerProc, cpu_seconds};

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Tunnel overhead: direct vs through server → tunnel → agent; idle-cluster memory.
    Tunnel(TunnelBenchArgs),
    /// Proxy request rate with RBAC on (authorization + audit) vs off (authentication only).
    Rbac(rbac::RbacBenchArgs),
}

/// Flags of `cattery bench tunnel`.
#[derive(clap::Args, Debug)]
pub struct TunnelBenchArgs {
    /// Measured time of each request-rate run (after the warm-up).
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Warm-up before each request-rate run (not measured).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub warmup: Duration,
    /// Concurrent workers, each sending one request after another.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Kubernetes API path the small GETs ask for.
    #[arg(long, default_value = "/api/v1/namespaces/default")]
    pub path: String,
    /// Size of the streamed response, e.g. 2GiB, 512MiB, 1000000.
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub stream_bytes: u64,
    /// Numbers of idle connected clusters at which to read the server's memory.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub idle_clusters: Vec<usize>,
    /// Pause before reading memory, so connection set-up garbage is gone.
    #[arg(long, default_value = "3s", value_parser = super::parse_duration)]
    pub settle: Duration,
    /// Skip the request-rate, latency and streaming measurements.
    #[arg(long)]
    pub skip_load: bool,
    /// Skip the idle-cluster memory measurement.
    #[arg(long)]
    pub skip_idle: bool,
    /// Keep the working directory (server data and logs) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
    /// How the simulator serves: `https` (HTTP/2 or 1.1 by ALPN, like a kube-apiserver; the
    /// direct path then uses kubectl's client, as the tunnel path does) or `http` (plain
    /// HTTP/1.1 to both the direct client and the agent).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
}

/// How the bench's simulator serves its API.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamScheme {
    /// HTTPS with a self-signed CA, HTTP/2 or HTTP/1.1 by ALPN.
    Https,
    /// Plain HTTP/1.1.
    Http,
}

/// The simulator the bench talks to, directly and through the tunnel.
struct Upstream {
    url: String,
    /// Its CA (certificate file and PEM) when it serves HTTPS.
    ca: Option<(PathBuf, String)>,
}

impl Upstream {
    /// Describes the direct path in the report.
    fn direct_label(&self) -> &'static str {
        if self.ca.is_some() {
            "direct (h2+TLS → simulator)"
        } else {
            "direct (HTTP/1.1 → simulator)"
        }
    }

    /// Describes the tunnel path in the report.
    fn tunnel_label(&self) -> &'static str {
        if self.ca.is_some() {
            "tunnel (h2+TLS → server → tunnel → agent → TLS → simulator)"
        } else {
            "tunnel (h2+TLS → server → tunnel → agent → HTTP/1.1 → simulator)"
        }
    }

    /// The upstream an agent is configured with.
    fn agent_settings(&self, server_ca: &Path) -> UpstreamSettings {
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

    /// A client for the direct path.
    fn direct_client(&self) -> anyhow::Result<load::HttpsClient> {
        match &self.ca {
            Some((_, pem)) => load::http2_client(pem),
            None => load::http1_client(),
        }
    }
}

/// Parses a byte count with an optional binary suffix (`KiB`, `MiB`, `GiB`; `K`, `M`, `G`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: use e.g. 2GiB, 512MiB or 1000000"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Tunnel(args) => tunnel(args).await,
        BenchCommand::Rbac(args) => rbac::run(args).await,
    }
}

/// One request-rate run and the CPU it cost.
struct LoadRun {
    result: LoadResult,
    /// CPU seconds of this process (load generator, agent, simulator).
    bench_cpu: f64,
    /// CPU seconds of the server process.
    server_cpu: f64,
}

impl LoadRun {
    fn cpu_us_per_request(&self) -> f64 {
        (self.bench_cpu + self.server_cpu) * 1e6 / (self.result.all_ok.max(1) as f64)
    }
}

/// One stream run and the CPU it cost.
struct StreamRun {
    result: StreamResult,
    bench_cpu: f64,
    server_cpu: f64,
}

/// Everything the request/stream part measured.
struct LoadReport {
    /// (workers, direct, tunnel).
    rates: Vec<(usize, LoadRun, LoadRun)>,
    stream_direct: StreamRun,
    stream_tunnel: StreamRun,
    server_problems: Vec<String>,
}

/// Runs `f`, measuring the CPU this process and the server spent meanwhile.
async fn with_cpu<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    server_pid: u32,
    f: F,
) -> anyhow::Result<(T, f64, f64)> {
    let (b0, s0) = (cpu_seconds(None), cpu_seconds(Some(server_pid)));
    let r = f.await?;
    let (b1, s1) = (cpu_seconds(None), cpu_seconds(Some(server_pid)));
    Ok((r, b1 - b0, s1 - s0))
}

async fn load_part(
    args: &TunnelBenchArgs,
    dir: &Path,
    sim: &Upstream,
) -> anyhow::Result<LoadReport> {
    eprintln!("starting a management plane for the request and stream measurements …");
    let mut server = ServerProc::start(dir, "load-server").await?;
    let pid = server.pid();
    let api = server.api_client()?;
    let settings =
        idle::register(&api, "bench".into(), sim.agent_settings(&server.ca_file)).await?;
    let agent_stop = CancellationToken::new();
    // As `cattery agent` does: its own single-threaded runtime, in a thread of its own.
    let agent = tokio::spawn(cattery_agent::run::run_on_dedicated_thread(
        settings,
        agent_stop.clone(),
    ));
    let result = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while idle::connected(&api).await? < 1 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the bench cluster's agent did not connect within 30s; server log tail:\n{}",
                server.log_tail(15)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let direct_client = sim.direct_client()?;
        let tunnel_client = load::http2_client(&server.ca_pem)?;
        let auth = Some(format!("Bearer {}", server.token));
        let via_tunnel = |path: &str| Target {
            url: format!("{}/clusters/bench/k8s{path}", server.url),
            authorization: auth.clone(),
        };
        let direct = |path: &str| Target {
            url: format!("{}{path}", sim.url),
            authorization: None,
        };
        let mut rates = vec![];
        let mut workers = vec![usize::from(args.concurrency)];
        if args.concurrency != 1 {
            workers.push(1);
        }
        for c in workers {
            eprintln!("small GETs, {c} worker(s): direct …");
            let (r, b, s) = with_cpu(
                pid,
                load::run_load(
                    &direct_client,
                    &direct(&args.path),
                    c,
                    args.warmup,
                    args.duration,
                ),
            )
            .await?;
            let d = LoadRun {
                result: r,
                bench_cpu: b,
                server_cpu: s,
            };
            eprintln!("small GETs, {c} worker(s): through the tunnel …");
            let (r, b, s) = with_cpu(
                pid,
                load::run_load(
                    &tunnel_client,
                    &via_tunnel(&args.path),
                    c,
                    args.warmup,
                    args.duration,
                ),
            )
            .await?;
            let t = LoadRun {
                result: r,
                bench_cpu: b,
                server_cpu: s,
            };
            rates.push((c, d, t));
        }
        let bytes_path = format!("/_sim/bytes?size={}", args.stream_bytes);
        eprintln!("streaming {}: direct …", human_bytes(args.stream_bytes));
        let (r, b, s) = with_cpu(
            pid,
            load::run_stream(&direct_client, &direct(&bytes_path), args.stream_bytes),
        )
        .await?;
        let stream_direct = StreamRun {
            result: r,
            bench_cpu: b,
            server_cpu: s,
        };
        eprintln!(
            "streaming {}: through the tunnel …",
            human_bytes(args.stream_bytes)
        );
        let (r, b, s) = with_cpu(
            pid,
            load::run_stream(&tunnel_client, &via_tunnel(&bytes_path), args.stream_bytes),
        )
        .await?;
        let stream_tunnel = StreamRun {
            result: r,
            bench_cpu: b,
            server_cpu: s,
        };
        Ok(LoadReport {
            rates,
            stream_direct,
            stream_tunnel,
            server_problems: vec![],
        })
    }
    .await;
    agent_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), agent).await {
        Ok(Ok(Err(e))) => tracing::warn!("the bench agent stopped with an error: {e}"),
        Ok(Err(e)) => tracing::warn!("the bench agent panicked: {e}"),
        _ => {}
    }
    let problems = server.problems();
    server.stop();
    let mut report = result?;
    report.server_problems = problems;
    Ok(report)
}

/// Fails early, with the fix, if this process may not open enough files for the agents.
fn check_open_files(max_clusters: usize) -> anyhow::Result<()> {
    // Per idle cluster this process holds the tunnel socket, the agent's connection to
    // the simulator and the simulator's end of it; the server inherits the same limit.
    let need = (3 * max_clusters + 256) as u64;
    if let Some(limit) = server_proc::open_files_limit()
        && limit < need
    {
        anyhow::bail!(
            "{max_clusters} idle clusters need about {need} open files, but the limit is {limit}: \
             raise it first (e.g. `ulimit -n 65536` in this shell) or pass a smaller --idle-clusters"
        );
    }
    Ok(())
}

fn work_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("cattery-bench-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn tunnel(args: TunnelBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.path.starts_with('/'),
        "--path must start with '/', got {:?}",
        args.path
    );
    let max_idle = args.idle_clusters.iter().copied().max().unwrap_or(0);
    if !args.skip_idle {
        check_open_files(max_idle)?;
    }
    let dir = work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let stop = CancellationToken::new();
    let sim_tls = (args.upstream == UpstreamScheme::Https).then(|| dir.join("sim-tls"));
    let sim = cattery_sim::SimServer::bind(&cattery_sim::SimArgs {
        listen: "127.0.0.1:0".parse()?,
        name: "bench".into(),
        tls_dir: sim_tls.clone(),
        token_file: None,
    })
    .await?;
    let upstream = Upstream {
        url: sim.url.clone(),
        ca: match &sim_tls {
            Some(d) => {
                let file = d.join("ca.crt");
                let pem = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the simulator's CA {}", file.display()))?;
                Some((file, pem))
            }
            None => None,
        },
    };
    let sim_task = {
        let sd = stop.clone();
        tokio::spawn(async move { sim.run(sd).await })
    };
    let result = async {
        let load = if args.skip_load {
            None
        } else {
            Some(load_part(&args, &dir, &upstream).await?)
        };
        let idle = if args.skip_idle || max_idle == 0 {
            None
        } else {
            eprintln!("starting a management plane for the idle-cluster measurement …");
            Some(idle::run(&dir, &args.idle_clusters, &upstream, args.settle).await?)
        };
        Ok::<_, anyhow::Error>((load, idle))
    }
    .await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), sim_task).await;
    let (load, idle) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!("{}", render(&args, &upstream, load.as_ref(), idle.as_ref()));
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Formats with thousands separators and `decimals` fraction digits.
fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn mib(kib: u64) -> String {
    num(kib as f64 / 1024.0, 1)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn render(
    args: &TunnelBenchArgs,
    sim: &Upstream,
    load: Option<&LoadReport>,
    idle: Option<&idle::IdleResult>,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        o,
        "\n## `cattery bench tunnel` — {date}\n\nMachine: {cores} × {} (`nproc` = {cores}), load average {loadavg} at the end, loopback only. Server: separate `cattery server` process; simulator, agent(s) and load generator: this process.\n",
        cpu_model()
    );
    let mut targets: Vec<(String, String, String)> = vec![];
    if let Some(l) = load {
        let _ = writeln!(
            o,
            "### Small GETs (`GET {}`, {} measured after {} warm-up)\n",
            args.path,
            fmt_duration(args.duration),
            fmt_duration(args.warmup)
        );
        let _ = writeln!(
            o,
            "| Path | Workers | req/s | p50 µs | p99 µs | CPU µs/req (bench + server) | Errors |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        for (c, d, t) in &l.rates {
            for (label, r) in [(sim.direct_label(), d), (sim.tunnel_label(), t)] {
                let _ = writeln!(
                    o,
                    "| {label} | {c} | {} | {} | {} | {} + {} | {} |",
                    num(r.result.rps(), 0),
                    num(r.result.quantile_us(0.5), 0),
                    num(r.result.quantile_us(0.99), 0),
                    num(r.bench_cpu * 1e6 / r.result.all_ok.max(1) as f64, 0),
                    num(r.server_cpu * 1e6 / r.result.all_ok.max(1) as f64, 0),
                    r.result.errors,
                );
            }
        }
        let _ = writeln!(o);
        for (c, d, t) in &l.rates {
            let ratio = t.result.rps() / d.result.rps();
            let added = t.result.quantile_us(0.5) - d.result.quantile_us(0.5);
            let _ = writeln!(
                o,
                "- {c} worker(s): tunnel rate = {}% of direct; p50 added by the tunnel = {} µs; total CPU per request {} µs tunnel vs {} µs direct.",
                num(ratio * 100.0, 0),
                num(added, 0),
                num(t.cpu_us_per_request(), 0),
                num(d.cpu_us_per_request(), 0),
            );
            if *c == usize::from(args.concurrency) {
                targets.push((
                    format!("Through-tunnel rate ≥ 50% of direct ({c} workers)"),
                    format!("{}%", num(ratio * 100.0, 0)),
                    verdict(ratio >= 0.5).into(),
                ));
            }
            targets.push((
                format!("Added p50 latency ≤ 200 µs ({c} worker(s))"),
                format!("{} µs", num(added, 0)),
                verdict(added <= 200.0).into(),
            ));
            for (label, r) in [("direct", &d.result), ("tunnel", &t.result)] {
                if let Some(e) = &r.first_error {
                    let _ = writeln!(o, "  - {label}: {} errors; first: {e}", r.errors);
                }
            }
        }
        let _ = writeln!(
            o,
            "\n### One streamed response (`GET /_sim/bytes`, {})\n\n| Path | MiB/s | Seconds | CPU s (bench + server) |\n|---|--:|--:|--:|",
            human_bytes(args.stream_bytes)
        );
        for (label, s) in [
            (sim.direct_label(), &l.stream_direct),
            (sim.tunnel_label(), &l.stream_tunnel),
        ] {
            let _ = writeln!(
                o,
                "| {label} | {} | {} | {} + {} |",
                num(s.result.mib_per_s(), 0),
                num(s.result.elapsed.as_secs_f64(), 2),
                num(s.bench_cpu, 1),
                num(s.server_cpu, 1),
            );
        }
        let tunnel_mibs = l.stream_tunnel.result.mib_per_s();
        targets.push((
            "Stream through the tunnel ≥ 500 MiB/s".into(),
            format!(
                "{} MiB/s ({}% of direct)",
                num(tunnel_mibs, 0),
                num(tunnel_mibs / l.stream_direct.result.mib_per_s() * 100.0, 0)
            ),
            verdict(tunnel_mibs >= 500.0).into(),
        ));
        if !l.server_problems.is_empty() {
            let _ = writeln!(
                o,
                "\nServer log: {} WARN/ERROR line(s), e.g. `{}`",
                l.server_problems.len(),
                l.server_problems[0].trim()
            );
        }
        let _ = writeln!(o);
    }
    if let Some(i) = idle {
        let _ = writeln!(
            o,
            "### Management-plane memory with idle connected clusters\n\nRSS is private memory plus mapped file pages (the binary's code as it is first executed, memory-mapped log indices); private is `RssAnon`, what the process allocated.\n\nPrivate memory moves by ±10 MiB with the allocator's timing in returning freed pages, so at small counts the per-cluster figure is mostly that noise; the marginal column (growth since the previous row, per added cluster) shows what each further cluster costs.\n\n| Clusters | Server RSS MiB | Δ vs 0 MiB | KiB per cluster | Server private MiB | Δ private vs 0 MiB | private KiB per cluster | marginal private KiB per added cluster | Server threads | Server fds | Bench process RSS MiB | All connected after s |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
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
                        verdict(d / (p.clusters as f64) <= 100.0).into(),
                    ));
                }
            }
        }
        if i.agent_failures > 0 {
            let _ = writeln!(o, "\n{} agent(s) stopped with an error.", i.agent_failures);
        }
        if !i.server_problems.is_empty() {
            let _ = writeln!(
                o,
                "\nServer log: {} WARN/ERROR line(s), e.g. `{}`",
                i.server_problems.len(),
                i.server_problems[0].trim()
            );
        }
        let _ = writeln!(o);
    }
    if !targets.is_empty() {
        let _ = writeln!(o, "### Targets\n\n| Target | Measured | |\n|---|--:|---|");
        for (t, m, v) in targets {
            let _ = writeln!(o, "| {t} | {m} | {v} |");
        }
    }
    o
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("2TB").is_err());
        assert!(parse_bytes("GiB").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(num(1234567.891, 1), "1,234,567.9");
        assert_eq!(num(-1234.0, 0), "-1,234");
        assert_eq!(num(12.0, 0), "12");
        assert_eq!(num(f64::NAN, 0), "–");
    }
}
