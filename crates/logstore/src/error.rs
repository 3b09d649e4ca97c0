//! The one error type of this crate.

/// Why a log store operation failed.
///
/// `BadRequest` is the caller's fault (the server answers 400 naming `field`), `Busy` a
/// full search budget (429); everything else is the store's (500).
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The search request is invalid; `field` names the offending part (`filters[2].field`).
    #[error("{field}: {message}")]
    BadRequest {
        /// Where in the request the problem is (a JSON path such as `filters[0].cidr`).
        field: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// The server is running as many memory-heavy searches as its budget allows; the
    /// caller should retry later (the server answers 429 with `Retry-After`).
    #[error("{message}")]
    Busy {
        /// Which limit is reached, and its value.
        message: String,
        /// Seconds after which a retry is likely to succeed.
        retry_after_secs: u64,
    },
    /// The batch's stream id belongs to another cluster (a cloned spool or a forged id):
    /// nothing of it was stored. The server reports it and tells the agent to drop the stream.
    #[error("log stream {stream} belongs to cluster {owner:?}; refused from cluster {cluster:?}")]
    StreamOwned {
        /// The stream id presented.
        stream: String,
        /// The cluster that presented it first and owns it.
        owner: String,
        /// The cluster whose batch was refused.
        cluster: String,
    },
    /// Reading or writing the data directory failed.
    #[error("log store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The search engine failed (corrupt index, commit failure, lock held by another process).
    #[error("log index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A stored document could not be decoded (should not happen; indicates corruption).
    #[error("stored record in {index} is unreadable: {message}")]
    Corrupt {
        /// The daily index the document is in.
        index: String,
        /// What went wrong.
        message: String,
    },
}

impl LogStoreError {
    /// Shorthand for a [`LogStoreError::BadRequest`].
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        LogStoreError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for LogStoreError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        LogStoreError::Index(e.into())
    }
}
