//! A management plane run as a separate `cattery server` process, so its memory and CPU
//! can be read from `/proc/PID/…` apart from the load generator's.
//!
//! The process is the real `cattery` binary, as an operator runs it (its allocator and
//! settings, no benchmark code): [`cattery_binary`] finds it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::api::{ApiClient, Target};

/// How long the server may take to write its token and answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Clock ticks per second of `/proc/PID/stat` times. `sysconf(_SC_CLK_TCK)` needs libc
/// (and `unsafe`); every Linux architecture we build for uses 100.
const CLK_TCK: f64 = 100.0;

/// Environment variable naming the `cattery` binary to benchmark.
pub(crate) const CATTERY_BIN_ENV: &str = "CATTERY_BIN";

/// The `cattery` binary whose server is measured: `$CATTERY_BIN` if set, else the `cattery`
/// next to this executable (cargo builds every binary of the workspace into the same
/// `target/PROFILE/` directory). Build it first, in its own cargo invocation, so it is
/// exactly the production build: `cargo build --release -p cattery`.
pub(crate) fn cattery_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(CATTERY_BIN_ENV) {
        let p = PathBuf::from(p);
        anyhow::ensure!(
            p.is_file(),
            "{CATTERY_BIN_ENV}={} is not a file",
            p.display()
        );
        return Ok(p);
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let dir = me
        .parent()
        .with_context(|| format!("{} has no parent directory", me.display()))?;
    // Test binaries live one level down, in target/PROFILE/deps/.
    let candidates = [dir.join("cattery"), dir.join("../cattery")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no `cattery` binary next to {}: build it first (`cargo build --release -p cattery`, \
                 or without --release for a debug bench) or name it with {CATTERY_BIN_ENV}=PATH",
                me.display()
            )
        })
}

/// A `cattery server` child process, killed when dropped.
pub(crate) struct ServerProc {
    child: Child,
    /// API base URL (`https://127.0.0.1:PORT`).
    pub url: String,
    /// Admin token.
    pub token: String,
    /// PEM of the management plane's CA.
    pub ca_pem: String,
    /// Path of the CA file.
    pub ca_file: PathBuf,
    /// File receiving the server's stderr (its log).
    pub log_file: PathBuf,
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ServerProc {
    /// The data directory [`ServerProc::start`] gives server `name` under `dir` (a bench
    /// may fill it first, e.g. the log store under `logs/`).
    pub fn data_dir(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}-data"))
    }

    /// Starts `cattery server` ([`cattery_binary`]) with its data dir under `dir` (fresh
    /// unless the bench filled it) and waits until it answers `/healthz`.
    pub async fn start(dir: &Path, name: &str) -> anyhow::Result<ServerProc> {
        let data = Self::data_dir(dir, name);
        std::fs::create_dir_all(&data)?;
        let log_file = dir.join(format!("{name}.log"));
        let (api_port, tunnel_port) = (free_port()?, free_port()?);
        let exe = cattery_binary()?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--tunnel-addr")
            .arg(format!("127.0.0.1:{tunnel_port}"))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(&log_file)?)
            .spawn()
            .with_context(|| format!("starting {} server", exe.display()))?;
        let mut proc = ServerProc {
            child,
            url: format!("https://127.0.0.1:{api_port}"),
            token: String::new(),
            ca_pem: String::new(),
            ca_file: data.join("ca.crt"),
            log_file,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let token_file = data.join("admin.token");
        loop {
            if let Some(status) = proc.child.try_wait()? {
                bail!(
                    "the server exited ({status}) while starting; its log:\n{}",
                    proc.log_tail(20)
                );
            }
            if let Ok(t) = std::fs::read_to_string(&token_file)
                && t.ends_with('\n')
                && let Ok(ca) = std::fs::read_to_string(&proc.ca_file)
            {
                proc.token = t.trim().to_string();
                proc.ca_pem = ca;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the server wrote no admin token within {START_TIMEOUT:?}; its log:\n{}",
                    proc.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let api = proc.api_client()?;
        loop {
            match api.call(http::Method::GET, "/healthz", None).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "the server did not answer /healthz within {START_TIMEOUT:?}: {e:#}; its log:\n{}",
                        proc.log_tail(20)
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(proc)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An API client (HTTP/1.1) for setup calls.
    pub fn api_client(&self) -> anyhow::Result<ApiClient> {
        ApiClient::new(Target {
            server: self.url.clone(),
            token: self.token.clone(),
            ca_pem: self.ca_pem.clone(),
        })
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines at WARN or ERROR level.
    pub fn problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log_file)
            .unwrap_or_default()
            .lines()
            .map(strip_ansi)
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }

    /// Kills the process and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes terminal colour sequences (`ESC [ … m`) the log formatter may have written.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `/proc/PID/status` says about a process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcStatus {
    /// Resident set size, KiB: private memory plus the file pages mapped in (the binary's
    /// code, memory-mapped log indices), which the kernel can drop and re-read.
    pub rss_kib: u64,
    /// The private (anonymous) part of it, KiB (`RssAnon`): what the process allocated.
    pub rss_anon_kib: u64,
    /// Number of threads.
    pub threads: u64,
}

/// Reads `/proc/PID/status` (`pid = None`: this process).
pub(crate) fn proc_status(pid: Option<u32>) -> anyhow::Result<ProcStatus> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok(ProcStatus {
        rss_kib: field("VmRSS:").with_context(|| format!("{path} has no VmRSS"))?,
        rss_anon_kib: field("RssAnon:").unwrap_or(0),
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Number of open file descriptors of a process (`None`: this process).
pub(crate) fn open_fds(pid: Option<u32>) -> usize {
    let path = match pid {
        Some(p) => format!("/proc/{p}/fd"),
        None => "/proc/self/fd".to_string(),
    };
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// User + system CPU time consumed so far by a process (`None`: this process), seconds.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / CLK_TCK
}

/// The soft limit on open files, from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}
