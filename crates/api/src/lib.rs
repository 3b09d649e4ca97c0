//! Cattery's API types: Kubernetes-style resources (`apiVersion/kind/metadata/spec/status`),
//! the `Status` error object, and name validation.
//!
//! This crate does no I/O so that the server, the agent, the CLI and tests share one
//! definition of every object that crosses a process boundary.
#![forbid(unsafe_code)]

pub mod agent_protocol;
pub mod cluster;
pub mod federation;
pub mod filter_expr;
pub mod logs;
pub mod meta;
pub mod names;
pub mod status;
pub mod token;
pub mod wire;

pub use cluster::*;
pub use meta::*;
pub use names::{
    LabelError, NameError, validate_annotations, validate_dns1123_label, validate_label_value,
    validate_labels, validate_qualified_name,
};
pub use status::Status;
pub use token::{Token, TokenSpec, TokenStatus};

/// The API group and version of every Cattery resource.
pub const API_VERSION: &str = "cattery.dev/v1";

/// The name under which the management plane itself appears (as in Calico).
pub const MANAGEMENT_CLUSTER_NAME: &str = "cluster";
