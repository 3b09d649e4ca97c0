//! The peer baseline of `cattery-bench tunnel`: two chained haproxy instances that give a
//! request the same three TLS legs as the tunnel path, against the same HTTPS simulator.
//!
//! ```text
//! tunnel:  client ─TLS→ cattery server ─TLS (tunnel)→ agent ─TLS→ simulator
//! haproxy: client ─TLS→ haproxy front  ─TLS (h2)→  haproxy back ─TLS (h2)→ simulator
//! ```
//!
//! haproxy is a mature, widely deployed proxy anyone can install (`apt-get install
//! haproxy`), so the ratio of the tunnel's numbers to these is reproducible elsewhere, and
//! says how far the tunnel is from what a tuned proxy does on the same machine. Both
//! instances run with haproxy's defaults (as many threads as cores, HTTP/2 windows of
//! 64 KiB) apart from the timeouts a config must name.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// How long an instance may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Directories searched after `$PATH` (Debian installs haproxy in /usr/sbin, which is not
/// on an unprivileged user's `$PATH`).
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// The haproxy executable: `name` if it is a path, else the first `name` on `$PATH` or in
/// [`SBIN_DIRS`].
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Two running haproxy instances, killed when dropped.
pub(crate) struct Chain {
    procs: Vec<(Child, PathBuf)>,
    /// The front instance's URL (`https://127.0.0.1:PORT`).
    pub url: String,
    /// PEM of the CA of both instances' certificate.
    pub ca_pem: String,
    /// `haproxy -v`'s first line.
    pub version: String,
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes `contents` to `path` with mode `mode`.
fn write(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A CA and one serving certificate for localhost/127.0.0.1: (CA PEM, certificate + key PEM).
fn certificates() -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "cattery-bench haproxy CA");
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "cattery-bench haproxy");
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((ca_pem, format!("{}{}", cert.pem(), key.serialize_pem())))
}

/// One instance's configuration: TLS (h2 or HTTP/1.1 by ALPN) in on `port`, h2 over TLS
/// out to `127.0.0.1:next_port`, verifying it against `next_ca` for the name localhost.
fn config(port: u16, pem: &Path, next_port: u16, next_ca: &Path) -> String {
    format!(
        "global\n\
         \x20   maxconn 4096\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   timeout http-request 10s\n\
         frontend front\n\
         \x20   bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1\n\
         \x20   default_backend next\n\
         backend next\n\
         \x20   server next 127.0.0.1:{next_port} ssl verify required ca-file {next_ca} verifyhost localhost sni str(localhost) alpn h2\n",
        pem = pem.display(),
        next_ca = next_ca.display(),
    )
}

impl Chain {
    /// Starts the back instance (toward the simulator at `sim_url`, trusting `sim_ca`) and
    /// the front one, with their files in `dir/haproxy`, and waits until both listen.
    pub async fn start(
        exe: &Path,
        dir: &Path,
        sim_url: &str,
        sim_ca: &Path,
    ) -> anyhow::Result<Chain> {
        let sim_port: u16 = sim_url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
            .with_context(|| format!("no port in the simulator's URL {sim_url:?}"))?;
        let version = Command::new(exe)
            .arg("-v")
            .output()
            .with_context(|| format!("running {} -v", exe.display()))?;
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("haproxy (version unknown)")
            .to_string();
        let dir = dir.join("haproxy");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca_pem, cert_and_key) = certificates()?;
        let (ca_file, pem_file) = (dir.join("ca.crt"), dir.join("server.pem"));
        write(&ca_file, &ca_pem, 0o644)?;
        write(&pem_file, &cert_and_key, 0o600)?;
        let (front_port, back_port) = (free_port()?, free_port()?);
        let mut chain = Chain {
            procs: vec![],
            url: format!("https://127.0.0.1:{front_port}"),
            ca_pem,
            version,
        };
        for (name, port, next_port, next_ca) in [
            ("back", back_port, sim_port, sim_ca),
            ("front", front_port, back_port, ca_file.as_path()),
        ] {
            let cfg = dir.join(format!("{name}.cfg"));
            write(&cfg, &config(port, &pem_file, next_port, next_ca), 0o644)?;
            let log = dir.join(format!("{name}.log"));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new(exe)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting {} -f {}", exe.display(), cfg.display()))?;
            chain.procs.push((child, log.clone()));
            chain.wait_listening(port, &log).await?;
        }
        Ok(chain)
    }

    /// Waits until 127.0.0.1:`port` accepts connections, failing with the log if the
    /// last instance started exits first.
    async fn wait_listening(&mut self, port: u16, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some((child, _)) = self.procs.last_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "haproxy exited ({status}) while starting; its output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "haproxy did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}; its output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU seconds both instances have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.procs
            .iter()
            .map(|(c, _)| crate::server_proc::cpu_seconds(Some(c.id())))
            .sum()
    }

    /// Output lines of either instance that report a problem (haproxy writes nothing else
    /// in the foreground without a `log` directive).
    pub fn problems(&self) -> Vec<String> {
        self.procs
            .iter()
            .flat_map(|(_, log)| {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("[ALERT]") || l.contains("[WARNING]"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Kills and reaps both instances.
    pub fn stop(&mut self) {
        for (c, _) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_chain_tls_in_to_h2_tls_out() {
        let c = config(1000, Path::new("/d/s.pem"), 2000, Path::new("/d/ca.crt"));
        assert!(c.contains("bind 127.0.0.1:1000 ssl crt /d/s.pem alpn h2,http/1.1"));
        assert!(c.contains(
            "server next 127.0.0.1:2000 ssl verify required ca-file /d/ca.crt verifyhost localhost"
        ));
        assert!(c.contains("alpn h2\n"));
    }

    #[test]
    fn an_explicit_path_is_taken_only_if_it_exists() {
        assert_eq!(find("/nonexistent/haproxy"), None);
        assert_eq!(find("/bin/sh"), Some(PathBuf::from("/bin/sh")));
    }
}
