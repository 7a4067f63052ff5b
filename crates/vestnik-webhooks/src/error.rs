//! The crate's one error type. Every failure a caller can see is named here, with the reason a
//! person needs to fix it.
//!
//! This module must never log or decide policy: callers choose whether an error stops the broker
//! (config, spool at start) or is reported to an admin (dead-letter operations).

/// What can go wrong when starting the service or using its spool.
/// The variants a CLI user meets (`NoDataDir`, `NoSpool`, `InUse`) say what to do next in their
/// text, because the CLI prints them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A target or a setting is unusable; the text names it.
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    /// The data directory could not be created.
    #[error("cannot create the webhook data dir {path}: {source}")]
    DataDir {
        /// The directory that was asked for.
        path: std::path::PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// There is no data directory to inspect (a typo, or the broker never ran there).
    #[error("no webhook data dir at {path}: check --data-dir (or [webhooks] data_dir)")]
    NoDataDir {
        /// The directory that was asked for.
        path: std::path::PathBuf,
    },
    /// The data directory holds no spool: the broker never sent a webhook from it.
    #[error("no webhook spool in {path}: the broker creates it at its first start there")]
    NoSpool {
        /// The data directory.
        path: std::path::PathBuf,
    },
    /// Another process (a running broker) has the spool open.
    #[error(
        "the webhook spool in {path} is in use, most likely by a running broker: use its admin \
         endpoints (GET /apps/{{id}}/webhooks/dead_letters, POST …/dead_letters/replay) instead"
    )]
    InUse {
        /// The data directory.
        path: std::path::PathBuf,
    },
    /// The embedded store failed (disk full, corrupt file, already opened by another process, …).
    /// Boxed: redb's error is large, and every `Result` here would carry its size.
    #[error("webhook spool: {0}")]
    Spool(Box<redb::Error>),
    /// A spooled record could not be decoded; the spool was written by an incompatible version.
    #[error("webhook spool record {key} is unreadable: {source}")]
    Record {
        /// The record's key.
        key: u64,
        /// Why it could not be decoded.
        source: serde_json::Error,
    },
    /// The TLS setup for `https://` targets failed.
    #[error("webhook TLS setup: {0}")]
    Tls(String),
    /// The service has shut down, so its spool is closed.
    #[error("the webhook service has stopped")]
    Stopped,
    /// `Webhooks::start` was called outside a Tokio runtime.
    #[error("the webhook service must be started inside a Tokio runtime")]
    NoRuntime,
}

/// redb splits its errors by operation; they all mean "the spool failed".
/// One `From` per redb error type, so `?` works on every redb call and all of them become
/// [`Error::Spool`], the one variant callers match for "the disk failed".
macro_rules! spool_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Spool(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}

spool_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
