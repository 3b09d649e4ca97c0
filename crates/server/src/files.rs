//! Writing secrets and certificates to disk: the one implementation in [`cattery_files`]
//! (atomic, fsynced, owner-only from creation), re-exported under the name the server's
//! modules use.

pub use cattery_files::{create_private_dir, write_private, write_public};
