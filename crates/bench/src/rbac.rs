//! `cattery-bench rbac`: proxy request rate with RBAC on vs off.
//!
//! One simulator runs for the whole benchmark. Each round starts three fresh in-process
//! management planes one after the other — [`AccessControl::Enforced`] (authentication,
//! RBAC decision, one audit record per request), [`AccessControl::AuthenticationOnlyForBenchmarks`]
//! (token check only) and [`AccessControl::AuditWithoutAuthorizationForBenchmarks`] (token
//! check and audit record, no RBAC decision: separates RBAC's own cost from the audit
//! trail's) — in an order that rotates per round so drift cancels. Both load the same policy (`--roles`
//! ClusterRoles, `--bindings` ClusterRoleBindings over ~500 users and ~50 groups), connect
//! one in-process agent for cluster `bench`, check that RBAC is really on (or off), and
//! send small GETs through the proxy as a non-admin user allowed through a group binding.
//! Everything — server, agent, simulator, load generator — runs in this process.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use cattery_agent::UpstreamSettings;
use cattery_api::{API_VERSION, Token, TokenSpec};
use cattery_server::AccessControl;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::Connect;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, Target as ClientTarget};
use crate::load::{self, BenchClient, LoadResult, Target};
use crate::server_proc::cpu_seconds;

/// Policy objects uploaded at once.
const UPLOAD_CONCURRENCY: usize = 16;
/// Distinct users the bindings name.
const USERS: usize = 500;
/// Distinct groups the bindings name.
const GROUPS: usize = 50;
/// The group the benchmark's requester is in.
const BENCH_GROUP: &str = "bench-group-7";
/// The requester (not the admin).
const BENCH_USER: &str = "bench-user";
/// A user no binding names (the sanity check).
const NOBODY_USER: &str = "bench-nobody";
/// The benchmark's cluster.
const CLUSTER: &str = "bench";
/// Longest wait for the agent to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the agent or the server to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, after the load, for the audit events it produced to become searchable.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the sanity-check request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const RBAC_BASE: &str = "/apis/rbac.authorization.k8s.io/v1";

/// Flags of `cattery-bench rbac`.
#[derive(clap::Args, Debug)]
pub struct RbacBenchArgs {
    /// Measured time of each run (after the warm-up).
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Warm-up before each run (not measured).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Concurrent workers, each sending one request after another.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Rounds; each measures RBAC off, audit only, and on once (order rotating per round).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
    /// ClusterRoles in the policy.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub roles: u32,
    /// ClusterRoleBindings in the policy.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bindings: u32,
    /// Kubernetes API path the GETs ask for (through the proxy).
    #[arg(long, default_value = "/api/v1/namespaces/default")]
    pub path: String,
    /// Keep the working directory (server data) instead of deleting it.
    #[arg(long)]
    pub keep_dir: bool,
}

/// What the server's door checks in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Authentication only.
    Off,
    /// Authentication and the audit trail, no RBAC decision.
    AuditOnly,
    /// Production: authentication, RBAC and the audit trail.
    On,
}

impl Mode {
    /// Every mode, in the order of the report.
    const ALL: [Mode; 3] = [Mode::Off, Mode::AuditOnly, Mode::On];

    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::AuditOnly => "audit only",
            Mode::On => "on",
        }
    }

    fn access_control(self) -> AccessControl {
        match self {
            Mode::Off => AccessControl::AuthenticationOnlyForBenchmarks,
            Mode::AuditOnly => AccessControl::AuditWithoutAuthorizationForBenchmarks,
            Mode::On => AccessControl::Enforced,
        }
    }

    /// The status a user without any binding must get through the proxy.
    fn expected_nobody_status(self) -> http::StatusCode {
        match self {
            Mode::Off | Mode::AuditOnly => http::StatusCode::OK,
            Mode::On => http::StatusCode::FORBIDDEN,
        }
    }
}

/// The order of the modes in round `round`: rotated by one each round, so each mode runs
/// first, second and third equally often over three rounds.
fn order(round: u16) -> [Mode; 3] {
    let mut modes = Mode::ALL;
    modes.rotate_left(usize::from(round) % Mode::ALL.len());
    modes
}

/// CPU cost of one run and the audit work deferred past it.
struct Cpu {
    /// CPU time of this whole process (server, agent, simulator, load generator) during
    /// warm-up and load, per successful request, µs: steadier than req/s on a shared machine.
    during_load_us: f64,
    /// The same including the audit indexing done after the load (all CPU spent for it).
    total_us: f64,
    /// Audit events not yet searchable when the load stopped.
    backlog_end: u64,
    /// How long indexing them took after the load.
    drain: Duration,
}

/// One measured run.
struct Run {
    mode: Mode,
    result: LoadResult,
    cpu: Cpu,
}

/// Index of the role granting the proxy on `bench` (in the middle, not first).
fn special_role(roles: u32) -> u32 {
    roles / 2
}

/// Index of the binding of [`BENCH_GROUP`] to the special role (in the middle).
fn special_binding(bindings: u32) -> u32 {
    bindings / 2
}

fn role_name(i: u32) -> String {
    format!("bench-role-{i:05}")
}

/// ClusterRole `i`: 3–5 rules over clusters, the proxy and log types, with varied names.
fn role(i: u32, roles: u32) -> serde_json::Value {
    let c = |n: u32| format!("c-{}", n % 1000);
    let mut proxy_names = vec![c(i * 7)];
    if i == special_role(roles) {
        proxy_names.push(CLUSTER.to_string());
    }
    let mut rules = vec![
        json!({"apiGroups": ["cattery.dev"], "resources": ["managedclusters"],
               "resourceNames": [c(i), c(i + 1)], "verbs": ["get", "list"]}),
        json!({"apiGroups": ["cattery.dev"], "resources": ["managedclusters/proxy"],
               "resourceNames": proxy_names, "verbs": ["get"]}),
        json!({"apiGroups": ["logs.cattery.dev"], "resources": ["flows", "dns"],
               "resourceNames": [c(i)], "verbs": ["get"]}),
    ];
    if i % 3 >= 1 {
        rules.push(
            json!({"apiGroups": ["logs.cattery.dev"], "resources": ["l7", "audit"],
                          "resourceNames": [c(i + 3), c(i + 4)], "verbs": ["get"]}),
        );
    }
    if i % 3 == 2 {
        rules.push(
            json!({"apiGroups": ["cattery.dev"], "resources": ["managedclusters/proxy"],
                          "resourceNames": [c(i + 5), c(i + 6)], "verbs": ["get", "create"]}),
        );
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role_name(i)},
        "rules": rules,
    })
}

/// ClusterRoleBinding `j`: a user (and every other one a group) to some role; binding
/// [`special_binding`] binds [`BENCH_GROUP`] to [`special_role`].
fn binding(j: u32, roles: u32, bindings: u32) -> serde_json::Value {
    let subject = |kind: &str, name: String| json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"});
    let (subjects, role_index) = if j == special_binding(bindings) {
        (
            vec![subject("Group", BENCH_GROUP.to_string())],
            special_role(roles),
        )
    } else {
        let mut s = vec![subject("User", format!("user-{:03}", j as usize % USERS))];
        if j.is_multiple_of(2) {
            s.push(subject(
                "Group",
                format!("bench-group-{}", (j as usize / 2) % GROUPS),
            ));
        }
        // Never the special role, so exactly one binding grants the benchmark's access.
        let mut r = j.wrapping_mul(31) % roles;
        if r == special_role(roles) {
            r = (r + 1) % roles;
        }
        (s, r)
    };
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("bench-binding-{j:06}")},
        "subjects": subjects,
        "roleRef": {"kind": "ClusterRole", "name": role_name(role_index),
                    "apiGroup": "rbac.authorization.k8s.io"},
    })
}

/// PUTs `objects` (path, body), [`UPLOAD_CONCURRENCY`] at a time.
async fn upload(api: &Arc<ApiClient>, objects: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (path, body) in objects {
        if set.len() >= UPLOAD_CONCURRENCY
            && let Some(r) = set.join_next().await
        {
            r.context("an upload task panicked")??;
        }
        let api = api.clone();
        set.spawn(async move {
            api.call(http::Method::PUT, &path, Some(body))
                .await
                .with_context(|| format!("PUT {path}"))
                .map(|_| ())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("an upload task panicked")??;
    }
    Ok(())
}

/// Loads the whole policy: roles first, then bindings.
async fn load_policy(api: &Arc<ApiClient>, args: &RbacBenchArgs) -> anyhow::Result<()> {
    let roles = (0..args.roles)
        .map(|i| {
            Ok((
                format!("{RBAC_BASE}/clusterroles/{}", role_name(i)),
                serde_json::to_vec(&role(i, args.roles))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    upload(api, roles).await.context("uploading ClusterRoles")?;
    let bindings = (0..args.bindings)
        .map(|j| {
            Ok((
                format!("{RBAC_BASE}/clusterrolebindings/bench-binding-{j:06}"),
                serde_json::to_vec(&binding(j, args.roles, args.bindings))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    upload(api, bindings)
        .await
        .context("uploading ClusterRoleBindings")?;
    Ok(())
}

/// Creates a token for `user` in `groups` and returns its secret.
async fn create_token(api: &ApiClient, user: &str, groups: &[&str]) -> anyhow::Result<String> {
    let body = Token {
        api_version: API_VERSION.into(),
        kind: "Token".into(),
        spec: TokenSpec {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            expiration_seconds: None,
            description: Some("cattery-bench rbac".into()),
        },
        ..Default::default()
    };
    let bytes = api
        .call(
            http::Method::POST,
            "/apis/cattery.dev/v1/tokens",
            Some(serde_json::to_vec(&body)?),
        )
        .await
        .with_context(|| format!("creating a token for {user}"))?;
    let token: Token = serde_json::from_slice(&bytes).context("decoding the created token")?;
    token
        .status
        .token
        .with_context(|| format!("the server returned no secret for {user}'s token"))
}

/// The status of one GET of `target`.
async fn probe<C>(client: &BenchClient<C>, target: &Target) -> anyhow::Result<http::StatusCode>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut b = http::Request::get(&target.url).header(http::header::ACCEPT, "application/json");
    if let Some(a) = &target.authorization {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    let req = b.body(Empty::<Bytes>::new())?;
    let fut = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| anyhow::anyhow!("{}", crate::api::error_chain(&e)))?;
        let status = res.status();
        res.into_body()
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?;
        Ok::<_, anyhow::Error>(status)
    };
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .with_context(|| format!("GET {}: no answer within {PROBE_TIMEOUT:?}", target.url))?
        .with_context(|| format!("GET {}", target.url))
}

/// One run: a fresh server in `mode`, the policy, the agent, the sanity check, the load.
async fn one_run(
    args: &RbacBenchArgs,
    dir: &Path,
    sim_url: &str,
    round: u16,
    mode: Mode,
) -> anyhow::Result<(LoadResult, Cpu)> {
    let data_dir = dir.join(format!("round{round}-rbac-{}", mode.label()));
    let shutdown = CancellationToken::new();
    let server = cattery_server::start(
        cattery_server::ServerConfig {
            data_dir: data_dir.clone(),
            api_addr: "127.0.0.1:0".parse()?,
            tunnel_addr: "127.0.0.1:0".parse()?,
            address: None,
            api_tls: None,
            retention: Default::default(),
            oidc: None,
            ui_session_idle: None,
            access_control: mode.access_control(),
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("starting a management plane in {}", data_dir.display()))?;
    let agent_stop = CancellationToken::new();
    let mut agent = None;
    let result = async {
        let token = server
            .admin_token
            .clone()
            .context("a fresh data dir always yields an admin token")?;
        let ca_pem = std::fs::read_to_string(&server.ca_file)
            .with_context(|| format!("reading {}", server.ca_file.display()))?;
        let url = format!("https://{}", server.api_addr);
        let api = Arc::new(ApiClient::new(ClientTarget {
            server: url.clone(),
            token,
            ca_pem: ca_pem.clone(),
        })?);
        eprintln!(
            "  loading {} ClusterRoles and {} ClusterRoleBindings …",
            args.roles, args.bindings
        );
        let started = std::time::Instant::now();
        load_policy(&api, args).await?;
        eprintln!(
            "  policy loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let user_token = create_token(&api, BENCH_USER, &[BENCH_GROUP]).await?;
        let nobody_token = create_token(&api, NOBODY_USER, &[]).await?;
        let settings = crate::clusters::register(
            &api,
            CLUSTER.into(),
            UpstreamSettings {
                url: sim_url.to_string(),
                token_file: None,
                ca_file: Some(server.ca_file.clone()),
            },
        )
        .await?;
        let sd = agent_stop.clone();
        agent = Some(tokio::spawn(async move {
            cattery_agent::run(settings, sd).await
        }));
        crate::clusters::wait_connected(&api, 1, CONNECT_TIMEOUT, || {
            format!(" (the agent of cluster {CLUSTER})")
        })
        .await?;
        let client = load::http2_client(&ca_pem)?;
        let proxied = format!("{url}/clusters/{CLUSTER}/k8s{}", args.path);
        let nobody = Target {
            url: proxied.clone(),
            authorization: Some(format!("Bearer {nobody_token}")),
        };
        let got = probe(&client, &nobody).await?;
        let want = mode.expected_nobody_status();
        anyhow::ensure!(
            got == want,
            "sanity check failed: with RBAC {}, user {NOBODY_USER} (no bindings) got {got} \
             through the proxy, expected {want}",
            mode.label()
        );
        eprintln!(
            "  sanity check: user without bindings got {got} (RBAC {})",
            mode.label()
        );
        let target = Target {
            url: proxied,
            authorization: Some(format!("Bearer {user_token}")),
        };
        eprintln!(
            "  {} workers, {} s warm-up + {} s measured …",
            args.concurrency,
            args.warmup.as_secs_f64(),
            args.duration.as_secs_f64()
        );
        let cpu_before = cpu_seconds(None);
        let result = load::run_load(
            &client,
            &target,
            usize::from(args.concurrency),
            args.warmup,
            args.duration,
        )
        .await?;
        let cpu_load = cpu_seconds(None) - cpu_before;
        // Audit events are journaled during the load and indexed in the background, at the
        // lowest priority while the CPU is busy: count that deferred work too, by waiting
        // (bounded) until every event is searchable.
        let backlog_end = server.audit.backlog();
        let drain_start = Instant::now();
        while server.audit.backlog() > 0 && drain_start.elapsed() < DRAIN_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = server.audit.backlog();
        anyhow::ensure!(
            left == 0,
            "{left} audit events were still not indexed {DRAIN_TIMEOUT:?} after the load"
        );
        let drain = if backlog_end > 0 {
            drain_start.elapsed()
        } else {
            Duration::ZERO
        };
        let per_request = |cpu: f64| cpu * 1e6 / result.all_ok.max(1) as f64;
        let cpu = Cpu {
            during_load_us: per_request(cpu_load),
            total_us: per_request(cpu_seconds(None) - cpu_before),
            backlog_end,
            drain,
        };
        Ok((result, cpu))
    }
    .await;
    agent_stop.cancel();
    if let Some(agent) = agent {
        match tokio::time::timeout(STOP_TIMEOUT, agent).await {
            Ok(Ok(Err(e))) => tracing::warn!("the bench agent stopped with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("the bench agent panicked: {e}"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => tracing::warn!("the bench agent did not stop within {STOP_TIMEOUT:?}"),
        }
    }
    shutdown.cancel();
    if tokio::time::timeout(STOP_TIMEOUT, server.wait())
        .await
        .is_err()
    {
        tracing::warn!("the management plane did not stop within {STOP_TIMEOUT:?}");
    }
    result
}

/// Runs `cattery-bench rbac`.
pub async fn run(args: RbacBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.path.starts_with('/'),
        "--path must start with '/', got {:?}",
        args.path
    );
    let dir = crate::work_dir()?;
    eprintln!("working directory: {}", dir.display());
    let stop = CancellationToken::new();
    let sim = cattery_sim::SimServer::bind(&cattery_sim::SimArgs {
        listen: "127.0.0.1:0".parse()?,
        name: CLUSTER.into(),
        tls_dir: None,
        token_file: None,
        pod_cidr: None,
    })
    .await
    .context("starting the simulator")?;
    let sim_url = sim.url.clone();
    let sim_task = {
        let sd = stop.clone();
        tokio::spawn(async move { sim.run(sd).await })
    };
    let result = async {
        let mut runs = vec![];
        for round in 0..args.rounds {
            for mode in order(round) {
                eprintln!(
                    "round {}/{}: RBAC {} …",
                    round + 1,
                    args.rounds,
                    mode.label()
                );
                let (result, cpu) = one_run(&args, &dir, &sim_url, round, mode)
                    .await
                    .with_context(|| format!("round {}, RBAC {}", round + 1, mode.label()))?;
                eprintln!(
                    "  {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
                    result.rps(),
                    result.quantile_us(0.5),
                    result.quantile_us(0.99),
                    result.errors
                );
                if cpu.backlog_end > 0 {
                    eprintln!(
                        "  {} audit events were not yet searchable when the load stopped; indexed within {:.1} s after",
                        cpu.backlog_end,
                        cpu.drain.as_secs_f64()
                    );
                }
                runs.push(Run { mode, result, cpu });
            }
        }
        Ok::<_, anyhow::Error>(runs)
    }
    .await;
    stop.cancel();
    let _ = tokio::time::timeout(STOP_TIMEOUT, sim_task).await;
    let runs = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "the working directory {} is kept for inspection",
                dir.display()
            );
            return Err(e);
        }
    };
    print!("{}", render(&args, &runs));
    if args.keep_dir {
        eprintln!("working directory kept: {}", dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    Ok(())
}

/// Rate of mode `a` ÷ rate of mode `b` within each round (runs of one round are adjacent
/// in time, so slow drift of the machine's load cancels in each ratio).
fn paired_ratios(runs: &[Run], a: Mode, b: Mode) -> Vec<f64> {
    let per_round = Mode::ALL.len();
    runs.chunks(per_round)
        .filter_map(|round| {
            let rate = |m: Mode| round.iter().find(|r| r.mode == m).map(|r| r.result.rps());
            Some(rate(a)? / rate(b)?)
        })
        .collect()
}

/// Median (mean of the middle two for an even count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if !n.is_multiple_of(2) {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn render(args: &RbacBenchArgs, runs: &[Run]) -> String {
    use crate::report::{command_line, cpu_model, fmt_duration, num};
    use std::fmt::Write;
    let mut o = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        o,
        "\n## `{}` — {date}\n\nMachine: {cores} × {} (`nproc` = {cores}), loopback only. Server, agent, simulator and load generator all run in this process; each run starts a fresh server.\n",
        command_line(),
        cpu_model()
    );
    let _ = writeln!(
        o,
        "Policy (both modes): {} ClusterRoles (3–5 rules each), {} ClusterRoleBindings over {USERS} users and {GROUPS} groups. Requester `{BENCH_USER}` (not the admin) is allowed only through binding #{} of group `{BENCH_GROUP}`. Load: `GET /clusters/{CLUSTER}/k8s{}` through the proxy, {} workers, {} measured after {} warm-up, {} round(s) alternating the order of the modes.\n",
        args.roles,
        args.bindings,
        special_binding(args.bindings),
        args.path,
        args.concurrency,
        fmt_duration(args.duration),
        fmt_duration(args.warmup),
        args.rounds,
    );
    let _ = writeln!(
        o,
        "| RBAC | req/s (median) | p50 µs (median) | p99 µs (median) | CPU µs/request during load (median) | CPU µs/request incl. deferred audit indexing (median) | audit events unindexed at end of load (median) | indexed within (median) | Errors | req/s per round |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    let mut rps = [f64::NAN; 3];
    let mut cpu = [f64::NAN; 3];
    let mut cpu_total = [f64::NAN; 3];
    for (k, (mode, label)) in [
        (Mode::Off, "off (authentication only)"),
        (
            Mode::AuditOnly,
            "audit only (authentication + audit, no RBAC decision)",
        ),
        (Mode::On, "on (authentication + RBAC + audit)"),
    ]
    .into_iter()
    .enumerate()
    {
        let mine: Vec<&LoadResult> = runs
            .iter()
            .filter(|r| r.mode == mode)
            .map(|r| &r.result)
            .collect();
        rps[k] = median(mine.iter().map(|r| r.rps()).collect());
        let of_mode = || runs.iter().filter(|r| r.mode == mode);
        cpu[k] = median(of_mode().map(|r| r.cpu.during_load_us).collect());
        cpu_total[k] = median(of_mode().map(|r| r.cpu.total_us).collect());
        let backlog = median(of_mode().map(|r| r.cpu.backlog_end as f64).collect());
        let drain = median(of_mode().map(|r| r.cpu.drain.as_secs_f64()).collect());
        let per_round: Vec<String> = mine.iter().map(|r| num(r.rps(), 0)).collect();
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} | {} | {} | {} s | {} | {} |",
            num(rps[k], 0),
            num(median(mine.iter().map(|r| r.quantile_us(0.5)).collect()), 0),
            num(
                median(mine.iter().map(|r| r.quantile_us(0.99)).collect()),
                0
            ),
            num(cpu[k], 1),
            num(cpu_total[k], 1),
            num(backlog, 0),
            num(drain, 1),
            mine.iter().map(|r| r.errors).sum::<u64>(),
            per_round.join(", "),
        );
    }
    let (off, audit, on) = (0, 1, 2);
    let ratio = rps[on] / rps[off];
    let cpu_ratio = cpu[off] / cpu[on];
    let total_ratio = cpu_total[off] / cpu_total[on];
    let paired = median(paired_ratios(runs, Mode::On, Mode::Off));
    let met = |r: f64| if r >= 0.9 { "met" } else { "MISSED" };
    let _ = writeln!(
        o,
        "\n| Target | Measured | |\n|---|--:|---|\n| RBAC on ≥ 90% of off (req/s, medians) | {}% | {} |\n| Same, median of the per-round ratios (each round's runs are minutes apart at most) | {}% | {} |\n| Same, from CPU per request during the load (off ÷ on: the rate ratio when CPU-bound) | {}% | {} |\n| CPU per request including the deferred audit indexing (off ÷ on: the rate ratio if the load never stopped and indexing kept pace) | {}% | (for information) |",
        num(ratio * 100.0, 1),
        met(ratio),
        num(paired * 100.0, 1),
        met(paired),
        num(cpu_ratio * 100.0, 1),
        met(cpu_ratio),
        num(total_ratio * 100.0, 1),
    );
    let _ = writeln!(
        o,
        "\nWhere the cost is (for information): the RBAC decision alone, on ÷ audit only = {}% of the rate ({}% from CPU per request during the load); the audit trail alone, audit only ÷ off = {}% ({}%).",
        num(rps[on] / rps[audit] * 100.0, 1),
        num(cpu[audit] / cpu[on] * 100.0, 1),
        num(rps[audit] / rps[off] * 100.0, 1),
        num(cpu[off] / cpu[audit] * 100.0, 1),
    );
    for r in runs {
        if let Some(e) = &r.result.first_error {
            let _ = writeln!(
                o,
                "\n- RBAC {}: {} errors; first: {e}",
                r.mode.label(),
                r.result.errors
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_binding_grants_the_bench_group() {
        let (roles, bindings) = (200, 1000);
        let special = role_name(special_role(roles));
        let granting: Vec<u32> = (0..bindings)
            .filter(|&j| binding(j, roles, bindings)["roleRef"]["name"] == special.as_str())
            .collect();
        assert_eq!(granting, vec![special_binding(bindings)]);
        assert_ne!(special_binding(bindings), 0);
        let rules = role(special_role(roles), roles)["rules"]
            .as_array()
            .unwrap()
            .len();
        assert!((3..=5).contains(&rules));
        assert!(
            role(special_role(roles), roles)
                .to_string()
                .contains("\"bench\"")
        );
        for i in 0..roles {
            let n = role(i, roles)["rules"].as_array().unwrap().len();
            assert!((3..=5).contains(&n), "role {i}: {n} rules");
            if i != special_role(roles) {
                assert!(!role(i, roles).to_string().contains("\"bench\""));
            }
        }
    }

    #[test]
    fn every_mode_takes_every_position_over_three_rounds() {
        for (position, _) in Mode::ALL.iter().enumerate() {
            let mut seen: Vec<Mode> = (0..3).map(|r| order(r)[position]).collect();
            seen.sort_by_key(|m| m.label());
            let mut all = Mode::ALL.to_vec();
            all.sort_by_key(|m| m.label());
            assert_eq!(seen, all, "position {position}");
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
