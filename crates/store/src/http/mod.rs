//! What an HTTP layer over a [`Store`](crate::Store) needs that is not specific to its
//! kinds, shared by the simulator and the hub so neither keeps a copy:
//!
//! - [`query`]: list and watch query parameters (`labelSelector`, `fieldSelector`,
//!   `limit`, `continue`, `resourceVersion`, `timeoutSeconds`, `allowWatchBookmarks`,
//!   `sendInitialEvents`) parsed into a [`Filter`](crate::Filter) and a [`WatchStart`](crate::WatchStart);
//! - [`watch`]: the watch body, newline-delimited `{"type": ..., "object": ...}`, one chunk
//!   per event, with periodic BOOKMARKs and a `410 Expired` ERROR event;
//! - [`discovery`]: discovery documents and the OpenAPI v3 index;
//! - [`table`]: server-side printing (`meta.k8s.io/v1` `Table`) from column definitions;
//! - [`status`]: a [`StoreError`](crate::StoreError) as a Kubernetes `Status` object.
//!
//! Framework-free on purpose: the body is a `Stream` of [`bytes::Bytes`], which axum, hyper
//! and others wrap directly.

pub mod discovery;
pub mod query;
pub mod status;
pub mod table;
pub mod watch;
