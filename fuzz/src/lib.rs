//! The checks behind the fuzz targets, one module per decoder of outside input. Each module
//! is also compiled into a test of the crate that owns the decoder, which replays
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`, so a crash found once stays found.
#![forbid(unsafe_code)]

pub mod agent_line;
pub mod file_source;
pub mod rbac_objects;
pub mod search_request;
pub mod spool_recover;
pub mod spool_segment;
pub mod wire_resources;
