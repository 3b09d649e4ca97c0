//! Browser test of the Manager UI's "Sign in with SSO" and session expiry: a real server
//! configured with a test OpenID Connect issuer (`tests/ui/oidc-issuer.mjs`, a separate
//! node process implementing the code flow with PKCE and ES256-signed ID tokens), driven
//! by Debian's chromium through Playwright (`tests/ui/sso.spec.mjs`).
//!
//! Needs `/usr/bin/chromium`, `node`, kubectl and `npm ci` in `tests/ui`; without them the
//! test fails saying what to install.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The UI's idle timeout for this server, short so that the spec can wait it out.
const IDLE: Duration = Duration::from_secs(6);

/// The test issuer's process, killed on drop.
struct Issuer {
    child: Child,
    url: String,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_issuer(client_id: &str, redirect: &str) -> Issuer {
    let mut child = Command::new("node")
        .arg(repo().join("tests/ui/oidc-issuer.mjs"))
        .args([client_id, redirect])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the test issuer");
    let stdout = child.stdout.take().expect("issuer stdout");
    // The first line says where it listens; bounded by the reader thread's timeout below.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the test issuer printed its address");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("issuer address line");
    Issuer {
        url: v["issuer"].as_str().expect("issuer url").to_string(),
        child,
    }
}

#[test]
fn sign_in_with_sso_in_a_real_browser() {
    require_browser_tooling("sign_in_with_sso_in_a_real_browser");
    let dir = test_dir();
    let d = dir.path();
    let api_port = free_port();
    let redirect = format!("https://127.0.0.1:{api_port}/ui/sign-in/sso/callback");
    let issuer = start_issuer("cattery-ui", &redirect);
    let idle = format!("{}s", IDLE.as_secs());
    let server = Server::start_with(
        d,
        "server",
        api_port,
        free_port(),
        &[
            "--oidc-issuer-url",
            &issuer.url,
            "--oidc-client-id",
            "cattery-ui",
            "--oidc-redirect-url",
            &redirect,
            "--ui-session-idle",
            &idle,
        ],
        &[],
    );
    run_browser_spec(
        &server,
        "sso.spec.mjs",
        &[
            ("UI_ISSUER", issuer.url.clone()),
            ("UI_IDLE_MS", IDLE.as_millis().to_string()),
        ],
        &[
            "ok sso sign-in",
            "ok sso replayed callback",
            "ok sso replayed code",
            "ok sso bad state",
            "ok sso access denied",
            "ok sso session ends with the id token",
            "ok sso refresh",
            "ok sso sign-out at the issuer",
            "ok idle session expiry",
            "ok keyboard cluster selector",
            "ok dark theme",
            "ok local times",
        ],
    );
    // The SSO sign-in went through the API's door as the mapped identity.
    wait_for(
        "the SSO sign-in's review audited as oidc:carol",
        Duration::from_secs(30),
        || {
            let out = server.cli_ok(&[
                "logs",
                "audit",
                "--cluster",
                "cluster",
                "--since",
                "10m",
                "--limit",
                "0",
                "-o",
                "ndjson",
                "--where",
                "user.username=oidc:carol",
            ]);
            out.lines()
                .any(|l| l.contains("selfsubjectreviews"))
                .then_some(())
        },
    );
    // Last, as it stops the server: a page open when the server goes away retries a bounded
    // number of times, then says the server is unreachable.
    run_browser_spec(
        &server,
        "unreachable.spec.mjs",
        &[("UI_SERVER_PID", server.proc.child.id().to_string())],
        &["ok server unreachable", "ok server unreachable graph"],
    );
}
