//! A generic Kubernetes-style resource store with watch, shared by the simulator and the
//! management plane.
//!
//! - [`Store`] holds objects of any [`Kind`] (the caller's type table; the store knows no
//!   domain kinds) as JSON, under one monotonically increasing resourceVersion, with
//!   create-conflicts on existing names, optimistic concurrency on update, generation
//!   bumps on spec changes and a bounded event history ([`store`]);
//! - [`Store::watch`] serves the Kubernetes watch sequence (synthetic ADDED, replay from a
//!   resourceVersion, BOOKMARK, 410 Expired) without a wire format ([`watch`]);
//! - [`LabelSelector`] and [`FieldSelector`] parse and match selectors as apimachinery
//!   does ([`selector`]);
//! - [`backend::Backend`] persists committed transactions ([`backend::Memory`] keeps
//!   nothing, [`backend::Sqlite`] keeps JSON rows and the resourceVersion counter).
//!
//! [`managed_fields`] is server-side apply's field ownership (`metadata.managedFields`,
//! conflicts, `force`, removal of fields a manager stops applying).
//!
//! [`http`] holds the kind-independent parts of an HTTP layer (query parsing, watch
//! framing, Tables, `Status`); the store itself knows no HTTP: errors carry the code and reason an HTTP layer puts into a `Status`
//! ([`StoreError::code`], [`StoreError::reason`]). See `docs/design/0010-resource-store.md`.
#![forbid(unsafe_code)]

pub mod backend;
pub mod http;
pub mod managed_fields;
pub mod patch;
pub mod selector;
pub mod store;
pub mod watch;

pub use selector::{FieldSelector, LabelSelector};
pub use store::{
    Event, EventType, Filter, HISTORY_LIMIT, Kind, Obj, Page, Store, StoreError, Tx, now_rfc3339,
};
pub use watch::{WatchEvent, WatchStart, Watcher};
