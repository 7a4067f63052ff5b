//! A small Pusher Channels server SDK for any Rust backend.
//!
//! It speaks only the public Pusher HTTP API and the documented signatures, so the same code works
//! against Vestnik, Pusher or any compatible broker: change the host, port, scheme and credentials.
//! The HMAC and body-hash work is done by `vestnik-protocol`; this crate only builds requests and
//! answers. It must never hold a lock across a request or retry on its own: a failed trigger is
//! reported to the caller, who knows whether it is worth repeating.
//!
//! # Layout
//! - [`Config`]: where the broker is and which app to act as.
//! - [`Client`]: `trigger`, `trigger_batch`, `channel_history` over http or https.
//! - [`history`]: the pages and refusals of Vestnik's history API.
//! - [`auth`]: channel authorisation (private, presence) and user sign-in signing.
//! - [`webhook`]: webhook verification.
//! - [`Error`]: every refusal, typed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vestnik_sdk::Error> {
//! use vestnik_sdk::{Client, Config};
//! let client = Client::new(Config::local("app-id", "app-key", "app-secret"))?;
//! client.trigger(&["private-user-1"], "order:status", &serde_json::json!({"order_id": 1}), None).await?;
//! # Ok(()) }
//! ```

pub mod auth;
mod client;
mod config;
mod error;
pub mod history;
pub mod webhook;

pub use auth::{ChannelAuth, PresenceMember, UserAuth};
pub use client::{https_connector, BatchEvent, Client, TriggerResponse};
pub use config::{Config, Scheme};
pub use error::Error;
pub use history::{HistoryCursor, HistoryEvent, HistoryPage};
pub use webhook::{WebhookBody, WebhookEvent};
