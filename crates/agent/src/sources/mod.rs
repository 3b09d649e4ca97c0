//! Log sources: producers that turn something on the cluster (files, webhooks) into records
//! in the [spool](crate::spool), from where the shipper sends them to the management plane.

pub mod files;
