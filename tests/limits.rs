//! End-to-end tests of the management plane's limits and privacy defaults: search
//! aggregation limits (400/429 with a Status naming the limit), secret query parameters
//! redacted in the audit trail, owner-only files in the data directory, and
//! `cattery cluster add --output-file`. Real `cattery` processes, real TLS, curl.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Map, Value, json};

/// POSTs `body` (through a file: large bodies do not fit in one argument) to the audit
/// search; returns (parsed body, code, response headers).
fn search_audit(server: &Server, body: &Value) -> (Value, u16, String) {
    let file = server.dir.join(format!("body-{}.json", free_port()));
    std::fs::write(&file, body.to_string()).unwrap();
    let headers = server.dir.join(format!("headers-{}.txt", free_port()));
    let (res, code) = server.curl(&[
        "/apis/logs.cattery.dev/v1/audit/search",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-D",
        headers.to_str().unwrap(),
        "--data-binary",
        &format!("@{}", file.display()),
    ]);
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (
        serde_json::from_str(&res).unwrap_or(Value::String(res)),
        code,
        headers,
    )
}

fn sibling_terms(n: usize) -> Value {
    let aggs: Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("a{i}"),
                json!({"terms": {"field": "verb", "size": 10}}),
            )
        })
        .collect();
    json!({"clusters": ["*"], "size": 0, "aggs": aggs})
}

/// Waits until the management plane's own audit trail holds an event whose requestURI
/// contains `needle`; returns the hits' JSON.
fn wait_audit(server: &Server, needle: &str) -> Value {
    wait_for(
        &format!("an audit event with {needle:?}"),
        Duration::from_secs(30),
        || {
            let (v, code, _) =
                search_audit(server, &json!({"clusters": ["cluster"], "size": 1000}));
            (code == 200
                && v["hits"]["hits"].as_array()?.iter().any(|h| {
                    h["_source"]["requestURI"]
                        .as_str()
                        .is_some_and(|u| u.contains(needle))
                }))
            .then_some(v)
        },
    )
}

#[test]
fn thousands_of_aggregations_get_400_naming_the_limit_and_a_dashboard_s_worth_works() {
    let dir = test_dir();
    let server = Server::start(dir.path());
    wait_audit(&server, "/apis/logs.cattery.dev/v1/audit/search");

    let (v, code, _) = search_audit(&server, &sibling_terms(5000));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["reason"], "BadRequest");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("5000 aggregations") && msg.contains("limit of 100"),
        "{msg}"
    );

    // Nested aggregations count too.
    let nested = json!({"clusters": ["*"], "size": 0, "aggs": {
        "outer": {"terms": {"field": "verb"}, "aggs": sibling_terms(100)["aggs"].clone()}
    }});
    let (v, code, _) = search_audit(&server, &nested);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("101 aggregations"),
        "{v}"
    );

    // At the limit the search is answered.
    let (v, code, _) = search_audit(&server, &sibling_terms(100));
    assert_eq!(code, 200, "{v}");
    assert!(
        !v["aggregations"]["a99"]["buckets"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{v}"
    );
}

/// Sends `n` copies of the audit search `body` at once, multiplexed on one HTTP/2
/// connection (`curl --parallel`), so they reach the server together; returns each answer's
/// (parsed body, code, headers).
fn parallel_searches(server: &Server, body: &Value, n: usize) -> Vec<(Value, u16, String)> {
    let d = server.dir.join(format!("parallel-{}", free_port()));
    std::fs::create_dir_all(&d).unwrap();
    let body_file = d.join("body.json");
    std::fs::write(&body_file, body.to_string()).unwrap();
    let mut entries = Vec::new();
    for i in 0..n {
        entries.push(format!(
            "url = \"{}/apis/logs.cattery.dev/v1/audit/search\"\nrequest = \"POST\"\n\
             header = \"Authorization: Bearer {}\"\nheader = \"Content-Type: application/json\"\n\
             data-binary = \"@{}\"\ncacert = \"{}\"\nhttp2\nmax-time = 30\n\
             output = \"{}\"\ndump-header = \"{}\"\n",
            server.url,
            server.token,
            body_file.display(),
            server.ca.display(),
            d.join(format!("out-{i}")).display(),
            d.join(format!("headers-{i}")).display(),
        ));
    }
    // `next` separates transfers (a trailing one would start an empty transfer).
    std::fs::write(d.join("curl.cfg"), entries.join("next\n")).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
        ])
        .arg(n.to_string())
        .arg("-K")
        .arg(d.join("curl.cfg"))
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = (0..n)
        .map(|i| {
            let headers = std::fs::read_to_string(d.join(format!("headers-{i}"))).unwrap();
            let code: u16 = headers
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {headers:?}"));
            let text = std::fs::read_to_string(d.join(format!("out-{i}"))).unwrap();
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (v, code, headers)
        })
        .collect();
    std::fs::remove_dir_all(&d).unwrap();
    answers
}

#[test]
fn searches_beyond_the_server_wide_memory_budget_get_429_with_retry_after() {
    let dir = test_dir();
    // A budget of one search's share (256 MiB): two aggregating searches at once exceed it.
    let server = Server::start_with(
        dir.path(),
        "server",
        free_port(),
        free_port(),
        &[],
        &[("CATTERY_SEARCH_MEMORY_BUDGET_MIB", "256")],
    );
    wait_audit(&server, "/apis/logs.cattery.dev/v1/audit/search");
    let body = sibling_terms(100);
    let (mut ok, mut busy) = (0, 0);
    // Bounded: rounds of 16 simultaneous searches until both answers were seen.
    for round in 1..=20 {
        for (v, code, headers) in parallel_searches(&server, &body, 16) {
            match code {
                200 => {
                    assert!(v["aggregations"]["a99"].is_object(), "{v}");
                    ok += 1;
                }
                429 => {
                    assert_eq!(v["kind"], "Status", "{v}");
                    assert_eq!(v["code"], 429, "{v}");
                    assert_eq!(v["reason"], "TooManyRequests", "{v}");
                    assert_eq!(
                        v["message"],
                        "the log store is running as many aggregating searches as its search \
                         memory budget of 256 MiB allows (256 MiB each); retry shortly",
                        "{v}"
                    );
                    let retry: Vec<&str> = headers
                        .lines()
                        .filter_map(|l| l.strip_prefix("retry-after: "))
                        .map(str::trim)
                        .collect();
                    assert_eq!(retry, ["1"], "{headers}");
                    busy += 1;
                }
                other => panic!("unexpected {other}: {v}"),
            }
        }
        if ok > 0 && busy > 0 {
            eprintln!("round {round}: {ok} × 200, {busy} × 429");
            break;
        }
    }
    assert!(ok > 0 && busy > 0, "answers: {ok} × 200, {busy} × 429");
    // A search without aggregations reserves nothing and is never turned away.
    let (v, code, _) = search_audit(&server, &json!({"clusters": ["cluster"], "size": 1}));
    assert_eq!(code, 200, "{v}");
}

#[test]
fn secret_query_parameters_are_redacted_in_the_audit_trail() {
    let dir = test_dir();
    let server = Server::start(dir.path());
    let (_, code) = server.curl(&[
        "/apis/cattery.dev/v1/managedclusters?access_token=supersecret123&limit=5&Password=hunter2",
    ]);
    assert_eq!(code, 200);
    let v = wait_audit(&server, "limit=5");
    let text = v.to_string();
    assert!(!text.contains("supersecret123"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let uri = v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["_source"]["requestURI"].as_str())
        .find(|u| u.contains("limit=5"))
        .unwrap()
        .to_string();
    assert_eq!(
        uri,
        "/apis/cattery.dev/v1/managedclusters?access_token=REDACTED&limit=5&Password=REDACTED"
    );
    // Searching for the secret finds nothing.
    let (v, code, _) = search_audit(
        &server,
        &json!({"clusters": ["*"], "query": "supersecret123"}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["hits"]["total"]["value"], 0, "{v}");
}

fn modes_under(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        out.push((e.path().display().to_string(), meta.is_dir(), mode));
        if meta.is_dir() {
            modes_under(&e.path(), out);
        }
    }
}

#[test]
fn everything_in_the_data_dir_is_owner_only_after_logs_are_ingested() {
    let dir = test_dir();
    let server = Server::start(dir.path());
    // The server's own audit events are ingested into the log store.
    for _ in 0..5 {
        server.curl(&["/apis/cattery.dev/v1/managedclusters"]);
    }
    wait_audit(&server, "/apis/cattery.dev/v1/managedclusters");
    let mut all = Vec::new();
    modes_under(&server.data, &mut all);
    assert!(
        all.iter().any(|(p, _, _)| p.contains("/logs/audit-")),
        "no log index in {all:?}"
    );
    assert!(all.iter().any(|(p, _, _)| p.ends_with("state.db-wal")));
    let data_mode = std::fs::metadata(&server.data)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(data_mode, 0o700);
    for (path, is_dir, mode) in &all {
        let want = if *is_dir {
            0o700
        } else if path.ends_with(".crt") {
            // Certificates are public.
            0o644
        } else {
            0o600
        };
        assert_eq!(*mode, want, "{path} has mode {mode:o}");
    }
}

#[test]
fn cluster_add_writes_the_manifest_to_a_private_file_and_does_not_overwrite() {
    let dir = test_dir();
    let server = Server::start(dir.path());
    let file = dir.path().join("agent-east.yaml");
    let out = server.cli(&[
        "cluster",
        "add",
        "east",
        "--format",
        "agent-config",
        "--output-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the key went to stdout too");
    let manifest = std::fs::read_to_string(&file).unwrap();
    assert!(manifest.contains("PRIVATE KEY"), "{manifest}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An existing file is refused before a cluster is registered.
    let out = server.cli(&[
        "cluster",
        "add",
        "west",
        "--output-file",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), manifest);
    let (_, code) = server.curl(&["/apis/cattery.dev/v1/managedclusters/west"]);
    assert_eq!(code, 404);
    // --force replaces it.
    let out = server.cli(&[
        "cluster",
        "add",
        "west",
        "--format",
        "agent-config",
        "--output-file",
        file.to_str().unwrap(),
        "--force",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read_to_string(&file).unwrap(), manifest);
    let help = String::from_utf8(server.cli(&["cluster", "add", "--help"]).stdout).unwrap();
    assert!(help.contains("private key"), "{help}");
}

#[test]
fn oversized_headers_over_http2_get_431_with_a_status() {
    let dir = test_dir();
    let server = Server::start(dir.path());
    // Many small fields: under curl's own 64 KiB send limit, over the server's 64 KiB
    // (HTTP/2 counts 32 bytes per field on top of name and value).
    let hdrs = dir.path().join("headers.txt");
    let text: String = (0..1500).map(|i| format!("X-A{i}: yyyyyyyyyy\n")).collect();
    std::fs::write(&hdrs, text).unwrap();
    let (body, code) = server.curl(&["/version", "--http2", "-H", &format!("@{}", hdrs.display())]);
    assert_eq!(code, 431, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("no Status: {body:?}"));
    assert_eq!(v["reason"], "RequestHeaderFieldsTooLarge", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("65536-byte limit"),
        "{v}"
    );
    // Ordinary requests still work on HTTP/2.
    let (_, code) = server.curl(&["/version", "--http2"]);
    assert_eq!(code, 200);
}

/// Sends one HTTP/2 GET of `path` with a header `x-big` of `value_len` bytes (a single
/// header block beyond 64 KiB, which curl will not send) over TLS; returns (status, body).
fn h2_get_with_big_header(server: &Server, path: &str, value_len: usize) -> (u16, String) {
    use http_body_util::BodyExt;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&server.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.api_port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .max_header_list_size(4 << 20)
                .handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("{}{path}", server.url))
            .header("authorization", format!("Bearer {}", server.token))
            .header("x-big", "y".repeat(value_len))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("an answer within 20 s")
            .expect("an HTTP answer, not a refused stream");
        let code = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn a_header_block_over_64_kib_through_the_proxy_gets_431_over_http2() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let sim = Sim::start(d, "alpha", None);
    let cfg = server.add_cluster("alpha");
    let _agent = start_agent(d, "alpha", &cfg, &sim.url, &[]);
    server.wait_connected("alpha", "True");
    let path = "/clusters/alpha/k8s/api/v1/namespaces/default/configmaps";
    // One 100 KiB header: a single header block over 64 KiB (within h2's own 1 MiB).
    let (code, body) = h2_get_with_big_header(&server, path, 100 << 10);
    assert_eq!(code, 431, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("no Status: {body:?}"));
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["code"], 431, "{v}");
    assert_eq!(v["reason"], "RequestHeaderFieldsTooLarge", "{v}");
    let size = 100 * 1024 + "x-big".len() + 32;
    let message = v["message"].as_str().unwrap();
    assert!(
        message.starts_with("request headers of ")
            && message.ends_with(" bytes are larger than the 65536-byte limit"),
        "{v}"
    );
    let reported: usize = message["request headers of ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reported > size && reported < size + 1024,
        "the size counts the big header and little else: {v}"
    );
    // The same request with a small header goes through the proxy to the cluster.
    let (code, body) = h2_get_with_big_header(&server, path, 100);
    assert_eq!(code, 200, "{body}");
}

/// Sends `raw` (an HTTP/1.1 request with its body) over TLS to the API with openssl and
/// returns everything the server answered.
fn raw_tls(server: &Server, raw: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("timeout")
        .args([
            "20",
            "openssl",
            "s_client",
            "-quiet",
            "-ign_eof",
            "-connect",
            &format!("127.0.0.1:{}", server.api_port),
            "-CAfile",
            server.ca.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_malformed_chunked_body_through_the_proxy_gets_400_naming_the_body() {
    let dir = test_dir();
    let d = dir.path();
    let server = Server::start(d);
    let sim = Sim::start(d, "alpha", None);
    let cfg = server.add_cluster("alpha");
    let _agent = start_agent(d, "alpha", &cfg, &sim.url, &[]);
    server.wait_connected("alpha", "True");
    let head = format!(
        "POST /clusters/alpha/k8s/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.token
    );
    // A chunk size that is not hexadecimal.
    let answer = raw_tls(
        &server,
        &format!("{head}5\r\n{{\"a\":\r\nZZ\r\nbroken\r\n0\r\n\r\n"),
    );
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 400"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("{answer}"));
    assert_eq!(v["kind"], "Status");
    assert!(
        v["message"].as_str().unwrap().contains("request body"),
        "{v}"
    );
    // A well-formed chunked body still goes through.
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"chunked"}}"#;
    let answer = raw_tls(
        &server,
        &format!("{head}{:x}\r\n{cm}\r\n0\r\n\r\n", cm.len()),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
