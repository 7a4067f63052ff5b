//! Vestnik's core: apps, channels, presence rosters, connections and routing.
//!
//! The edges (HTTP, WebSocket) call [`Broker`]; the broker talks back to sockets only through each
//! connection's [`Outbox`](connection::Outbox). Events are encoded once and shared as `Bytes`. This
//! crate must never do IO: no HTTP, no WebSocket, no disk.
//!
//! # Layers
//! ```text
//!   edges (server: HTTP API, WebSocket sessions)
//!         │  connect, subscribe, publish, client_event, signin, channel_stats, …
//!         ▼
//!   Broker ───── ClusterHook (published, occupied, member_joined, remote_members, …)
//!     │   ▲                         │ implemented by
//!     │   │ local API               ▼
//!     │   └──────────────────  cluster: ClusterLink + ClusterNode (the cluster loop)
//!     │     publish_local,           │ Envelope { Msg } — private wire format
//!     │     apply_remote_member,     ▼
//!     │     local_snapshot, …    Adapter (bytes only: Local, Redis, NATS)
//!     ▼
//!   registry / presence / connection outboxes ──► sockets
//! ```
//! The broker is complete on its own: a one-node broker holds no hook, and every cluster branch
//! hangs off one `Option` check. Joining a cluster attaches a [`ClusterHook`](hook::ClusterHook);
//! the broker then tells it about the moments other nodes care about, in the broker's own types,
//! and the cluster layer turns them into wire messages. News from other nodes comes back through
//! the cluster loop, which calls the broker's narrow local API. The broker never names a wire
//! message, and the cluster never touches the broker's maps.
//!
//! # Layout
//! - [`adapter`]: the cross-node boundary that moves encoded cluster messages, and its local form.
//! - [`app`]: app configuration and the [`AppStore`](app::AppStore) boundary.
//! - [`live_apps`]: [`LiveAppStore`](live_apps::LiveAppStore), the apps a node serves, swapped
//!   whole on each change (database feed, config reload) without a lookup ever waiting.
//! - [`connection`]: [`ConnectionHandle`](connection::ConnectionHandle), a socket as the core sees it.
//! - [`outbox`]: a socket's bounded outbox, and the direct write to an idle socket.
//! - [`registry`]: the sharded channel map of one app, and fan-out.
//! - [`presence`]: presence rosters with per-user socket counts.
//! - [`broker`]: [`Broker`], the one API the edges call, one file per concern (connections,
//!   channels, users, publish, queries, and the local API the cluster layer calls).
//! - [`history`]: each channel's recent events with their positions, bounded, for recovery.
//! - [`hook`]: [`ClusterHook`](hook::ClusterHook), what the broker tells the cluster and asks of it.
//! - [`cluster`]: the layer over the broker that makes several nodes one: the link, the cluster
//!   loop, the private wire format, replicated presence.
//! - [`error`]: typed errors, each mapped to its Pusher code in one place.
//! - [`events`]: what happened on channels, reported to an [`EventSink`](events::EventSink).
//! - [`tap`]: the debug console's live copy of an app's events, free while nobody watches.
//! - [`usage`]: per-app usage counters (billing per hour, the daily message quota), atomics only.

pub mod adapter;
pub mod app;
pub mod broker;
pub mod cache;
pub mod cluster;
pub mod connection;
pub mod error;
pub mod events;
pub mod history;
pub mod hook;
pub mod live_apps;
pub mod outbox;
pub mod presence;
pub mod registry;
pub mod tap;
pub mod usage;

pub use app::{App, AppStore, PreviousSecret, StaticAppStore};
pub use broker::{
    AppRuntime, Broker, BrokerConfig, BrokerStats, Numbering, PublishEvent, SubscribeReady,
};
pub use connection::{
    CloseRequest, Connection, ConnectionHandle, DirectWrite, Drained, Outbox, Pushed, Sent,
};
pub use error::{ClientEventError, ConnectError, SigninError, SubscribeError};
pub use events::{BrokerEvent, EventSink, NoEvents};
pub use history::{HistoryConfig, HistoryRule};
pub use live_apps::{AppChange, LiveAppStore};
pub use tap::{Tap, TapItem, TapWatch};
pub use usage::{TakenUsage, UsageCounters};
