//! Vestnik's Redis adapter: an [`Adapter`](vestnik_broker::adapter::Adapter) that moves opaque,
//! already-encoded cluster messages between nodes over Redis pub/sub, and reports when Redis comes
//! and goes. The cluster semantics (heartbeats, presence, queries) live in the broker core; this
//! crate is bytes in, bytes out.
//!
//! It must never interpret a payload, never block the caller of `send`, and never panic on a
//! network failure: a lost Redis is a `Disconnected` event, a reconnect with backoff, and a
//! `Connected` event.
//!
//! # Layout
//! - [`adapter`]: [`RedisAdapter`], the shared `AdapterShell` (`connect`, `send`, `events`,
//!   `stats`, `close`) over the [`Redis`] transport.
//! - `link`: the adapter's one task: serve a session, reconnect with backoff, emit events.
//! - `history`: [`RedisHistory`], the cluster's channel history in Redis (positions and recovery
//!   on any node).
//! - `session`: one connection lifetime: subscriber + publisher connections (per master on a
//!   cluster), channel names.
//! - `target`: URL parsing (`redis://`, `rediss://`, unix sockets, `redis+sentinel://`,
//!   `redis+cluster://`) and a cluster's slot map.
//! - `slots`: Redis Cluster hash slots (CRC16/XMODEM, hash tags).
//! - [`options`]: [`RedisOptions`], the queue sizes and timings with their defaults.
//! - [`error`]: [`Error`], why `connect` failed.
//!
//! # Backends
//! A single Redis (`redis://`, `rediss://`, `redis+unix://`), Redis Sentinel
//! (`redis+sentinel://host:26379,host2/mymaster`, master re-resolved on every reconnect) and Redis
//! Cluster (`redis+cluster://host:port,host:port`, `rediss+cluster://` with TLS) are supported.
//! Route shards (interest routing) are Redis 7 sharded channels (`SSUBSCRIBE`, `SPUBLISH`). On a
//! cluster the adapter asks the seeds for `CLUSTER SLOTS`, holds a subscriber and a publisher per
//! master, sends each shard channel to the master of its slot (`slots`: CRC16 with hash tags) and
//! the classic channels to the master of slot 0; a lost master, a `MOVED` or `CLUSTERDOWN`
//! answer, or a shard subscription Redis ended by itself (a slot moved) ends the session, and
//! the ordinary reconnect asks for the slot map again. On a cluster, order holds per master.
//!
//! # What the cluster layer can rely on
//! - **Echo**: a message to `All` also comes back to its sender.
//! - **Order**: everything one node sends arrives in send order, `All` and `Node` alike (one
//!   publishing pipeline, one subscriber connection). On a Redis Cluster this holds per master:
//!   messages through two masters travel on two connections.
//! - **At most once**: `send` returning `true` means queued (or, while the link is down, held
//!   by the shell's relay hold for up to `relay_hold`, then sent first), not delivered. Messages queued before
//!   a loss are published after the reconnect; a pipeline that failed with the connection is lost
//!   and counted. Whatever other nodes publish while this one is disconnected is lost (Redis
//!   pub/sub keeps nothing): resync on `Connected`.
//! - **Payloads**: any bytes, empty included. Keep them small: Redis disconnects a subscriber
//!   whose output buffer passes `client-output-buffer-limit pubsub` (32 MiB at once, or 8 MiB for
//!   60 s, by default), and one big message delays all others.
//! - **Timings** (defaults, see [`RedisOptions`]): a closed socket is noticed at once, a silent one
//!   within `health_interval + response_timeout` (~10 s). Reconnects wait 50–100 ms, then twice as
//!   long each time (each delay drawn from its upper half), capped at 5 s, forever.
//! - **Events**: `Connected` first; then `Disconnected` and `Connected` alternate, one per
//!   transition, `Connected` only once both SUBSCRIBEs are confirmed. Messages beyond
//!   `event_queue` waiting for the cluster layer are dropped and counted, never buffered.

pub mod adapter;
pub mod error;
mod history;
mod link;
pub mod options;
mod session;
mod slots;
mod target;

pub use adapter::{Redis, RedisAdapter};
pub use error::Error;
pub use history::RedisHistory;
pub use options::RedisOptions;
pub use vestnik_broker::adapter::AdapterStats;
