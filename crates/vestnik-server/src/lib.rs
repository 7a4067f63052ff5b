//! The edges of Vestnik: HTTP API, WebSocket sessions, configuration and shutdown, around the broker
//! core. The `vestnik` binary is a thin `main` over [`server::run`].
//!
//! # Layout
//! - [`config`]: TOML, environment and flags into one struct tree.
//! - [`server`]: binds, accepts, routes each connection to HTTP or WebSocket, drains on shutdown.
//! - [`http`]: the signed Pusher HTTP API, one file per resource, and health.
//! - [`ws`]: the WebSocket upgrade and the per-socket session (reader, coalescing writer, liveness).
//! - [`shutdown`]: the one shutdown signal and task tracker.
//! - [`metrics`]: the Prometheus exporter on its own port.
//! - [`hooks`]: the bridge from broker events to the durable webhook sender.

pub mod config;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod ws;
