//! Test harness: a simulator on an ephemeral 127.0.0.1 port, a kubeconfig
//! pointing at it, real kubectl processes and a raw HTTP/1.1 client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cattery_sim::{LogArgs, SimArgs, SimServer};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Sim {
    pub url: String,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub stop: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Options {
    pub name: &'static str,
    pub tls: bool,
    pub token: Option<&'static str>,
    /// Token written into the kubeconfig (defaults to `token`).
    pub client_token: Option<&'static str>,
    /// `--pod-cidr` (the name's default when None).
    pub pod_cidr: Option<&'static str>,
    /// Traffic-log and audit options.
    pub logs: LogArgs,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "test-sim",
            tls: false,
            token: None,
            client_token: None,
            pod_cidr: None,
            logs: LogArgs::default(),
        }
    }
}

fn kubectl_path() -> &'static str {
    let p = "/usr/bin/kubectl";
    assert!(
        std::path::Path::new(p).exists(),
        "these tests drive real kubectl: install the Debian package kubernetes-client"
    );
    p
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let token_file = opts.token.map(|t| {
            let p = dir.path().join("token");
            std::fs::write(&p, format!("{t}\n")).unwrap();
            p
        });
        let args = SimArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            name: opts.name.to_string(),
            tls_dir: opts.tls.then(|| dir.path().join("tls")),
            token_file,
            pod_cidr: opts.pod_cidr.map(|c| c.parse().expect("test CIDR")),
        };
        let server = SimServer::bind_with_logs(&args, &opts.logs).await.unwrap();
        let (url, addr) = (server.url.clone(), server.local_addr);
        let mut cluster = format!("    server: {url}\n");
        if opts.tls {
            let ca = dir.path().join("tls/ca.crt");
            assert_eq!(
                std::fs::read_to_string(&ca).unwrap(),
                server.ca_cert_pem.clone().unwrap()
            );
            cluster.push_str(&format!("    certificate-authority: {}\n", ca.display()));
        }
        let user = match opts.client_token.or(opts.token) {
            Some(t) => format!("    token: {t}\n"),
            None => "    username: nobody\n".into(),
        };
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n{cluster}\
                 users:\n- name: u\n  user:\n{user}contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: u\n\
                 current-context: sim\n"
            ),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = Some(tokio::spawn(server.run(stop.clone())));
        Sim {
            url,
            addr,
            dir,
            kubeconfig,
            stop,
            task,
        }
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (bounded by [`WAIT`]).
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        let child = self.kubectl_cmd(args).spawn().unwrap();
        tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {WAIT:?}"))
            .unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes a manifest into the temp dir and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// Stops the simulator and waits for `run` to return.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }

    /// One HTTP/1.1 request over a fresh connection: (status, body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> (u16, Vec<u8>) {
        let resp = self
            .send(method, path, &[("content-type", content_type)], body.into())
            .await;
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        (status, body.to_vec())
    }

    /// Like [`Sim::http`], parsing the body as JSON.
    pub async fn http_json(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        let (status, body) = self.http(method, path, content_type, body).await;
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, v)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> http::Response<hyper::body::Incoming> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).unwrap();
        tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .unwrap()
            .unwrap()
    }

    /// Opens a watch (or any streaming GET) and returns a line reader.
    pub async fn stream(&self, path: &str) -> BodyLines {
        let resp = self.send("GET", path, &[], Bytes::new()).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        BodyLines {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Newline-delimited reader over a streaming HTTP body.
pub struct BodyLines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl BodyLines {
    /// The next line, or None at end of stream; panics after [`WAIT`].
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("no watch event within WAIT");
            match frame {
                None => return None,
                Some(f) => {
                    if let Ok(data) = f.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// A running kubectl whose stdout is read line by line.
pub struct Streaming {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Streaming {
    pub fn spawn(sim: &Sim, args: &[&str]) -> Streaming {
        let mut child = sim.kubectl_cmd(args).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Streaming { child, lines }
    }

    /// Reads lines until one satisfies `pred` (bounded by [`WAIT`]); returns it.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if pred(&line) {
                    return line;
                }
            }
            panic!("kubectl output ended before {what}");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no line with {what} within {WAIT:?}"))
    }
}
