//! Central logs: pulling spooled records from agents, storing them, searching and tailing.

use std::sync::Arc;

use cattery_api::logs::LogType;
use cattery_logstore::LogStore;
use serde_json::Value;
use tokio::sync::broadcast;

pub mod api;
pub mod metrics;
pub mod puller;

/// Environment variable that sets the log store's server-wide search memory budget in MiB
/// (`StoreOptions::search_memory_budget_bytes`, default 1024): an operator's knob for small
/// machines, and how the end-to-end tests make concurrent searches reach it.
pub const SEARCH_MEMORY_BUDGET_ENV: &str = "CATTERY_SEARCH_MEMORY_BUDGET_MIB";

/// The log store's options: the defaults, with [`SEARCH_MEMORY_BUDGET_ENV`] applied.
pub fn store_options() -> anyhow::Result<cattery_logstore::StoreOptions> {
    let mut options = cattery_logstore::StoreOptions::default();
    if let Ok(v) = std::env::var(SEARCH_MEMORY_BUDGET_ENV) {
        let mib: u64 = v.trim().parse().map_err(|_| {
            anyhow::anyhow!("{SEARCH_MEMORY_BUDGET_ENV}={v:?} is not a whole number of MiB")
        })?;
        options.search_memory_budget_bytes = mib
            .checked_mul(1 << 20)
            .ok_or_else(|| anyhow::anyhow!("{SEARCH_MEMORY_BUDGET_ENV}={v:?} is too large"))?;
    }
    Ok(options)
}

/// A record just stored, for live tails.
#[derive(Debug)]
pub struct TailItem {
    /// Its cluster.
    pub cluster: String,
    /// Its type.
    pub log_type: LogType,
    /// The record (with `cluster`).
    pub record: Value,
}

/// Capacity of the live-tail channel; slower subscribers are told how much they missed.
const TAIL_CAPACITY: usize = 16_384;

/// Shared by the pullers and the log API.
pub struct LogService {
    /// The log store.
    pub store: Arc<dyn LogStore>,
    /// Ingest metrics.
    pub metrics: metrics::IngestMetrics,
    tail: broadcast::Sender<Arc<TailItem>>,
}

impl LogService {
    /// Wraps a store.
    pub fn new(store: Arc<dyn LogStore>) -> Self {
        LogService {
            store,
            metrics: Default::default(),
            tail: broadcast::channel(TAIL_CAPACITY).0,
        }
    }

    /// Subscribes to records as they are stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TailItem>> {
        self.tail.subscribe()
    }

    /// Whether any live tail is listening.
    pub fn has_subscribers(&self) -> bool {
        self.tail.receiver_count() > 0
    }

    /// Publishes stored records to live tails (no-op without subscribers).
    pub fn publish(&self, items: impl IntoIterator<Item = TailItem>) {
        if self.tail.receiver_count() == 0 {
            return;
        }
        for item in items {
            let _ = self.tail.send(Arc::new(item));
        }
    }
}
