//! Default limits, each with its source.
//!
//! Every number the broker enforces by default lives here (or in the config, which starts from these),
//! so that no magic number hides in the code. This module must never hold runtime state.

/// Longest accepted channel name, prefix included. Pusher's docs say 164, but the Node and Python SDKs,
/// soketi and sockudo all allow 200, and refusing what an official SDK sends would break users.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// Longest accepted event name (Node and Python SDKs, soketi, sockudo: 200).
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// Largest event `data`, in bytes: "10 KB" in Pusher's REST API docs; above it the API answers 413.
pub const MAX_EVENT_BYTES: usize = 10 * 1024;

/// Most channels in one trigger (Pusher REST API docs; enforced by every official SDK).
pub const MAX_CHANNELS_PER_TRIGGER: usize = 100;

/// Most events in one `batch_events` call (Pusher REST API docs).
pub const MAX_BATCH_EVENTS: usize = 10;

/// Most members in one presence channel (Pusher presence-channels docs).
pub const MAX_PRESENCE_MEMBERS: usize = 100;

/// Largest presence `user_info`, in bytes of raw JSON (Pusher presence-channels docs: 1 KB). It
/// bounds sign-in's `user_data` too: a signed-in socket joins presence without `channel_data` as
/// the user it signed in as, `user_info` included.
pub const MAX_USER_INFO_BYTES: usize = 1024;

/// Longest presence `user_id` (Pusher presence-channels docs: 128 characters).
pub const MAX_USER_ID_LEN: usize = 128;

/// Deepest nesting of arrays and objects accepted in a presence `channel_data` or a sign-in
/// `user_data`, the object itself counting as 1. Pusher documents no limit; serde_json re-parses a
/// value of at most 127 levels, and a member's `user_info` travels inside larger documents
/// (`subscription_succeeded` adds 3 levels around it, the cluster wire more), so half of that
/// leaves every reader room while no real `user_info` comes close.
pub const MAX_JSON_DEPTH: usize = 64;

/// Client events each socket may send per second (Pusher events docs).
pub const CLIENT_EVENTS_PER_SECOND: u32 = 10;

/// Most user ids a watchlist may hold; the rest are dropped with error 4302 (Pusher protocol docs).
/// A repeated id counts once: the watchlist is a set of users, kept in first-seen order.
pub const MAX_WATCHLIST: usize = 100;

/// How far `auth_timestamp` may be from the server's clock, in seconds (Pusher REST API docs).
pub const AUTH_TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Seconds of silence after which the server pings a socket; sent in the handshake (Pusher recommends
/// 120; pusher-js refuses a handshake without it).
pub const ACTIVITY_TIMEOUT_SECS: u64 = 120;

/// Seconds the server waits for a pong after its ping before closing with 4201 (pusher-js
/// `pongTimeout` default, mirrored on the server side).
pub const PONG_TIMEOUT_SECS: u64 = 30;

/// How long a cache channel keeps its last event (Pusher cache-channels docs: up to 30 minutes).
pub const CACHE_TTL_SECS: u64 = 30 * 60;

/// Largest WebSocket message a client may send, in bytes. A client event carries at most
/// [`MAX_EVENT_BYTES`] of data plus its envelope; a presence subscribe carries at most
/// [`MAX_USER_INFO_BYTES`] plus the signature. 64 KiB leaves room for raised per-app limits while
/// keeping a hostile client from making the server buffer megabytes (tungstenite's default is 64 MiB).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// Frames a socket's outbound queue may hold before the socket counts as a slow consumer and is closed
/// with 4100. The writer drains the whole queue on every wake-up, so a healthy socket never holds more
/// than a few; 1024 absorbs a burst of a second or more at high fan-out rates.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Lowest and highest protocol versions served. pusher-js sends 7; 5 and 6 differ only in details the
/// server does not depend on.
pub const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Subscription-count events on a channel with more than this many subscribers are throttled to one per
/// [`SUBSCRIPTION_COUNT_INTERVAL_SECS`] (Pusher events docs).
pub const SUBSCRIPTION_COUNT_THROTTLE_ABOVE: usize = 100;

/// Minimum interval between throttled subscription-count events, in seconds (Pusher events docs).
pub const SUBSCRIPTION_COUNT_INTERVAL_SECS: u64 = 5;

/// Milliseconds over which a drain spreads its 4200 closes by default (issue 7: "default 10 s"; the
/// same order as nats-server's lame-duck duration, long enough that reconnects do not stampede the
/// other nodes, short enough for Kubernetes' default 30 s termination grace).
pub const DRAIN_WINDOW_MS: u64 = 10_000;

/// Longest drain window accepted: Kubernetes' `terminationGracePeriodSeconds` is usually set in
/// minutes at most, and a node draining longer is killed mid-drain anyway.
pub const MAX_DRAIN_WINDOW_MS: u64 = 600_000;

/// Milliseconds between the drain's start and its first close by default: load balancers probing
/// `/ready` every second or two (Kubernetes' default `periodSeconds` is 10, but readiness changes are
/// noticed on the next probe) stop sending new clients before the first ones are closed. nats-server
/// waits a 10 s grace; one second keeps restarts quick when sockets can reconnect anywhere.
pub const DRAIN_GRACE_MS: u64 = 1_000;

/// Seconds a client has to send its request headers or finish its TLS handshake (slowloris). Browsers
/// send the upgrade in one packet; 10 s leaves room for slow mobile links (nginx's
/// `client_header_timeout` defaults to 60 s, Go's servers commonly use 5-10 s).
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Milliseconds one write to a socket may take before its client counts as one that stopped reading:
/// the socket is then dropped without a close handshake and counted as a slow consumer (4100). A
/// write hands the kernel at most the socket's write buffer plus one frame, which a reading client
/// takes in milliseconds; 5 s rides out the stalls of a mobile link changing cells (typically 1-3 s)
/// while bounding how long a client that stopped reading keeps its queue, its memberships, and its
/// session's pings and reads stuck behind the write.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;

/// Seconds of the per-IP connection-rate window by default (counted as a fixed window per IP).
pub const IP_CONNECTION_WINDOW_SECS: u64 = 60;

/// Most channels one socket may join by default. Pusher documents no per-socket cap; real pages join a
/// handful, and 100 still covers dashboards while bounding what one socket can pin in the registry.
pub const MAX_CHANNELS_PER_SOCKET: usize = 100;

/// Milliseconds between two batches of a drain's closes. Ten batches a second spread the reconnects
/// smoothly (a 10 s window gives 100 batches) without waking the drain more often than needed.
pub const DRAIN_BATCH_INTERVAL_MS: u64 = 100;

/// Events a channel's history keeps by default. Our choice, cheap on purpose: enough to cover a
/// reconnect of a few seconds on a busy channel (centrifuge's examples use 10 to 100).
pub const HISTORY_SIZE: usize = 100;

/// Seconds a channel's history keeps an event by default: a phone through a tunnel, a laptop lid, a
/// rolling deploy. Our choice; centrifuge's examples keep 300 s too.
pub const HISTORY_TTL_SECS: u64 = 300;

/// Bytes of history one app may hold on a node by default (frames plus a fixed per-event overhead).
/// Over it, the channels published to longest ago lose their history (and their epoch). Our choice:
/// 16 MiB holds about 50,000 events of 300 bytes.
pub const HISTORY_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Most events one recovery replays. The replay goes into the socket's bounded outbox at once, so it
/// must leave room in [`OUTBOX_CAPACITY`] for live events; more than this is answered `too_old`.
pub const MAX_RECOVERED_EVENTS: usize = OUTBOX_CAPACITY / 2;
