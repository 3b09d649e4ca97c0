//! Smoke tests of the benchmark commands: with tiny sizes, every measurement of
//! `cattery bench tunnel` and `cattery bench rbac` runs end to end (real server process,
//! agent, simulator, TLS) and is reported without errors. They check that the benches work,
//! not how fast anything is — the numbers belong in docs/benchmarks.md, not in assertions.

mod common;

use std::process::Command;

use common::{bin, test_dir};

/// Runs `cattery ARGS` in `dir` and returns its report (stdout), failing with stderr.
fn bench(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("TMPDIR", dir)
        .output()
        .expect("running cattery");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cattery {} failed:\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The rows of the markdown table whose first cell starts with `label`.
fn rows<'a>(report: &'a str, label: &str) -> Vec<Vec<&'a str>> {
    report
        .lines()
        .filter(|l| l.starts_with(&format!("| {label}")))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

#[test]
fn bench_tunnel_measures_both_paths_streams_and_idle_memory() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "bench",
            "tunnel",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--concurrency",
            "4",
            "--stream-bytes",
            "8MiB",
            "--idle-clusters",
            "3",
            "--settle",
            "100ms",
        ],
    );
    // Default upstream: HTTPS, kubectl's client on both paths.
    for label in ["direct (h2+TLS → simulator)", "tunnel (h2+TLS → server"] {
        let r = rows(&report, label);
        // Rates at 4 workers and at 1, then the stream.
        assert_eq!(r.len(), 3, "{label} rows in:\n{report}");
        for row in &r[..2] {
            assert_eq!(row.last(), Some(&"0"), "errors in {row:?}:\n{report}");
            let rps: f64 = row[2].replace(',', "").parse().unwrap();
            assert!(rps > 0.0, "no requests in {row:?}");
        }
        let mibs: f64 = r[2][1].replace(',', "").parse().unwrap();
        assert!(mibs > 0.0, "no stream in {:?}", r[2]);
    }
    // Idle memory: the baseline and 3 connected clusters, every agent connected.
    let idle: Vec<_> = report
        .lines()
        .filter(|l| l.starts_with("| 0 |") || l.starts_with("| 3 |"))
        .collect();
    assert_eq!(idle.len(), 2, "idle-memory rows in:\n{report}");
    assert!(!report.contains("stopped with an error"), "{report}");
    assert!(
        !report.contains("WARN/ERROR line"),
        "server problems:\n{report}"
    );
}

#[test]
fn bench_tunnel_against_a_plain_http_upstream() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "bench",
            "tunnel",
            "--upstream",
            "http",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--concurrency",
            "1",
            "--stream-bytes",
            "4MiB",
            "--skip-idle",
        ],
    );
    let direct = rows(&report, "direct (HTTP/1.1 → simulator)");
    let tunnel = rows(
        &report,
        "tunnel (h2+TLS → server → tunnel → agent → HTTP/1.1",
    );
    assert_eq!((direct.len(), tunnel.len()), (2, 2), "{report}");
    assert_eq!(direct[0].last(), Some(&"0"), "{report}");
    assert_eq!(tunnel[0].last(), Some(&"0"), "{report}");
}

#[test]
fn bench_rbac_measures_every_mode_and_waits_for_the_audit_trail() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "bench",
            "rbac",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--rounds",
            "1",
            "--roles",
            "5",
            "--bindings",
            "10",
        ],
    );
    for label in [
        "off (authentication only)",
        "audit only (authentication + audit, no RBAC decision)",
        "on (authentication + RBAC + audit)",
    ] {
        let r = rows(&report, label);
        assert_eq!(r.len(), 1, "{label} in:\n{report}");
        let rps: f64 = r[0][1].replace(',', "").parse().unwrap();
        assert!(rps > 0.0, "no requests in {:?}", r[0]);
        // Errors column.
        assert_eq!(r[0][8], "0", "errors in {:?}", r[0]);
    }
    assert!(report.contains("RBAC on ≥ 90% of off"), "{report}");
    assert!(report.contains("the RBAC decision alone"), "{report}");
}
