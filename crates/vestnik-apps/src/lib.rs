//! Vestnik's app catalogue: apps as a service. Apps live in PostgreSQL or MariaDB/MySQL, change
//! live on every node through a change feed, rotate their secrets with a grace period, and record
//! their usage per hour for billing and daily quotas.
//!
//! This crate is the storage layer only. The broker keeps its own in-memory index fed by a
//! [`ChangeFeed`], so looking an app up never waits on a database; this crate must never be called
//! on the hot path of a socket or a trigger, and must never print a secret.
//!
//! # Layout
//! - [`store`]: the [`Catalogue`] and [`UsageLedger`] traits, [`Snapshot`], and [`open`] (pick a
//!   store from a URL).
//! - [`record`]: [`AppRecord`] and its groups ([`Limits`], [`Options`], [`Quotas`]), [`NewApp`],
//!   [`AppUpdate`], and the validation of what an admin sends.
//! - [`secret`]: [`Secret`], which never prints, and the id/key/secret generators.
//! - [`feed`]: [`ChangeFeed`]: a snapshot kept current, its [`Change`]s and its [`FeedState`].
//! - [`usage`]: [`Hour`], [`Day`], [`Usage`], [`UsageRow`], and [`UsageBatch`] (a node's unflushed
//!   counts).
//! - [`error`]: [`StoreError`], with the HTTP status each maps to.
//! - [`postgres`]: [`PgStore`] (`LISTEN/NOTIFY`); [`mysql`]: [`MySqlStore`] (polls a changes
//!   table). `row` holds the column order both share.
//! - [`file`]: [`FileLedger`], usage in a node's data dir (one append-only log per UTC day) for
//!   nodes whose apps come from the config file.
//!
//! # Revisions
//! Every write to any app takes the next value of one catalogue counter (a row the triggers lock
//! until commit), so revisions commit in order. A snapshot reads the counter and the apps in one
//! transaction; the feed then follows changes after that revision. A consumer compares revisions
//! to drop stale news: a larger revision is always the newer state, on every node.
//!
//! # Long-lived tasks
//! Each [`ChangeFeed`] runs one feed task plus one signal task (a `LISTEN` connection, or a
//! polling loop). Both end when the feed handle is dropped. Nothing else here runs in the
//! background: usage is flushed by the caller, with [`UsageLedger::record_usage`].
//!
//! # Secrets
//! A secret is a [`Secret`] from the moment it is read, so `Debug` of a record, a snapshot or an
//! error never shows it; [`Secret::expose`] is the one way to the text, for signing and for the
//! write to the store.
//!
//! # When the database is down
//! Reads that a broker depends on keep working from the feed's snapshot ([`FeedState::Down`] is
//! reported, never hidden). Admin writes and usage flushes fail with [`StoreError::Database`]
//! (503). A caller that keeps its counts in a [`UsageBatch`] can go on merging into it and flush
//! once the database is back, so an outage need only delay billing figures, not lose them.

pub mod error;
pub mod feed;
pub mod file;
pub mod mysql;
pub mod postgres;
pub mod record;
mod row;
pub mod secret;
pub mod store;
pub mod usage;

pub use error::StoreError;
pub use feed::{Change, ChangeFeed, FeedOptions, FeedState};
pub use file::FileLedger;
pub use mysql::MySqlStore;
pub use postgres::PgStore;
pub use record::{AppRecord, AppUpdate, Limits, NewApp, Options, PreviousSecret, Quotas};
pub use secret::Secret;
pub use store::{open, Catalogue, Migrated, Rejected, Snapshot, Store, StoreFuture, UsageLedger};
pub use usage::{Day, Hour, Usage, UsageBatch, UsageRow};
