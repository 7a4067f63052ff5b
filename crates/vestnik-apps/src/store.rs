//! The store interfaces: [`Catalogue`] (apps: snapshot, change feed, admin operations, schema) and
//! [`UsageLedger`] (usage per app and hour, daily message counts), and [`open`], which picks the
//! implementation from a URL.
//!
//! Both traits are object-safe (methods return boxed futures) so that a server can hold one
//! `Arc<dyn Store>` whichever database is configured. They say what the broker and an admin API
//! need, not what SQL offers. This module must never hold a connection itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::feed::{ChangeFeed, FeedOptions};
use crate::record::{AppRecord, AppUpdate, NewApp};
use crate::usage::{Day, Hour, UsageRow};

/// The future every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Every app at one revision of the catalogue.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The catalogue revision the apps were read at: every write to any app raises it, so two
    /// snapshots with the same revision hold the same apps.
    pub revision: u64,
    /// The apps, sorted by id.
    pub apps: Vec<Arc<AppRecord>>,
    /// Rows that could not be read as apps (written by hand, for instance). They are not served;
    /// a feed keeps serving the last good version of such an app.
    pub rejected: Vec<Rejected>,
}

/// A row of the apps table that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The row's id.
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Which schema version a `migrate` found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version before (0: no schema).
    pub from: i64,
    /// The version after.
    pub to: i64,
}

/// Where apps live: what the broker reads and what an admin changes.
pub trait Catalogue: Send + Sync {
    /// Creates or upgrades the schema to this build's version. Idempotent, and safe to run from
    /// several nodes at once (one holds a lock, the others then find nothing to do).
    ///
    /// A server runs it at start, before `watch`; it refuses a database whose schema is newer than
    /// this build ([`StoreError::SchemaTooNew`]), so an old node in a rolling upgrade never writes
    /// rows in a shape it does not know.
    fn migrate(&self) -> StoreFuture<'_, Migrated>;

    /// Every app, read in one transaction.
    ///
    /// One transaction, so the revision and the apps agree; rows that cannot be served are listed
    /// in `rejected` rather than failing the whole read.
    fn snapshot(&self) -> StoreFuture<'_, Snapshot>;

    /// Reads a snapshot and follows every later change, from this store's writes and from anyone
    /// else's (an admin panel writing SQL), until the feed is dropped. Fails only when the first
    /// snapshot cannot be read; later outages are reported by [`ChangeFeed::state`].
    fn watch(&self, options: FeedOptions) -> StoreFuture<'_, ChangeFeed>;

    /// One app.
    ///
    /// Read from the database, never from a feed's view, so an admin sees what was committed.
    fn show<'a>(&'a self, id: &'a str) -> StoreFuture<'a, AppRecord>;

    /// Creates an app, generating its id, key and secret unless given. A generated id or key that
    /// happens to be taken is drawn again; a given one that is taken is a conflict.
    fn create(&self, app: NewApp) -> StoreFuture<'_, AppRecord>;

    /// Replaces the groups given in `update` (limits, options, quotas, webhooks, enabled).
    ///
    /// With `expected_revision`, a concurrent change since the caller's read is a conflict (409)
    /// instead of being overwritten.
    fn update<'a>(&'a self, id: &'a str, update: AppUpdate) -> StoreFuture<'a, AppRecord>;

    /// Gives the app a fresh secret and keeps the current one valid for `grace` (measured by the
    /// database's clock); a zero grace drops the old secret at once. A rotation during another's
    /// grace replaces the older previous secret.
    fn rotate_secret<'a>(&'a self, id: &'a str, grace: Duration) -> StoreFuture<'a, AppRecord>;

    /// Deletes an app. Its usage rows stay, for billing.
    ///
    /// Every node's feed emits a `Delete`, and their brokers close the app's sockets.
    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;

    /// Every app, sorted by id.
    fn list(&self) -> StoreFuture<'_, Vec<Arc<AppRecord>>> {
        Box::pin(async move { Ok(self.snapshot().await?.apps) })
    }

    /// Disables an app: its sockets are closed with 4003 and its API calls get 403.
    fn disable<'a>(&'a self, id: &'a str) -> StoreFuture<'a, AppRecord> {
        self.update(
            id,
            AppUpdate {
                enabled: Some(false),
                ..AppUpdate::default()
            },
        )
    }

    /// Enables an app again.
    fn enable<'a>(&'a self, id: &'a str) -> StoreFuture<'a, AppRecord> {
        self.update(
            id,
            AppUpdate {
                enabled: Some(true),
                ..AppUpdate::default()
            },
        )
    }
}

/// Usage per app and hour, for billing, and the daily counts quotas check.
///
/// A separate trait from [`Catalogue`] because the two are used by different parts of a server
/// (the feed and the admin API versus the usage flusher and the quota check), and a test can fake
/// one without the other.
pub trait UsageLedger: Send + Sync {
    /// Merges each row into the stored one (peak by maximum, counts by sum), in one transaction.
    /// Safe under concurrent calls from many nodes.
    fn record_usage(&self, rows: Vec<UsageRow>) -> StoreFuture<'_, ()>;

    /// One app's rows for the hours in `from..to`, oldest first.
    fn usage<'a>(&'a self, app_id: &'a str, from: Hour, to: Hour)
        -> StoreFuture<'a, Vec<UsageRow>>;

    /// Messages (received plus delivered) per app on one UTC day, for every app that has any,
    /// sorted by app id.
    fn daily_messages(&self, day: Day) -> StoreFuture<'_, Vec<(String, u64)>>;
}

/// A catalogue with its usage ledger: what a server holds.
pub trait Store: Catalogue + UsageLedger {}

impl<T: Catalogue + UsageLedger> Store for T {}

/// Connects to the store a URL names: `postgres://` / `postgresql://` or `mysql://` / `mariadb://`.
/// Does not migrate.
///
/// Both stores use a small pool with a short acquire timeout, so an unreachable database is
/// reported within seconds instead of hanging the caller.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "postgres" | "postgresql" => Ok(Arc::new(crate::postgres::PgStore::connect(url).await?)),
        "mysql" | "mariadb" => Ok(Arc::new(crate::mysql::MySqlStore::connect(url).await?)),
        other => Err(StoreError::UnsupportedUrl(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mistyped URL scheme must be named in the error, not tried as some database.
    #[tokio::test]
    async fn open_refuses_unknown_schemes() {
        match open("redis://127.0.0.1:6379").await {
            Err(StoreError::UnsupportedUrl(scheme)) => assert_eq!(scheme, "redis"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a redis URL opened an app store"),
        }
    }
}
