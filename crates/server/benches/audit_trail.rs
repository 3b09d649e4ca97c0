//! What one audit event costs the management plane: encoding it as a journal line (the
//! journal thread's work, at normal priority), and indexing journal lines into the
//! embedded log store — parse, validate, build, index, commit — in batches of the sizes
//! the background indexer uses (its work, at the lowest priority while CPU is short).
//!
//! `cargo bench -p cattery-server --bench audit_trail`

use std::sync::Arc;

use cattery_logstore::{EmbeddedStore, Retention};
use cattery_server::bench_support::{AuditEvent, LogService, index_lines};
use divan::Bencher;
use time::OffsetDateTime;

fn main() {
    divan::main();
}

/// A typical proxied request, allowed.
fn proxy_event(i: usize) -> AuditEvent {
    AuditEvent {
        received: Some(OffsetDateTime::now_utc()),
        completed: Some(OffsetDateTime::now_utc()),
        user: Some(format!("user-{}", i % 50)),
        groups: vec!["dev".into(), "system:authenticated".into()],
        authenticated_by: Some("token:3f2a9c1b".into()),
        verb: "get".into(),
        request_uri: "/clusters/east/k8s/api/v1/namespaces/default/pods?limit=500".into(),
        source_ip: Some("10.1.2.3".parse().expect("an IP")),
        user_agent: Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abcdef".into()),
        api_group: Some("cattery.dev".into()),
        resource: Some("managedclusters".into()),
        subresource: Some("proxy".into()),
        name: Some("east".into()),
        namespace: None,
        allowed: true,
        reason:
            "allowed by ClusterRoleBinding \"dev-proxy\" of ClusterRole \"proxy\" to Group \"dev\""
                .into(),
        code: 200,
        stage: "ResponseStarted",
    }
}

/// Encoding one event as a journal line (what the journal thread does per request).
#[divan::bench]
fn journal_line(b: Bencher) {
    let ev = proxy_event(7);
    let mut buf = Vec::with_capacity(4096);
    b.bench_local(|| {
        buf.clear();
        ev.write_json(&mut buf).expect("encodable");
        buf.len()
    });
}

/// A whole batch of journal lines indexed (parsed, validated, indexed, committed,
/// fsynced); the reported throughput is events per second (wall time, indexing threads
/// included).
#[divan::bench(args = [500, 2_500, 10_000, 40_000], sample_count = 10, sample_size = 1)]
fn index_batch(b: Bencher, batch: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("a log store");
    let logs = LogService::new(Arc::new(store));
    let mut seq = 0u64;
    b.counter(divan::counter::ItemsCount::new(batch))
        .with_inputs(|| {
            (0..batch)
                .map(|i| {
                    let mut line = Vec::new();
                    proxy_event(i).write_json(&mut line).expect("encodable");
                    seq += 1;
                    (seq, line)
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|lines| index_lines(&logs, &lines).expect("stored"));
}
