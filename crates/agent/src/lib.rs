//! The Cattery agent (`cattery agent`), one per managed cluster.
//!
//! It dials the management plane (outbound only), proves its cluster's identity with the
//! client certificate from its installation manifest, and then serves HTTP/2 on that
//! connection: every request the management plane sends is forwarded to the cluster's
//! Kubernetes API with the agent's own credentials plus the `Impersonate-*` headers the
//! management plane set, so the cluster's RBAC applies to the real user.
#![forbid(unsafe_code)]

pub mod audit_webhook;
pub mod handler;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod settings;
pub mod shipping;
pub mod sources;
pub mod spool;
pub mod upstream;

pub use run::{AgentError, run};
pub use settings::{AgentSettings, UpstreamSettings};

/// Version reported to the management plane.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
