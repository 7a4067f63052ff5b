//! Why a catalogue or usage operation failed, typed so that an admin API maps each to one status.
//!
//! [`StoreError::status`] is the one place that says which HTTP status an error is: 404, 409, 422 for
//! the caller's mistakes, 503 when the database cannot be reached or misbehaves. This module must
//! never format a secret or a database URL's password into a message.

/// A failed catalogue or usage operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No app has this id.
    #[error("no app has the id {id:?}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The id or key is taken, or a key would equal another app's id (`/apps/{segment}` accepts
    /// either, so it would name two apps), or the record changed since the caller read it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input cannot be stored: an empty id, a zero limit, a webhook URL that is not http(s), …
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault, as named in the JSON and the schema.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A row in the database cannot be read as an app (an admin panel wrote something the broker
    /// cannot serve). The rest of the catalogue is still served.
    #[error("the row of app {id:?} cannot be read: {reason}")]
    BadRow {
        /// The row's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database holds a newer schema than this build knows; an older node must not write it.
    #[error("the schema is at version {found}, newer than this build's {known}")]
    SchemaTooNew {
        /// The version in `vestnik_schema_version`.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The URL names no store this build has.
    #[error("unsupported apps URL scheme {0:?} (expected postgres:// or mysql://)")]
    UnsupportedUrl(String),
    /// The database could not be reached or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A file of the file ledger (usage in the data dir) could not be read or written.
    #[error("usage file: {0}")]
    File(String),
}

impl StoreError {
    /// The HTTP status an admin API answers with: 404, 409, 422, or 503 for everything that is the
    /// database's fault rather than the caller's.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::NotFound { .. } => 404,
            StoreError::Conflict(_) => 409,
            StoreError::Invalid { .. } => 422,
            StoreError::BadRow { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::UnsupportedUrl(_)
            | StoreError::Database(_)
            | StoreError::File(_) => 503,
        }
    }

    /// Shorthand for [`StoreError::Invalid`], used by the validation in `record`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
