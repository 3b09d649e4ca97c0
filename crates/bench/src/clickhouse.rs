//! The measured peer of `cattery-bench logstore`: a ClickHouse server (Debian's
//! `clickhouse-server`, `apt-get install clickhouse-server`) run as a plain process on
//! loopback with a throwaway data directory and config, fed the same flow records over its
//! HTTP interface and asked the same questions.
//!
//! ClickHouse is a mature column store built for this kind of data (append-only events,
//! filtered scans, group-bys), which anyone can install, so the ratio of the log store's
//! numbers to its numbers says how far the store is from what a tuned engine does with the
//! same records on the same machine, and whether a missed target is the machine's limit.
//! The server runs with ClickHouse's defaults apart from what a config must name (paths,
//! ports, a password-less `default` user limited to 127.0.0.1, the log file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long the server may take to answer its first `/ping`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// No single statement may take longer than this (the biggest are 10,000-row inserts and
/// group-bys over 10 M rows, which take well under a minute).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A running ClickHouse server, killed when dropped.
pub(crate) struct ClickHouse {
    child: Child,
    /// Its error log (`<errorlog>`).
    errors: PathBuf,
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// `SELECT version()`.
    pub version: String,
    rt: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `config.xml` of a server keeping everything under `dir`, listening on 127.0.0.1 only.
fn config(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{d}/server.log</log>
    <errorlog>{d}/server.err.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <keep_alive_timeout>30</keep_alive_timeout>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <!-- Required; the packaged config's value (a cap: allocated only as marks are read). -->
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"#
    )
}

/// `users.xml`: the `default` user, no password, only from 127.0.0.1, default settings.
const USERS: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;

impl ClickHouse {
    /// Starts `exe` with its files in `dir` (created; must not hold another server's data)
    /// and waits until it answers `/ping`.
    pub fn start(exe: &Path, dir: &Path) -> anyhow::Result<ClickHouse> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (http_port, tcp_port) = (free_port()?, free_port()?);
        let cfg = dir.join("config.xml");
        std::fs::write(&cfg, config(dir, http_port, tcp_port))
            .with_context(|| format!("writing {}", cfg.display()))?;
        std::fs::write(dir.join("users.xml"), USERS)
            .with_context(|| format!("writing {}", dir.join("users.xml").display()))?;
        let out_path = dir.join("stdout.log");
        let out = std::fs::File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?;
        let child = Command::new(exe)
            .arg(format!("--config-file={}", cfg.display()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!("starting {} --config-file={}", exe.display(), cfg.display())
            })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the HTTP client's runtime")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Below the server's keep-alive timeout, so a pooled connection is never one
            // the server is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        let mut ch = ClickHouse {
            child,
            errors: dir.join("server.err.log"),
            url: format!("http://127.0.0.1:{http_port}"),
            version: String::new(),
            rt,
            client,
        };
        ch.wait_ready(&out_path)?;
        ch.version = ch.query("SELECT version()")?.trim().to_string();
        Ok(ch)
    }

    /// Waits until `/ping` answers, failing with the server's output if it exits first.
    fn wait_ready(&mut self, out: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let output = |errors: &Path| {
            format!(
                "{}{}",
                std::fs::read_to_string(out).unwrap_or_default(),
                std::fs::read_to_string(errors).unwrap_or_default()
            )
        };
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "clickhouse-server exited ({status}) while starting; its output:\n{}",
                    output(&self.errors)
                );
            }
            if let Ok(body) = self.call(http::Method::GET, "/ping", Bytes::new())
                && body.starts_with(b"Ok.")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "clickhouse-server did not answer {}/ping within {START_TIMEOUT:?}; its output:\n{}",
                    self.url,
                    output(&self.errors)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP call; the body of a 200 answer, else an error with the server's message.
    fn call(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
    ) -> anyhow::Result<Bytes> {
        let uri = format!("{}{path_and_query}", self.url);
        let req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Full::new(body))
            .context("building a request")?;
        self.rt.block_on(async {
            let res = tokio::time::timeout(CALL_TIMEOUT, async {
                let res = self.client.request(req).await?;
                let status = res.status();
                let body = res.into_body().collect().await?.to_bytes();
                anyhow::Ok((status, body))
            })
            .await
            .with_context(|| format!("no answer from ClickHouse within {CALL_TIMEOUT:?}"))??;
            if res.0 != http::StatusCode::OK {
                bail!(
                    "ClickHouse answered {}: {}",
                    res.0,
                    String::from_utf8_lossy(&res.1).trim()
                );
            }
            Ok(res.1)
        })
    }

    /// Runs one statement (sent as the request body) and returns its output.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        let out = self
            .call(http::Method::POST, "/", Bytes::from(sql.to_string()))
            .with_context(|| format!("ClickHouse: {}", first_line(sql)))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs `sql` (an `INSERT … FORMAT …`) with `data` as its rows; returns once the server
    /// has acknowledged the insert.
    pub fn insert(&self, sql: &str, data: Vec<u8>) -> anyhow::Result<()> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", sql)
            .finish();
        self.call(http::Method::POST, &format!("/?{q}"), Bytes::from(data))
            .with_context(|| format!("ClickHouse: {}", first_line(sql)))?;
        Ok(())
    }

    /// CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        crate::server_proc::cpu_seconds(Some(self.child.id()))
    }

    /// Lines of the server's error log (it logs only warnings and errors there).
    pub fn problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.errors)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("<Error>"))
            .map(str::to_string)
            .collect()
    }

    /// Kills and reaps the server.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first line of `sql`, for error messages.
fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql)
}

/// `s` as a ClickHouse string literal.
pub(crate) fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_in_its_directory_on_loopback() {
        let c = config(Path::new("/d"), 1000, 2000);
        assert!(c.contains("<listen_host>127.0.0.1</listen_host>"));
        assert!(c.contains("<http_port>1000</http_port>"));
        assert!(c.contains("<tcp_port>2000</tcp_port>"));
        assert!(c.contains("<path>/d/data/</path>"));
        assert!(c.contains("<users_config>/d/users.xml</users_config>"));
        assert!(USERS.contains("<ip>127.0.0.1</ip>"));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(literal("ns-1"), "'ns-1'");
    }
}
