//! Helpers for end-to-end tests: real `cattery` processes on 127.0.0.1 with ephemeral
//! ports, real TLS, real kubectl; bounded waits on conditions instead of sleeps.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cattery")
}

/// A fresh directory for one test; kept for inspection when `CATTERY_KEEP_TEST_DIRS` is set.
pub fn test_dir() -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("cattery-test-");
    if std::env::var_os("CATTERY_KEEP_TEST_DIRS").is_some() {
        b.disable_cleanup(true);
    }
    b.tempdir().unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped; its output goes to files in the test's directory.
pub struct Proc {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn spawn(dir: &Path, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env("CATTERY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            child,
            stdout,
            stderr,
            name: name.into(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let name = self.name.clone();
        wait_for(&format!("{name} to exit"), timeout, || {
            self.child.try_wait().unwrap()
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running management plane.
pub struct Server {
    pub proc: Proc,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub api_port: u16,
    pub tunnel_port: u16,
    pub url: String,
    pub token: String,
    pub ca: PathBuf,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Server::start_on(dir, "server", free_port(), free_port())
    }

    pub fn start_on(dir: &Path, name: &str, api_port: u16, tunnel_port: u16) -> Server {
        Server::start_with(dir, name, api_port, tunnel_port, &[], &[])
    }

    /// [`Server::start_on`] with extra `cattery server` flags and environment variables.
    pub fn start_with(
        dir: &Path,
        name: &str,
        api_port: u16,
        tunnel_port: u16,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let data = dir.join(format!("{name}-data"));
        let api = format!("127.0.0.1:{api_port}");
        let tunnel = format!("127.0.0.1:{tunnel_port}");
        let mut args = vec![
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-addr",
            &api,
            "--tunnel-addr",
            &tunnel,
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(dir, name, &args, envs);
        let url = format!("https://{api}");
        let token_file = data.join("admin.token");
        let token = wait_for("admin.token", Duration::from_secs(20), || {
            std::fs::read_to_string(&token_file)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
        .trim()
        .to_string();
        let s = Server {
            proc,
            dir: dir.into(),
            ca: data.join("ca.crt"),
            data,
            api_port,
            tunnel_port,
            url,
            token,
        };
        wait_for(
            "the API to answer /healthz",
            Duration::from_secs(20),
            || (s.curl(&["/healthz"]).1 == 200).then_some(()),
        );
        s
    }

    /// Starts the server again on the same data dir and ports (after `proc` was killed or
    /// stopped) as process `name`, and waits for its API to answer.
    pub fn restart(&mut self, name: &str) {
        let args = [
            "server",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--api-addr",
            &format!("127.0.0.1:{}", self.api_port),
            "--tunnel-addr",
            &format!("127.0.0.1:{}", self.tunnel_port),
        ];
        self.proc = Proc::spawn(&self.dir, name, &args, &[]);
        wait_for("the restarted API", Duration::from_secs(60), || {
            (self.curl(&["/healthz"]).1 == 200).then_some(())
        });
    }

    /// Environment for client commands.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CATTERY_SERVER".into(), self.url.clone()),
            ("CATTERY_TOKEN".into(), self.token.clone()),
            ("CATTERY_CA_FILE".into(), self.ca.display().to_string()),
            (
                "CATTERY_CONFIG".into(),
                self.dir.join("no-such-config.json").display().to_string(),
            ),
        ]
    }

    /// Runs a client command.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs a client command that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cattery {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// curl against the API with the admin token: returns (body, status). Extra args first.
    pub fn curl(&self, args: &[&str]) -> (String, u16) {
        self.curl_as(Some(&self.token), args)
    }

    /// POSTs `body` as JSON to `path` with the admin token.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (String, u16) {
        self.curl(&[
            path,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ])
    }

    pub fn curl_as(&self, token: Option<&str>, args: &[&str]) -> (String, u16) {
        let (path, extra) = args.split_first().unwrap();
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            self.ca.to_str().unwrap(),
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        cmd.args(extra).arg(format!("{}{}", self.url, path));
        let out = cmd.output().expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (body.to_string(), code.trim().parse().unwrap_or(0))
    }

    /// `ManagedCluster` JSON of `name`.
    pub fn cluster_json(&self, name: &str) -> serde_json::Value {
        let (body, code) = self.curl(&[&format!("/apis/cattery.dev/v1/managedclusters/{name}")]);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The `ManagedClusterConnected` status of `name`.
    pub fn connected(&self, name: &str) -> String {
        self.cluster_json(name)["status"]["conditions"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn wait_connected(&self, name: &str, want: &str) {
        wait_for(
            &format!("cluster {name} ManagedClusterConnected={want}"),
            Duration::from_secs(30),
            || (self.connected(name) == want).then_some(()),
        );
    }

    /// Registers `name` and writes its agent config; returns the config path.
    pub fn add_cluster(&self, name: &str) -> PathBuf {
        let manifest = self.cli_ok(&["cluster", "add", name, "--format", "agent-config"]);
        let path = self.dir.join(format!("agent-{name}.yaml"));
        std::fs::write(&path, manifest).unwrap();
        path
    }

    /// Writes a kubeconfig for `name`; returns its path.
    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        let kc = self.cli_ok(&["kubeconfig", name]);
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, kc).unwrap();
        path
    }
}

/// A simulated cluster process.
pub struct Sim {
    pub proc: Proc,
    pub url: String,
}

impl Sim {
    pub fn start(dir: &Path, name: &str, token_file: Option<&Path>) -> Sim {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["sim-cluster", "--listen", &listen, "--name", name];
        let tf = token_file.map(|p| p.display().to_string());
        if let Some(tf) = &tf {
            args.extend(["--token-file", tf.as_str()]);
        }
        let proc = Proc::spawn(dir, &format!("sim-{name}"), &args, &[]);
        let url = format!("http://{listen}");
        let sim = Sim { proc, url };
        wait_for("the simulator to answer", Duration::from_secs(20), || {
            sim.get("/_sim/info")
        });
        sim
    }

    /// GET a simulator debug path (no auth needed for /_sim/*).
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", &format!("{}{path}", self.url)])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.get("/_sim/requests")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

/// Starts an agent for `config` against `upstream`.
pub fn start_agent(dir: &Path, name: &str, config: &Path, upstream: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "agent",
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        upstream,
        "--reconnect-max-delay",
        "1s",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(dir, &format!("agent-{name}"), &args, &[])
}

/// Runs kubectl with `kubeconfig`.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .expect("kubectl is installed")
}

pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reads lines of a child's stdout on a thread; lets a test wait for a matching line.
pub struct LineReader {
    rx: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LineReader {
    pub fn new(stdout: std::process::ChildStdout) -> LineReader {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader { rx, seen: vec![] }
    }

    /// Waits for a line containing `needle`; panics (showing what was seen) after `timeout`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        match self.try_line_containing(needle, timeout) {
            Some(line) => line,
            None => panic!(
                "no line containing {needle:?} within {timeout:?}; saw {:?}",
                self.seen
            ),
        }
    }

    /// A line containing `needle` within `timeout`, if one arrives.
    pub fn try_line_containing(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// True once the stream has ended (the process closed stdout).
    pub fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// `kubectl get configmaps -n NAMESPACE -w --output-watch-events` through `kubeconfig`:
/// the process and a reader of its lines.
pub fn watch_configmaps(kubeconfig: &Path, namespace: &str, stderr: Stdio) -> (Child, LineReader) {
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "get",
            "configmaps",
            "-n",
            namespace,
            "-w",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let lines = LineReader::new(watch.stdout.take().unwrap());
    (watch, lines)
}

/// Writes a ConfigMap `name` in namespace `shop` to `DIR/NAME.yaml` and returns the path.
pub fn configmap_file(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(format!("{name}.yaml"));
    std::fs::write(&f, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\ndata:\n  a: \"1\"\n")).unwrap();
    f
}

/// sha256 hex of `s` (the simulator records hashes of Authorization headers).
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Registers `name` and starts a simulator writing flow/DNS/L7 files (`rate` records per
/// second, at most `limit`) with an agent shipping them; returns once the tunnel is up.
pub fn logging_cluster(
    server: &Server,
    d: &Path,
    name: &str,
    rate: &str,
    limit: &str,
) -> (Proc, Proc) {
    let cfg = server.add_cluster(name);
    let sim_port = free_port();
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let logs_dir = d.join(format!("{name}-felix"));
    let mut args: Vec<String> = vec![
        "agent".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--upstream".into(),
        sim_url.clone(),
        "--reconnect-max-delay".into(),
        "1s".into(),
        "--spool-dir".into(),
        d.join(format!("{name}-spool")).display().to_string(),
    ];
    for t in ["flows", "dns", "l7"] {
        args.push("--log-file".into());
        args.push(format!(
            "{t}={}",
            logs_dir.join(format!("{t}.log")).display()
        ));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Proc::spawn(d, &format!("agent-{name}"), &refs, &[]);
    let listen = format!("127.0.0.1:{sim_port}");
    let sim = Proc::spawn(
        d,
        &format!("sim-{name}"),
        &[
            "sim-cluster",
            "--listen",
            &listen,
            "--name",
            name,
            "--logs-dir",
            logs_dir.to_str().unwrap(),
            "--log-rate",
            rate,
            "--log-interval",
            "100ms",
            "--log-limit",
            limit,
        ],
        &[],
    );
    server.wait_connected(name, "True");
    (agent, sim)
}

/// Debian's chromium, which the browser tests drive through Playwright.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The repository root (the browser tests' `tests/ui` and `target/ui-screenshots`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Panics, naming what to install, when a browser test's tools are missing: a browser test
/// that did not run must not count as passed.
pub fn require_browser_tooling(test: &str) {
    let missing = if !Path::new(CHROMIUM).exists() {
        format!("{CHROMIUM} is missing")
    } else if Command::new("node").arg("--version").output().is_err() {
        "node is missing".to_string()
    } else if !repo()
        .join("tests/ui/node_modules/playwright-core")
        .exists()
    {
        "playwright-core is missing (cd tests/ui && npm ci)".to_string()
    } else if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        "kubectl is missing".to_string()
    } else {
        return;
    };
    panic!(
        "the browser test cannot run: {missing}. Install what it needs with \
         `apt-get install -y chromium nodejs npm kubernetes-client && (cd tests/ui && npm ci)`, \
         or skip it explicitly with `-E 'not test({test})'`"
    );
}

/// Runs the Playwright spec `tests/ui/<spec>` with node against `server` (signed in with its
/// admin token; `envs` adds the spec's own settings) and checks that it succeeded and printed
/// every line of `steps`. Screenshots go to `target/ui-screenshots/`.
pub fn run_browser_spec(server: &Server, spec: &str, envs: &[(&str, String)], steps: &[&str]) {
    let shots = repo().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(repo().join("tests/ui").join(spec))
        .current_dir(repo().join("tests/ui"))
        .env("UI_URL", &server.url)
        .env("UI_TOKEN", &server.token)
        .env("UI_CHROMIUM", CHROMIUM)
        .env("UI_SCREENSHOTS", &shots)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the browser spec failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server
            .proc
            .log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for step in steps {
        assert!(
            stdout.contains(step),
            "step {step:?} did not pass:\n{stdout}"
        );
    }
}
