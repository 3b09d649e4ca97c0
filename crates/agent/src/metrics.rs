//! The agent's Prometheus metrics (text format on `--metrics-addr`).

use std::sync::Arc;

use cattery_api::logs::LogType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::spool::Spool;

/// Label set `{type="flows"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Log type.
    pub r#type: String,
}

/// Counters and gauges of the agent's log pipeline.
pub struct Metrics {
    registry: Registry,
    records_read: Family<TypeLabel, Counter>,
    records_rejected: Family<TypeLabel, Counter>,
    records_shipped: Counter,
    spool_bytes: Gauge,
    spool_pending: Gauge,
    spool_quarantined: Gauge,
    spool_full: Gauge,
    spool_corrupt: [Counter; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cattery_agent");
        let records_read = Family::<TypeLabel, Counter>::default();
        let records_rejected = Family::<TypeLabel, Counter>::default();
        let records_shipped = Counter::default();
        let (spool_bytes, spool_pending, spool_quarantined, spool_full) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        registry.register(
            "records_read",
            "Log records read from sources into the spool",
            records_read.clone(),
        );
        registry.register(
            "records_rejected",
            "Log records rejected by sources (malformed)",
            records_rejected.clone(),
        );
        registry.register(
            "records_shipped",
            "Log records acknowledged by the management plane",
            records_shipped.clone(),
        );
        registry.register(
            "spool_bytes",
            "Bytes of spool segments on disk",
            spool_bytes.clone(),
        );
        registry.register(
            "spool_pending_records",
            "Spooled records not yet acknowledged",
            spool_pending.clone(),
        );
        registry.register(
            "spool_quarantined_segments",
            "Corrupted spool segments set aside",
            spool_quarantined.clone(),
        );
        let spool_corrupt = [Counter::default(), Counter::default(), Counter::default()];
        for (c, (name, help)) in spool_corrupt.iter().zip([
            (
                "spool_corrupt_bytes",
                "Damaged spool bytes set aside in quarantine/",
            ),
            (
                "spool_corrupt_frames",
                "Spool frames lost to damage (as far as known)",
            ),
            (
                "spool_corrupt_records",
                "Spooled records lost to damage (as far as known)",
            ),
        ]) {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "spool_full",
            "1 while the spool is full and sources are held back",
            spool_full.clone(),
        );
        Metrics {
            registry,
            records_read,
            records_rejected,
            records_shipped,
            spool_bytes,
            spool_pending,
            spool_quarantined,
            spool_full,
            spool_corrupt,
        }
    }
}

fn label(t: LogType) -> TypeLabel {
    TypeLabel {
        r#type: t.as_str().to_string(),
    }
}

impl Metrics {
    /// `n` records of type `t` entered the spool.
    pub fn read(&self, t: LogType, n: u64) {
        self.records_read.get_or_create(&label(t)).inc_by(n);
    }

    /// One record of type `t` was rejected.
    pub fn rejected(&self, t: LogType) {
        self.rejected_n(t, 1);
    }

    /// `n` records of type `t` were rejected.
    pub fn rejected_n(&self, t: LogType, n: u64) {
        self.records_rejected.get_or_create(&label(t)).inc_by(n);
    }

    /// `n` records were acknowledged.
    pub fn shipped(&self, n: u64) {
        self.records_shipped.inc_by(n);
    }

    /// Renders the text exposition, refreshing spool gauges first.
    pub fn render(&self, spool: Option<&Arc<Spool>>) -> String {
        if let Some(s) = spool {
            let st = s.stats();
            self.spool_bytes.set(st.bytes_on_disk as i64);
            self.spool_pending.set(st.pending_records as i64);
            self.spool_quarantined.set(st.quarantined_segments as i64);
            self.spool_full.set(st.full as i64);
            let totals = [st.corrupt_bytes, st.corrupt_frames, st.corrupt_records];
            for (c, total) in self.spool_corrupt.iter().zip(totals) {
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
