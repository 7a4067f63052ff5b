//! The edges of Vestnik: HTTP API, WebSocket sessions, configuration and shutdown, around the broker
//! core. The `vestnik` binary is a thin `main` over [`server::run`].
//!
//! # Layout
//! - [`config`]: TOML, environment and flags into one struct tree.
//! - [`server`]: binds, accepts, routes each connection to HTTP or WebSocket, drains on shutdown.
//! - [`http`]: the signed Pusher HTTP API, one file per resource, and health.
//! - [`ws`]: the WebSocket upgrade and the per-socket session (reader, coalescing writer, liveness).
//! - [`shutdown`]: the one shutdown signal and task tracker.
//! - [`drain`]: the staggered drain on SIGTERM, step by step.
//! - [`tls`]: native TLS with rustls.
//! - [`peer`]: the client IP, from the TCP peer or (with `trust_proxy`) `X-Forwarded-For`.
//! - [`ratelimit`]: new sockets per IP, API requests per app.
//! - [`metrics`]: the Prometheus exporter on its own port.
//! - [`hooks`]: the bridge from broker events to the durable webhook sender.

pub mod config;
pub mod drain;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod peer;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod ws;
