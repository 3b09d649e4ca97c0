//! Network-fault tests: the agent runs in its own network namespace joined to the host by a
//! veth pair; taking the link down makes the path silently drop packets (no RST, no FIN),
//! which only HTTP/2 keepalive pings can detect. Needs root and iproute2 (`ip netns`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A namespace + veth pair, removed on drop.
struct NetNs {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 `ip` is installed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    fn create() -> NetNs {
        let id = std::process::id() % 250 + 1;
        let name = format!("cattery-t{}", std::process::id());
        let host_if = format!("cth{}", std::process::id() % 100_000);
        let ns_if = format!("ctn{}", std::process::id() % 100_000);
        let host_ip = format!("10.231.{id}.1");
        let ns_ip = format!("10.231.{id}.2");
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Spawns `cattery ARGS` inside the namespace.
fn spawn_in(ns: &NetNs, dir: &std::path::Path, name: &str, args: &[&str]) -> Proc {
    let stderr = dir.join(format!("{name}.log"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, bin()])
        .args(args)
        .env("CATTERY_LOG", "info")
        .env_remove("HTTPS_PROXY")
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    Proc {
        child: cmd.spawn().unwrap(),
        stdout: dir.join(format!("{name}.out")),
        stderr,
        name: name.into(),
    }
}

#[test]
fn a_silently_dead_path_is_noticed_by_keepalive_and_the_agent_comes_back() {
    let dir = test_dir();
    let d = dir.path();
    let ns = NetNs::create();
    let (api, tunnel) = (free_port(), free_port());
    let data = d.join("server-data");
    let server_proc = Proc::spawn(
        d,
        "server",
        &[
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-addr",
            &format!("127.0.0.1:{api}"),
            "--tunnel-addr",
            &format!("{}:{tunnel}", ns.host_ip),
        ],
        &[],
    );
    let token = wait_for("admin.token", Duration::from_secs(20), || {
        std::fs::read_to_string(data.join("admin.token"))
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    let server = Server {
        proc: server_proc,
        dir: d.into(),
        ca: data.join("ca.crt"),
        data,
        api_port: api,
        tunnel_port: tunnel,
        url: format!("https://127.0.0.1:{api}"),
        token: token.trim().into(),
    };
    wait_for("the API", Duration::from_secs(20), || {
        (server.curl(&["/healthz"]).1 == 200).then_some(())
    });
    let cfg = server.add_cluster("zeta");
    let sim_port = free_port();
    let _sim = spawn_in(
        &ns,
        d,
        "sim-zeta",
        &[
            "sim-cluster",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--name",
            "zeta",
        ],
    );
    let agent = spawn_in(
        &ns,
        d,
        "agent-zeta",
        &[
            "agent",
            "--config",
            cfg.to_str().unwrap(),
            "--upstream",
            &format!("http://127.0.0.1:{sim_port}"),
            "--reconnect-max-delay",
            "2s",
        ],
    );
    server.wait_connected("zeta", "True");

    ns.link(false);
    let cut = Instant::now();
    wait_for(
        "the management plane to notice the dead tunnel",
        Duration::from_secs(40),
        || (server.connected("zeta") == "False").then_some(()),
    );
    eprintln!(
        "management plane noticed the dead path after {:?}",
        cut.elapsed()
    );
    wait_for(
        "the agent to notice the dead tunnel",
        Duration::from_secs(40),
        || agent.log().contains("tunnel lost").then_some(()),
    );
    eprintln!("agent noticed the dead path after {:?}", cut.elapsed());
    let (body, code) = server.curl(&["/clusters/zeta/k8s/api"]);
    assert_eq!(code, 503, "{body}");

    ns.link(true);
    server.wait_connected("zeta", "True");
    let (_, code) = server.curl(&["/clusters/zeta/k8s/api"]);
    assert_eq!(code, 200);
}
