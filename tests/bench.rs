//! Smoke tests of `cattery-bench` (crates/bench): with tiny sizes, every measurement of
//! `tunnel` (with its haproxy baseline when haproxy is installed), `idle`, `rbac` and
//! `logstore` (with its ClickHouse peer when clickhouse-server is installed) runs end to end
//! (real `cattery server` process, agent, simulator, TLS, haproxy, ClickHouse) and is
//! reported without errors. They check that the benches work, not how fast anything is —
//! the numbers belong in docs/benchmarks.md, not in assertions.
//!
//! `tunnel` and `idle` start the `cattery` binary found next to `cattery-bench` (both are
//! built into the same target directory by `cargo nextest run --workspace`).

use std::process::Command;

/// A fresh directory for one test; kept for inspection when `CATTERY_KEEP_TEST_DIRS` is set.
fn test_dir() -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("cattery-bench-test-");
    if std::env::var_os("CATTERY_KEEP_TEST_DIRS").is_some() {
        b.disable_cleanup(true);
    }
    b.tempdir().unwrap()
}

/// Runs `cattery-bench ARGS` in `dir` and returns its report (stdout), failing with stderr.
fn bench(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cattery-bench"))
        .args(args)
        .env("TMPDIR", dir)
        .output()
        .expect("running cattery-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cattery-bench {} failed:\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Whether the haproxy baseline ran; when it could not for want of haproxy, says so
/// loudly, and fails under CI (which installs haproxy), so a skipped comparison never
/// passes there unnoticed.
fn haproxy_ran(report: &str) -> bool {
    if !report.contains("Peer baseline: none") {
        return true;
    }
    assert!(
        report.contains("not found"),
        "the baseline was left out for another reason than a missing haproxy:\n{report}"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but haproxy is not installed, so the haproxy baseline was not tested \
         (install it: apt-get install -y haproxy):\n{report}"
    );
    eprintln!(
        "NOT TESTED: haproxy is not installed, so the haproxy baseline of `cattery-bench tunnel` \
         was not run (apt-get install -y haproxy); under CI this is a failure"
    );
    false
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
fn bench_tunnel_measures_every_path_and_streams() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "tunnel",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--concurrency",
            "4",
            "--stream-bytes",
            "8MiB",
        ],
    );
    // Default upstream: HTTPS, kubectl's client on every path.
    let mut labels = vec!["direct (h2+TLS → simulator)", "tunnel (h2+TLS → server"];
    if haproxy_ran(&report) {
        labels.push("haproxy chain (h2+TLS → haproxy");
        for measure in [
            "requests/s",
            "added p50 latency µs",
            "added p99 latency µs",
            "stream MiB/s",
        ] {
            // Side by side at 4 workers and at 1 (the stream once): direct, haproxy,
            // tunnel, tunnel ÷ haproxy.
            let r = rows(&report, measure);
            let tables = if measure == "stream MiB/s" { 1 } else { 2 };
            assert_eq!(r.len(), tables, "{measure} rows in:\n{report}");
            assert_eq!(r[0].len(), 5, "{measure}: {:?}", r[0]);
            assert!(r[0][4].ends_with('×'), "{measure}: {:?}", r[0]);
        }
        assert!(report.contains("HAProxy version"), "{report}");
        assert!(
            !report.contains("haproxy log:"),
            "haproxy problems:\n{report}"
        );
    }
    for label in labels {
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
    assert!(
        !report.contains("WARN/ERROR line"),
        "server problems:\n{report}"
    );
}

#[test]
fn bench_idle_measures_memory_with_connected_clusters() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &["idle", "--clusters", "3", "--settle", "100ms"],
    );
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
        ],
    );
    assert!(
        report.contains("it needs the HTTPS simulator"),
        "the report must say why there is no haproxy row:\n{report}"
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
            "rbac",
            // A debug build on a loaded machine: a fresh server's first requests can take
            // hundreds of milliseconds, so the window is long enough for some to finish.
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--concurrency",
            "4",
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

#[test]
fn bench_logstore_ingests_and_queries_the_simulators_flows() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "logstore",
            "--records",
            "3000",
            "--clusters",
            "3",
            "--batch",
            "500",
            "--writers",
            "2",
            "--queries",
            "3",
        ],
    );
    assert!(
        report.contains(
            "records: 3000 flows from 3 clusters, batches of 500, 2 concurrent writer(s)"
        ),
        "{report}"
    );
    for line in [
        "ingest: ",
        "disk: ",
        "filtered search",
        "free-text search",
        "top-10 terms",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    // The queries ask for values taken from the generated records, so they find some.
    let matches = |what: &str| -> u64 {
        let l = report.lines().find(|l| l.starts_with(what)).unwrap();
        let n = l.split("avg ").nth(1).unwrap().split(' ').next().unwrap();
        n.parse().unwrap()
    };
    assert!(matches("free-text search") > 0, "{report}");
    if clickhouse_ran(&report) {
        // The peer got the same records and gave the same answers, and every measure has
        // both engines' number and their ratio.
        assert!(
            report.contains("Answers: the peer's answers equal the store's"),
            "{report}"
        );
        for measure in [
            "ingest flows/s",
            "engine CPU µs per flow (until the last call returned)",
            "bytes on disk per flow",
            "filtered search",
            "top-10 terms",
            "overview: flows over 24 h",
            "graph: cluster → source ns",
        ] {
            let r = rows(&report, measure);
            assert!(!r.is_empty(), "no {measure:?} row in:\n{report}");
            for row in &r {
                assert_eq!(row.len(), 4, "{row:?}");
                for cell in &row[1..3] {
                    let v: f64 = cell.replace(',', "").parse().unwrap_or(-1.0);
                    assert!(v > 0.0, "{measure}: {row:?}");
                }
                assert!(row[3].ends_with('×'), "{measure}: {row:?}");
            }
        }
        assert!(!report.contains("ClickHouse log:"), "{report}");
    }
}

/// Whether the ClickHouse peer of `logstore` ran; as [`haproxy_ran`], a missing
/// clickhouse-server is said loudly and fails under CI.
fn clickhouse_ran(report: &str) -> bool {
    if !report.contains("Peer: none") {
        return true;
    }
    assert!(
        report.contains("not found"),
        "the peer was left out for another reason than a missing clickhouse-server:\n{report}"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but clickhouse-server is not installed, so the ClickHouse peer was not \
         tested (install it: apt-get install -y clickhouse-server):\n{report}"
    );
    eprintln!(
        "NOT TESTED: clickhouse-server is not installed, so the ClickHouse peer of \
         `cattery-bench logstore` was not run (apt-get install -y clickhouse-server); under \
         CI this is a failure"
    );
    false
}

#[test]
fn bench_ui_signs_in_and_times_every_page() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "ui",
            "--clusters",
            "60",
            "--flows",
            "3000",
            "--flow-clusters",
            "3",
            "--connected",
            "2",
            "--requests",
            "2",
            "--warmup",
            "1",
        ],
    );
    // Every page and every API call behind them, each with its percentiles.
    for label in [
        "overview, all clusters",
        "clusters, first page",
        "clusters, filtered",
        "clusters, sorted by status",
        "service graph, the page",
        "service graph, its data",
        "list of every ManagedCluster",
        "overview: flows over time",
        "overview: top denied pairs",
        "graph: cluster × source ns",
    ] {
        let r = rows(&report, label);
        assert!(!r.is_empty(), "no {label:?} row in:\n{report}");
        let p50: f64 = r[0][2].replace(',', "").parse().unwrap();
        assert!(p50 > 0.0, "{label}: {:?}", r[0]);
    }
    // The seeding is reported: every flow stored, every cluster registered and connected.
    assert!(
        report.contains("Seeded: 3,000 flow records of 3 clusters"),
        "{report}"
    );
    assert!(report.contains("60 ManagedClusters registered"), "{report}");
    assert!(report.contains("2 with an agent connected"), "{report}");
    assert!(!report.contains("stopped with an error"), "{report}");
    assert_eq!(
        rows(&report, "overview, all clusters, last 24 h: p50").len(),
        1
    );
}

#[test]
fn bench_federation_times_apply_removal_and_label_changes() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "federation",
            "--clusters",
            "1,2",
            "--policies",
            "2",
            "--relabels",
            "1",
            "--settle",
            "200ms",
        ],
    );
    // One row per fleet size, with every time measured (p50 / p99 pairs, no "–").
    for size in ["1", "2"] {
        let r: Vec<_> = rows(&report, size)
            .into_iter()
            .filter(|r| r.len() == 8)
            .collect();
        assert_eq!(r.len(), 1, "size {size} in:\n{report}");
        for cell in &r[0][1..5] {
            let (p50, p99) = cell.split_once(" / ").unwrap();
            let (p50, p99): (f64, f64) = (
                p50.replace(',', "").parse().unwrap(),
                p99.replace(',', "").parse().unwrap(),
            );
            assert!(p50 > 0.0 && p99 >= p50, "size {size}: {:?}", r[0]);
        }
    }
    assert!(!report.contains("stopped with an error"), "{report}");
}

#[test]
fn bench_preview_times_a_policy_over_a_day_of_every_clusters_flows() {
    let dir = test_dir();
    let report = bench(
        dir.path(),
        &[
            "preview",
            "--clusters",
            "3",
            "--flows",
            "3000",
            "--requests",
            "2",
            "--warmup",
            "1",
        ],
    );
    // One row, every cluster evaluated and every seeded record counted (the bench checks
    // each answer and fails otherwise), with its percentiles.
    let r = rows(&report, "preview, 24 h");
    assert_eq!(r.len(), 1, "{report}");
    assert_eq!(&r[0][1..3], &["3", "3,000"], "{:?}", r[0]);
    let changed: u64 = r[0][3].replace(',', "").parse().unwrap();
    assert!(changed > 0, "{:?}", r[0]);
    let (p50, p99): (f64, f64) = (
        r[0][4].replace(',', "").parse().unwrap(),
        r[0][6].replace(',', "").parse().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{:?}", r[0]);
    assert!(
        report.contains("Seeded: 3,000 flow records of 3 clusters"),
        "{report}"
    );
    assert!(!report.contains("stopped with an error"), "{report}");
}
