//! The edges of Vestnik: HTTP API, WebSocket sessions, configuration and shutdown, around the broker
//! core. The `vestnik` binary is a thin `main` over [`server::run`].
//!
//! # Layout
//! - [`config`]: TOML, environment and flags into one struct tree.
//! - [`server`]: binds, runs the accept loop, joins the cluster, drains on shutdown.
//! - [`router`]: the one router: decides once what a request is, as a [`router::Route`].
//! - [`http`]: the signed Pusher HTTP API (one file per resource), health, the client script and the
//!   debug console.
//! - [`ws`]: the WebSocket upgrade and the per-socket session (reader, coalescing writer, liveness).
//! - [`state`]: [`state::AppState`], what every request handler shares.
//! - [`reply`]: [`reply::ApiError`], JSON and static replies, body reading: every HTTP answer.
//! - [`live`]: the open sockets of this node, for the drain.
//! - [`drain`]: the staggered drain on SIGTERM, step by step.
//! - [`shutdown`]: the one shutdown signal and task tracker.
//! - [`tls`]: native TLS with rustls.
//! - [`peer`]: the client IP, from the TCP peer or (with `trust_proxy`) `X-Forwarded-For`.
//! - [`ratelimit`]: new sockets and console sign-ins per IP, API requests per app.
//! - [`metrics`]: the Prometheus exporter on its own port.
//! - [`catalogue`]: apps that change while the node runs (the app database's feed, `SIGHUP`),
//!   the admin operations shared by `/admin/apps` and `vestnik apps`.
//! - [`hooks`]: the bridge from broker events to the durable webhook sender.
//!
//! # Dependencies
//! Imports run one way, top to bottom; no two modules import each other (`grep -rn "use crate::"`):
//!
//! ```text
//! main ─► server ─► drain, metrics, tls, hooks
//!           │
//!           └─► router ─► ws::upgrade ─► ws::session ─► live, config
//!                  │
//!                  └─► http::api ─► http::{events, channels, users, webhooks} ─► http::signed
//!                  └─► http::{console, health, client_script}
//!                                 │
//!      (every handler, the upgrade, drain, metrics) ─► state ─► live, ratelimit, shutdown, hooks, config
//!                                 └────────────────► reply (ApiError, Body: imports nothing of ours)
//! ```
//!
//! The protocol crate parses what comes in (frames, API bodies, signatures); the broker crate
//! decides; this crate only moves bytes between them and the network.
//!
//! # The two paths
//! A trigger, from the HTTP request to the socket write:
//!
//! ```text
//! server::accept_loop ─► serve_http (hyper, one task per TCP connection)
//!   ─► router::route: Route::Api { app, endpoint } (path parsed once)
//!   ─► http::api::call: refuse while starting, find the app, count
//!   ─► http::signed::verify: read the body (bounded), check the signature (protocol crate)
//!   ─► rate limit ─► http::events::trigger: parse and check the body (protocol crate)
//!   ─► AppState::publish ─► Broker::publish: encode once per channel, push the same Bytes into
//!      every subscriber's Outbox (never awaiting), relay to the cluster, report to the event sink
//!   ─► each subscriber's ws::session::drive wakes: drain the outbox, write, flush once
//! ```
//!
//! A frame, from the socket to the core and back:
//!
//! ```text
//! router::route: Route::Upgrade ─► ws::upgrade: admit (key, app, origin, limits), answer 101
//!   ─► ws::session::run: Broker::connect, list in live, queue connection_established
//!   ─► drive: read a text frame ─► handle_message: ClientMessage::parse (protocol crate)
//!   ─► Broker::subscribe / client_event / signin / unsubscribe (synchronous)
//!   ─► replies and fan-out go into outboxes ─► drive writes them, in the broker's order
//! ```
//!
//! # Long-lived tasks
//! - the accept loop (`server::accept_loop`), from bind to the drain's `finishing` step;
//! - one task per TCP connection (`server::spawn_connection`), tracked by [`shutdown`];
//! - one task per WebSocket (`ws::session::run`, its loop is `drive`), tracked the same way;
//! - the cache purge tick, the cluster task (in the broker crate), the webhook service's tasks
//!   (in `vestnik-webhooks`) and the metrics listener;
//! - the usage flusher ([`usage::spawn`]): counts to the usage ledger, today's message counts for
//!   the daily quota; stopped (after a last flush) once the drain is over;
//! - the drain ([`drain::run`]), which stops them in its numbered order.

pub mod catalogue;
pub mod config;
pub mod drain;
pub mod hooks;
pub mod http;
pub mod live;
pub mod metrics;
pub mod peer;
pub mod ratelimit;
pub mod reply;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod usage;
pub mod ws;
