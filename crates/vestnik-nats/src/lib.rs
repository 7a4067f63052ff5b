//! Vestnik's NATS adapter: an [`Adapter`](vestnik_broker::adapter::Adapter) that moves opaque,
//! already-encoded cluster messages between nodes over NATS core pub/sub, and reports when NATS
//! comes and goes. The cluster semantics (heartbeats, presence, queries) live in the broker core;
//! this crate is bytes in, bytes out.
//!
//! It must never interpret a payload, never block the caller of `send`, and never panic on a
//! network failure: a lost server is a `Disconnected` event, the client's own reconnect with our
//! backoff, and a `Connected` event once the subscriptions are back.
//!
//! # Layout
//! - [`adapter`]: [`NatsAdapter`], the shared `AdapterShell` (`connect`, `send`, `events`,
//!   `stats`, `close`) over the [`Nats`] transport (`max_payload`).
//! - [`history`]: [`NatsHistory`], the cluster's channel history in JetStream (positions and
//!   recovery on any node), used when the server has JetStream.
//! - `pump`: the publishing task (send queue → client) and the receiving task (subscriptions →
//!   events).
//! - `watch`: the client's connection events → `Connected` / `Disconnected`.
//! - `route`: the route shard subscriptions of interest routing, confirmed by a probe.
//! - `subjects`: `{prefix}.all` and `{prefix}.node.{id}`, with prefix validation.
//! - `servers`: the URL (one address or a comma-separated list), redaction for logs.
//! - [`options`]: [`NatsOptions`], the queue sizes and timings with their defaults.
//! - [`error`]: [`Error`], why `connect` failed.

//!
//! # What the cluster layer can rely on
//! - **Echo**: a message to `All` also comes back to its sender.
//! - **Order**: what one node sends to one destination arrives in send order. `All` and `Node`
//!   traffic are two subscriptions, so between them the order may differ from the send order.
//! - **At most once**: `send` returning `true` means queued (or, while the link is down, held
//!   by the shell's relay hold for up to `relay_hold`, then sent first), not delivered. The client buffers
//!   publishes during a reconnect and sends them after it; whatever other nodes publish while this
//!   one is disconnected is lost (core NATS keeps nothing): resync on `Connected`.
//! - **Payloads**: any bytes up to the server's `max_payload` (1 MiB by default;
//!   [`Nats::max_payload`], through `NatsAdapter::transport`); `send` refuses larger ones.
//! - **Timings** (defaults, see [`NatsOptions`]): a closed socket is noticed at once, a silent one
//!   after two unanswered PINGs (~10–15 s). The first reconnect attempt is immediate, then 50–100
//!   ms, then twice as long each time (each delay drawn from its upper half), capped at 5 s,
//!   forever.
//! - **Events**: `Connected` first; then `Disconnected` and `Connected` alternate, one per
//!   transition, `Connected` only once a probe round trip proved the subscriptions are back.
//!   Messages beyond `event_queue` waiting for the cluster layer are dropped and counted, never
//!   buffered.

pub mod adapter;
pub mod error;
pub mod history;
pub mod options;
mod pump;
mod route;
mod servers;
mod subjects;
mod watch;

pub use adapter::{Nats, NatsAdapter};
pub use error::Error;
pub use history::{delete_history_at, NatsHistory};
pub use options::NatsOptions;
pub use vestnik_broker::adapter::AdapterStats;
