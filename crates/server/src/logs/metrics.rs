//! The management plane's Prometheus metrics for log ingest.

use cattery_api::logs::LogType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set `{type, cluster}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    /// Log type.
    pub r#type: String,
    /// Cluster name.
    pub cluster: String,
}

/// Label set `{cluster}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    /// Cluster name.
    pub cluster: String,
}

/// Counters per log type and cluster, and the ingest latency.
pub struct IngestMetrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    stored: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    ingest_seconds: Histogram,
    audit_backlog: Gauge,
    audit_dropped: Counter,
    streams_refused: Family<ClusterLabel, Counter>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cattery_logs");
        let received = Family::<Labels, Counter>::default();
        let stored = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let duplicates = Family::<Labels, Counter>::default();
        let ingest_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "records_received",
            "Log records received from agents",
            received.clone(),
        );
        registry.register(
            "records_stored",
            "Log records durably stored",
            stored.clone(),
        );
        registry.register(
            "records_rejected",
            "Log records rejected as malformed",
            rejected.clone(),
        );
        registry.register(
            "records_duplicate",
            "Resent log records recognised and stored once",
            duplicates.clone(),
        );
        registry.register(
            "ingest_batch_seconds",
            "Time from a batch arriving to it being durable in the store",
            ingest_seconds.clone(),
        );
        let audit_backlog = Gauge::default();
        let audit_dropped = Counter::default();
        registry.register(
            "audit_backlog_events",
            "The management plane's own audit events journaled but not yet searchable",
            audit_backlog.clone(),
        );
        registry.register(
            "audit_dropped_events",
            "The management plane's own audit events lost (queue full or journal not writable)",
            audit_dropped.clone(),
        );
        let streams_refused = Family::<ClusterLabel, Counter>::default();
        registry.register(
            "streams_refused",
            "Batches refused because their stream id belongs to another cluster (by the refused cluster)",
            streams_refused.clone(),
        );
        IngestMetrics {
            registry,
            streams_refused,
            audit_backlog,
            audit_dropped,
            received,
            stored,
            rejected,
            duplicates,
            ingest_seconds,
        }
    }
}

fn labels(t: LogType, cluster: &str) -> Labels {
    Labels {
        r#type: t.as_str().into(),
        cluster: cluster.into(),
    }
}

impl IngestMetrics {
    /// Counts received records.
    pub fn received(&self, t: LogType, cluster: &str, n: u64) {
        self.received.get_or_create(&labels(t, cluster)).inc_by(n);
    }
    /// Counts stored records.
    pub fn stored(&self, t: LogType, cluster: &str, n: u64) {
        self.stored.get_or_create(&labels(t, cluster)).inc_by(n);
    }
    /// Counts rejected records.
    pub fn rejected(&self, t: LogType, cluster: &str, n: u64) {
        self.rejected.get_or_create(&labels(t, cluster)).inc_by(n);
    }
    /// Counts duplicates.
    pub fn duplicates(&self, t: LogType, cluster: &str, n: u64) {
        self.duplicates.get_or_create(&labels(t, cluster)).inc_by(n);
    }
    /// Observes one batch's ingest time.
    pub fn ingest_time(&self, seconds: f64) {
        self.ingest_seconds.observe(seconds);
    }
    /// Sets how many of the management plane's audit events are not yet searchable.
    pub fn audit_backlog(&self, events: u64) {
        self.audit_backlog.set(events.min(i64::MAX as u64) as i64);
    }
    /// Counts lost audit events of the management plane.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }
    /// Counts a batch of `cluster` refused because another cluster owns its stream id.
    pub fn stream_refused(&self, cluster: &str) {
        self.streams_refused
            .get_or_create(&ClusterLabel {
                cluster: cluster.into(),
            })
            .inc();
    }
    /// Text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
