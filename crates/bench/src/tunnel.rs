//! `cattery-bench tunnel`: what the tunnel path costs a request, next to a direct request and
//! to a peer proxy chain with the same number of TLS legs.
//!
//! In one run, on loopback and against one simulator serving HTTPS as a kube-apiserver does
//! (`--upstream https`, the default; `--upstream http` serves plain HTTP/1.1 to the direct
//! client and the agent, the bench before 2026-11-25), it measures:
//!
//! 1. the rate and latency of small GETs, with many workers and with one, sent
//!    - directly to the simulator,
//!    - through two chained haproxy instances ([`crate::haproxy`]; when haproxy is
//!      installed and the simulator serves HTTPS),
//!    - through management plane → tunnel → agent → simulator;
//!
//!    every path uses the client kubectl uses (HTTP/2 over TLS);
//! 2. the throughput of one large streamed response on each path.
//!
//! The management plane runs as a separate `cattery server` process and haproxy as two
//! processes, so their CPU can be read from `/proc`; the simulator, the agent and the load
//! generator run in this process. The agent runs as `cattery agent` does, on a
//! single-threaded runtime in a thread of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::haproxy;
use crate::load::{self, LoadResult, StreamResult, Target};
use crate::report::{fmt_duration, human_bytes, machine, num, today, verdict};
use crate::server_proc::{ServerProc, cpu_seconds};
use crate::upstream::{Upstream, UpstreamScheme};

/// Flags of `cattery-bench tunnel`.
#[derive(clap::Args, Debug)]
pub struct TunnelBenchArgs {
    /// Measured time of each request-rate run (after the warm-up).
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Warm-up before each request-rate run (not measured).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Concurrent workers, each sending one request after another.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Kubernetes API path the small GETs ask for.
    #[arg(long, default_value = "/api/v1/namespaces/default")]
    pub path: String,
    /// Size of the streamed response, e.g. 2GiB, 512MiB, 1000000.
    #[arg(long, default_value = "2GiB", value_parser = crate::parse_bytes)]
    pub stream_bytes: u64,
    /// Keep the working directory (server data, haproxy configs, logs) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
    /// How the simulator serves: `https` (HTTP/2 or 1.1 by ALPN, like a kube-apiserver; the
    /// direct path then uses kubectl's client, as the tunnel path does) or `http` (plain
    /// HTTP/1.1 to both the direct client and the agent; no haproxy baseline).
    #[arg(long, value_enum, default_value_t = UpstreamScheme::Https)]
    pub upstream: UpstreamScheme,
    /// The haproxy executable of the peer baseline (a name looked up on $PATH and in
    /// /usr/sbin, or a path); without it the baseline is left out and the report says so.
    #[arg(long, default_value = "haproxy")]
    pub haproxy: String,
    /// Leave out the haproxy baseline.
    #[arg(long)]
    pub no_haproxy: bool,
}

/// One path a request can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Direct,
    Haproxy,
    Tunnel,
}

/// One request-rate run and the CPU it cost.
struct LoadRun {
    result: LoadResult,
    /// CPU seconds of this process (load generator, simulator, agent).
    bench_cpu: f64,
    /// CPU seconds of the path's proxy processes (`cattery server`, or both haproxy).
    proxy_cpu: f64,
}

impl LoadRun {
    fn per_request(&self, cpu: f64) -> f64 {
        cpu * 1e6 / (self.result.all_ok.max(1) as f64)
    }
}

/// One stream run and the CPU it cost.
struct StreamRun {
    result: StreamResult,
    bench_cpu: f64,
    proxy_cpu: f64,
}

/// A path under test: how to reach it and what to call it.
struct Route {
    via: Via,
    label: String,
    client: load::HttpsClient,
    /// Prefix of every URL (`https://…` plus, for the tunnel, `/clusters/bench/k8s`).
    base: String,
    authorization: Option<String>,
}

impl Route {
    fn target(&self, path: &str) -> Target {
        Target {
            url: format!("{}{path}", self.base),
            authorization: self.authorization.clone(),
        }
    }
}

/// Why there is no haproxy row, when there is none.
enum Baseline {
    Chain(haproxy::Chain),
    Missing(String),
}

/// Everything one run measured.
struct Report {
    routes: Vec<(Via, String)>,
    /// (workers, one run per route in `routes` order).
    rates: Vec<(usize, Vec<LoadRun>)>,
    /// One per route.
    streams: Vec<StreamRun>,
    haproxy: Result<String, String>,
    server_problems: Vec<String>,
    haproxy_problems: Vec<String>,
}

/// CPU seconds so far of this process and of the path's proxy processes.
fn cpu_now(via: Via, server_pid: u32, chain: Option<&haproxy::Chain>) -> (f64, f64) {
    let proxy = match via {
        Via::Direct => 0.0,
        Via::Tunnel => cpu_seconds(Some(server_pid)),
        Via::Haproxy => chain.map_or(0.0, haproxy::Chain::cpu_seconds),
    };
    (cpu_seconds(None), proxy)
}

/// The haproxy chain, or why there is none.
async fn baseline(args: &TunnelBenchArgs, dir: &Path, sim: &Upstream) -> anyhow::Result<Baseline> {
    if args.no_haproxy {
        return Ok(Baseline::Missing("left out (--no-haproxy)".into()));
    }
    let Some((ca_file, _)) = &sim.ca else {
        return Ok(Baseline::Missing(
            "left out: it needs the HTTPS simulator (--upstream https)".into(),
        ));
    };
    let Some(exe) = haproxy::find(&args.haproxy) else {
        return Ok(Baseline::Missing(format!(
            "left out: {} not found (install it, e.g. `apt-get install -y haproxy`, or name it with --haproxy PATH)",
            args.haproxy
        )));
    };
    eprintln!(
        "starting two chained haproxy instances ({}) …",
        exe.display()
    );
    Ok(Baseline::Chain(
        haproxy::Chain::start(&exe, dir, &sim.url, ca_file).await?,
    ))
}

async fn measure(args: &TunnelBenchArgs, dir: &Path, sim: &Upstream) -> anyhow::Result<Report> {
    let baseline = baseline(args, dir, sim).await?;
    eprintln!("starting a management plane …");
    let mut server = ServerProc::start(dir, "load-server").await?;
    let pid = server.pid();
    let api = server.api_client()?;
    let settings =
        crate::clusters::register(&api, "bench".into(), sim.agent_settings(&server.ca_file))
            .await?;
    let agent_stop = CancellationToken::new();
    // As `cattery agent` does: its own single-threaded runtime, in a thread of its own.
    let agent = tokio::spawn(cattery_agent::run::run_on_dedicated_thread(
        settings,
        agent_stop.clone(),
    ));
    let chain = match &baseline {
        Baseline::Chain(c) => Some(c),
        Baseline::Missing(_) => None,
    };
    let result = async {
        crate::clusters::wait_connected(&api, 1, Duration::from_secs(30), || {
            format!("; server log tail:\n{}", server.log_tail(15))
        })
        .await?;
        let mut routes = vec![Route {
            via: Via::Direct,
            label: sim.direct_label().into(),
            client: sim.direct_client()?,
            base: sim.url.clone(),
            authorization: None,
        }];
        if let Some(c) = chain {
            routes.push(Route {
                via: Via::Haproxy,
                label: "haproxy chain (h2+TLS → haproxy → h2+TLS → haproxy → h2+TLS → simulator)"
                    .into(),
                client: load::http2_client(&c.ca_pem)?,
                base: c.url.clone(),
                authorization: None,
            });
        }
        routes.push(Route {
            via: Via::Tunnel,
            label: sim.tunnel_label().into(),
            client: load::http2_client(&server.ca_pem)?,
            base: format!("{}/clusters/bench/k8s", server.url),
            authorization: Some(format!("Bearer {}", server.token)),
        });
        let mut rates = vec![];
        let mut workers = vec![usize::from(args.concurrency)];
        if args.concurrency != 1 {
            workers.push(1);
        }
        for c in workers {
            let mut runs = vec![];
            for r in &routes {
                eprintln!("small GETs, {c} worker(s): {} …", r.label);
                let (b0, p0) = cpu_now(r.via, pid, chain);
                let result = load::run_load(
                    &r.client,
                    &r.target(&args.path),
                    c,
                    args.warmup,
                    args.duration,
                )
                .await?;
                let (b1, p1) = cpu_now(r.via, pid, chain);
                runs.push(LoadRun {
                    result,
                    bench_cpu: b1 - b0,
                    proxy_cpu: p1 - p0,
                });
            }
            rates.push((c, runs));
        }
        let bytes_path = format!("/_sim/bytes?size={}", args.stream_bytes);
        let mut streams = vec![];
        for r in &routes {
            eprintln!(
                "streaming {}: {} …",
                human_bytes(args.stream_bytes),
                r.label
            );
            let (b0, p0) = cpu_now(r.via, pid, chain);
            let result =
                load::run_stream(&r.client, &r.target(&bytes_path), args.stream_bytes).await?;
            let (b1, p1) = cpu_now(r.via, pid, chain);
            streams.push(StreamRun {
                result,
                bench_cpu: b1 - b0,
                proxy_cpu: p1 - p0,
            });
        }
        Ok::<_, anyhow::Error>((
            routes.into_iter().map(|r| (r.via, r.label)).collect(),
            rates,
            streams,
        ))
    }
    .await;
    agent_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), agent).await {
        Ok(Ok(Err(e))) => tracing::warn!("the bench agent stopped with an error: {e}"),
        Ok(Err(e)) => tracing::warn!("the bench agent panicked: {e}"),
        _ => {}
    }
    let server_problems = server.problems();
    server.stop();
    let (haproxy, haproxy_problems) = match baseline {
        Baseline::Chain(mut c) => {
            let problems = c.problems();
            c.stop();
            (Ok(c.version.clone()), problems)
        }
        Baseline::Missing(why) => (Err(why), vec![]),
    };
    let (routes, rates, streams) = result?;
    Ok(Report {
        routes,
        rates,
        streams,
        haproxy,
        server_problems,
        haproxy_problems,
    })
}

/// Runs `cattery-bench tunnel` and prints its report.
pub async fn run(args: TunnelBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.path.starts_with('/'),
        "--path must start with '/', got {:?}",
        args.path
    );
    let server_bin: PathBuf = crate::server_proc::cattery_binary()?;
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let result = async {
        let sim = Upstream::start(&dir, args.upstream).await?;
        let r = measure(&args, &dir, &sim).await;
        sim.stop().await;
        r
    }
    .await;
    let report = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!("{}", render(&args, &server_bin, &report));
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

fn render(args: &TunnelBenchArgs, server_bin: &Path, r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## `{}` — {}\n\nMachine: {}. Server: `{} server`, a separate process. Simulator, agent and load generator: this process.",
        crate::report::command_line(),
        today(),
        machine(),
        server_bin.display(),
    );
    let _ = writeln!(
        o,
        "\nPeer baseline: {}\n",
        match &r.haproxy {
            Ok(v) => format!(
                "two chained haproxy processes ({v}; haproxy's defaults: a thread per core, 64 KiB HTTP/2 windows), the same three TLS legs as the tunnel path."
            ),
            Err(why) => format!("none — haproxy {why}."),
        }
    );
    let index = |via: Via| r.routes.iter().position(|(v, _)| *v == via);
    let _ = writeln!(
        o,
        "### Small GETs (`GET {}`, {} measured after {} warm-up)\n",
        args.path,
        fmt_duration(args.duration),
        fmt_duration(args.warmup)
    );
    let _ = writeln!(
        o,
        "| Path | Workers | req/s | p50 µs | p99 µs | CPU µs/req (bench + proxy processes) | Errors |\n|---|--:|--:|--:|--:|--:|--:|"
    );
    for (c, runs) in &r.rates {
        for ((_, label), run) in r.routes.iter().zip(runs) {
            let _ = writeln!(
                o,
                "| {label} | {c} | {} | {} | {} | {} + {} | {} |",
                num(run.result.rps(), 0),
                num(run.result.quantile_us(0.5), 0),
                num(run.result.quantile_us(0.99), 0),
                num(run.per_request(run.bench_cpu), 0),
                num(run.per_request(run.proxy_cpu), 0),
                run.result.errors,
            );
        }
    }
    for (c, runs) in &r.rates {
        for ((_, label), run) in r.routes.iter().zip(runs) {
            if let Some(e) = &run.result.first_error {
                let _ = writeln!(
                    o,
                    "\n- {label}, {c} worker(s): {} errors; first: {e}",
                    run.result.errors
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "\n### One streamed response (`GET /_sim/bytes`, {})\n\n| Path | MiB/s | Seconds | CPU s (bench + proxy processes) |\n|---|--:|--:|--:|",
        human_bytes(args.stream_bytes)
    );
    for ((_, label), s) in r.routes.iter().zip(&r.streams) {
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} + {} |",
            num(s.result.mib_per_s(), 0),
            num(s.result.elapsed.as_secs_f64(), 2),
            num(s.bench_cpu, 1),
            num(s.proxy_cpu, 1),
        );
    }
    // Side by side, at each worker count: what each path adds to a direct request.
    let (Some(direct), Some(tunnel)) = (index(Via::Direct), index(Via::Tunnel)) else {
        return o;
    };
    let haproxy = index(Via::Haproxy);
    let mut targets: Vec<(String, String, &str)> = vec![];
    for (c, runs) in &r.rates {
        let d = &runs[direct].result;
        let cols: Vec<usize> = [Some(direct), haproxy, Some(tunnel)]
            .into_iter()
            .flatten()
            .collect();
        let _ = writeln!(
            o,
            "\n### Side by side, {c} worker(s)\n\n| Measure | direct | {}tunnel |{}\n|---|--:|--:|{}{}",
            if haproxy.is_some() {
                "haproxy chain | "
            } else {
                ""
            },
            if haproxy.is_some() {
                " tunnel ÷ haproxy |"
            } else {
                ""
            },
            if haproxy.is_some() { "--:|" } else { "" },
            if haproxy.is_some() { "--:|" } else { "" },
        );
        let row = |name: &str, f: &dyn Fn(usize) -> f64, ratio: bool, decimals: usize| {
            let mut line = format!("| {name} |");
            for &k in &cols {
                line.push_str(&format!(" {} |", num(f(k), decimals)));
            }
            if let Some(h) = haproxy {
                if ratio {
                    line.push_str(&format!(" {}× |", num(f(tunnel) / f(h), 2)));
                } else {
                    line.push_str(" |");
                }
            }
            line
        };
        let rps = |k: usize| runs[k].result.rps();
        let added = |q: f64| move |k: usize| runs[k].result.quantile_us(q) - d.quantile_us(q);
        let _ = writeln!(o, "{}", row("requests/s", &rps, true, 0));
        let _ = writeln!(o, "{}", row("added p50 latency µs", &added(0.5), true, 0));
        let _ = writeln!(o, "{}", row("added p99 latency µs", &added(0.99), true, 0));
        // One stream per path, shown with the main worker count.
        if *c == usize::from(args.concurrency) {
            let _ = writeln!(
                o,
                "{}",
                row(
                    "stream MiB/s",
                    &|k: usize| r.streams[k].result.mib_per_s(),
                    true,
                    0
                )
            );
        }
        let t = &runs[tunnel].result;
        let ratio = t.rps() / d.rps();
        let added_p50 = t.quantile_us(0.5) - d.quantile_us(0.5);
        if *c == usize::from(args.concurrency) {
            targets.push((
                format!("Through-tunnel rate ≥ 50% of direct ({c} workers)"),
                format!("{}%", num(ratio * 100.0, 0)),
                verdict(ratio >= 0.5),
            ));
        }
        targets.push((
            format!("Added p50 latency ≤ 200 µs ({c} worker(s))"),
            format!("{} µs", num(added_p50, 0)),
            verdict(added_p50 <= 200.0),
        ));
    }
    let tunnel_mibs = r.streams[tunnel].result.mib_per_s();
    targets.push((
        "Stream through the tunnel ≥ 500 MiB/s".into(),
        format!(
            "{} MiB/s ({}% of direct)",
            num(tunnel_mibs, 0),
            num(
                tunnel_mibs / r.streams[direct].result.mib_per_s() * 100.0,
                0
            )
        ),
        verdict(tunnel_mibs >= 500.0),
    ));
    for (who, problems) in [
        ("Server", &r.server_problems),
        ("haproxy", &r.haproxy_problems),
    ] {
        if !problems.is_empty() {
            let _ = writeln!(
                o,
                "\n{who} log: {} WARN/ERROR line(s), e.g. `{}`",
                problems.len(),
                problems[0].trim()
            );
        }
    }
    let _ = writeln!(o, "\n### Targets\n\n| Target | Measured | |\n|---|--:|---|");
    for (t, m, v) in targets {
        let _ = writeln!(o, "| {t} | {m} | {v} |");
    }
    o
}
