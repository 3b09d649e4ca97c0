//! What one audit event costs the management plane: building the `audit.k8s.io/v1`
//! record, and building + indexing + committing it in the embedded log store, in batches
//! of the sizes the writer sees at 2,000–40,000 requests/s (one batch every 250 ms).
//!
//! `cargo bench -p cattery-server --bench audit_trail`

use std::sync::Arc;

use cattery_api::logs::LogType;
use cattery_logstore::{EmbeddedStore, Retention};
use cattery_server::audit_trail::{AuditEvent, AuditWriter};
use cattery_server::logs::LogService;
use divan::Bencher;
use time::OffsetDateTime;

fn main() {
    divan::main();
}

/// A typical proxied request, allowed.
fn proxy_event(i: usize) -> AuditEvent {
    AuditEvent {
        received: Some(OffsetDateTime::now_utc()),
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

/// `to_record` + validation, per event.
#[divan::bench]
fn build_record(b: Bencher) {
    let ev = proxy_event(7);
    b.bench(|| {
        let mut r = ev.to_record(OffsetDateTime::now_utc());
        cattery_api::logs::validate(LogType::Audit, &mut r, "cluster").expect("valid");
        r
    });
}

/// A whole batch of events stored (built, indexed, committed, fsynced); the reported
/// throughput is events per second (wall time, indexing threads included).
#[divan::bench(args = [500, 2_500, 10_000], sample_count = 10, sample_size = 1)]
fn store_batch(b: Bencher, batch: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path(), Retention::default()).expect("a log store");
    let logs = LogService::new(Arc::new(store));
    let mut writer = AuditWriter::default();
    b.counter(divan::counter::ItemsCount::new(batch))
        .with_inputs(|| (0..batch).map(proxy_event).collect::<Vec<_>>())
        .bench_local_values(|batch| writer.store(&logs, batch));
}
