//! Vestnik's webhooks: Pusher-compatible webhook events, held and batched as Pusher does, kept in a
//! durable spool and delivered over HTTP with retries until a receiver acknowledges them.
//!
//! The broker reports facts through [`Webhooks::submit`], a non-blocking call; everything after
//! that (the 3 s vacate hold, batching, signing, retries, dead letters) happens on this crate's own
//! tasks. Every event carries a unique `id` (also listed in the `X-Vestnik-Webhook-Id` header) so
//! receivers can dedupe: delivery is at least once. This crate must never call back into the broker
//! or block its caller; it reads no config files itself (the server passes it [`AppHooks`] and
//! [`WebhookSettings`]).
//!
//! # Layout
//! - `config`: targets, settings and their defaults ([`WebhookTarget`], [`WebhookSettings`]).
//! - `event`: [`WebhookEvent`] and its wire JSON; event ids (UUID v7).
//! - `plan`: the hold, target filters and batching, as a pure state machine.
//! - `intake`: the task that runs the planner and spools ready batches.
//! - `spool`: the redb file with pending batches and dead letters ([`Spool`]).
//! - `view`: a read-only view of a stopped broker's spool, for the CLI ([`SpoolView`]).
//! - `runtime`: state shared by the tasks; one lane per receiver URL.
//! - `lane`: in-flight limit, retries with backoff and jitter, dead-lettering.
//! - `sender`: one signed HTTP request.
//! - `service`: [`Webhooks`], the handle: start, submit, stats, dead-letter admin.
//! - `stats`: per-app counters ([`AppWebhookStats`]).
//! - `error`: [`Error`].
//!
//! # The path of one event
//! ```text
//! broker ──submit()──► bounded queue ──► intake task ──► planner (hold, filter, batch)
//!   (never blocks;       (queue_capacity;     │
//!    drops when full)     the only link)      ▼
//!                        spool.insert (fsync) ──► lane of the URL ──► sender (POST)
//!                                                   │  2xx: spool.remove
//!                                                   │  fail: backoff, retry from spool
//!                                                   └  window over: spool.bury (dead letter)
//! ```
//!
//! # Long-lived tasks
//! All tracked by one `TaskTracker` and stopped by one `CancellationToken`: the intake task
//! (`intake::run_intake`), one lane per receiver URL (`lane::run_lane`) with one short task per
//! attempt, and the supervisor that [`Webhooks::start`] returns, which closes the spool last.
//!
//! # Guarantees
//! At least once: an event is acknowledged by the spool before any attempt, and removed only after
//! a 2xx. Not exactly once: a crash between the receiver's 2xx and the removal resends the batch,
//! which is why every event carries an id. Order is kept per target as far as one lane with one
//! request in flight keeps it; with `max_in_flight` above 1, batches of one target may overtake.

mod config;
mod error;
mod event;
mod intake;
mod lane;
mod plan;
mod runtime;
mod sender;
mod service;
mod spool;
mod stats;
mod view;

pub use config::{defaults, AppHooks, EventType, ValidateTarget, WebhookSettings, WebhookTarget};
pub use error::Error;
pub use event::WebhookEvent;
pub use sender::{ATTEMPT_HEADER, ID_HEADER};
pub use service::Webhooks;
pub use spool::{DeadLetter, Spool, SPOOL_FILE};
pub use stats::AppWebhookStats;
pub use view::SpoolView;
