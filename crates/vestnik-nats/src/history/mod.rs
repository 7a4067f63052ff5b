//! [`NatsHistory`]: the cluster's channel history kept in NATS JetStream, so positions are
//! cluster-wide and a client recovers on any node (see `vestnik_broker::adapter::HistoryStore`),
//! as `vestnik-redis`'s `RedisHistory` does on Redis.
//!
//! One stream per cluster keeps every channel's events, one subject per channel, one message per
//! appended batch of a channel (names and headers in `wire`, the payload in `codec`):
//!
//! - **Numbering.** An append reads the last message of the channel's subject (its epoch, first
//!   offset and number of events give the channel's last offset), then publishes the batch at the
//!   next offset with `Nats-Expected-Last-Subject-Sequence` set to that message's sequence: if
//!   another node appended meanwhile, JetStream refuses it (wrong last sequence) and the append
//!   reads again and retries after a short random pause, up to [`MAX_RETRIES`] times. So two
//!   nodes publishing to one channel at once get consecutive offsets, never the same one.
//! - **Epochs.** A channel without a message starts under a new epoch; so does an append asked to
//!   `restart`. A read of a channel JetStream does not know starts it with an empty batch (offset 0
//!   under a new epoch), so the position a subscriber is told holds from then on, as on Redis.
//!   Messages of an older epoch are skipped when reading.
//! - **Bounds.** JetStream keeps per subject as many messages as the largest per-channel `size`
//!   configured so far (each message holds at least one event, so at least `size` events) and each
//!   message for 24 h (the quiet keep) plus the largest `ttl` seen: the stream's config is raised
//!   when a larger one appears, never lowered. A read trims to the channel's own `size` and `ttl`
//!   (by the time the server stored each message, compared with this node's clock).
//! - **Reads.** One direct get of the subject's last message, then, unless that batch alone
//!   reaches back far enough, one direct get per older kept message of the subject (nats-server
//!   2.9 has no batch get), oldest first, stopping once the page is full.
//! - **Failures.** Every JetStream call has [`CALL_TIMEOUT`], a whole append or read
//!   [`OP_TIMEOUT`]; while the client is disconnected every call fails at once rather than wait,
//!   so the broker sends events unnumbered and answers recoveries `backbone_unavailable`, as with
//!   Redis down. A stream that vanished (a server restarted without its store) is made again on
//!   the next call, and its channels start over under new epochs.
//!
//! This module must never block and never panic on a NATS failure: it answers an error.

mod append;
mod codec;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::connection::State;
use async_nats::jetstream::stream::{
    Config, DirectGetErrorKind, DiscardPolicy, StorageType, Stream,
};
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use bytes::Bytes;
use vestnik_broker::adapter::{
    new_epoch, Append, Appended, HistoryStore, StoreError, StoredPage, StreamRef,
};
use vestnik_broker::history::QUIET_KEEP;
use vestnik_broker::hook::HookFuture;

use wire::Batch;

use crate::{servers, Error};

/// The longest one JetStream call (a publish and its ack, a direct get, a stream update) waits.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a whole append or read waits (retries and a read's walk included): a trigger waits
/// this long at most before its events go out without positions.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// How often an append reads again and retries after another node appended to the same channel
/// between its read and its publish.
pub const MAX_RETRIES: usize = 32;

/// How long this node trusts what it last saw of the stream's limits before it looks again: another
/// node raising them from an older view of the config could have lowered them meanwhile.
const RECHECK: Duration = Duration::from_secs(60);

/// The NATS JetStream [`HistoryStore`]. See the module documentation.
pub struct NatsHistory {
    client: Client,
    js: Context,
    prefix: String,
    stream_name: String,
    /// The stream and the limits its config is known to have, once made.
    ready: parking_lot::Mutex<Option<Ready>>,
    /// Held while the stream is made or its config raised, so nodes' calls do it once at a time.
    setup: tokio::sync::Mutex<()>,
}

/// The stream as this node last made or saw it.
#[derive(Clone)]
struct Ready {
    /// Shared, not cloned per call: the handle carries the stream's whole info.
    stream: Arc<Stream>,
    /// Messages kept per subject (`i64::MAX`: no limit).
    size: i64,
    /// How long a message is kept (`Duration::MAX`: no limit).
    age: Duration,
    /// When the limits were read from the server.
    at: Instant,
}

impl std::fmt::Debug for NatsHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsHistory")
            .field("prefix", &self.prefix)
            .field("stream", &self.stream_name)
            .finish_non_exhaustive()
    }
}

impl NatsHistory {
    /// The store of cluster `prefix` over `client` (the adapter's own connection, or any other).
    /// Nothing is asked of the server until the first call; the stream is made then.
    pub fn new(client: Client, prefix: &str) -> Self {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(CALL_TIMEOUT)
            .ack_timeout(CALL_TIMEOUT)
            .build(client.clone());
        Self {
            client,
            js,
            prefix: prefix.to_owned(),
            stream_name: wire::stream_name(prefix),
            ready: parking_lot::Mutex::new(None),
            setup: tokio::sync::Mutex::new(()),
        }
    }

    /// Connects a client of its own to `url` (one address or a comma-separated list) and makes
    /// the store of cluster `prefix` on it, for tools and tests; nodes share their adapter's
    /// connection (see [`NatsAdapter`](crate::NatsAdapter)). Fails when the first connection
    /// cannot be made; the client reconnects by itself afterwards.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, Error> {
        let client = async_nats::ConnectOptions::new()
            .name("vestnik-history")
            .connection_timeout(CALL_TIMEOUT)
            .max_reconnects(None)
            .connect(servers::parse(url)?)
            .await?;
        Ok(Self::new(client, prefix))
    }

    /// Whether the server behind `client` has JetStream: `$JS.API.INFO` answered within
    /// [`CALL_TIMEOUT`]. Without it the adapter keeps no cluster-wide history.
    pub async fn available(client: &Client) -> bool {
        // The raw request rather than `query_account`, whose answer type wants fields
        // nats-server 2.9 does not send.
        let asked =
            tokio::time::timeout(CALL_TIMEOUT, client.request("$JS.API.INFO", Bytes::new())).await;
        let Ok(Ok(answer)) = asked else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&answer.payload)
            .is_ok_and(|v| v.is_object() && v.get("error").is_none())
    }

    /// The name of the JetStream stream that keeps the history of cluster `prefix`.
    pub fn stream_name_of(prefix: &str) -> String {
        wire::stream_name(prefix)
    }

    /// Fails at once while the client is not connected, rather than wait for a timeout.
    fn check(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(StoreError::unsent("nats is unreachable")),
        }
    }

    /// Forgets the stream after a failure that may mean it is gone: the next call makes it again.
    fn forget(&self) {
        *self.ready.lock() = None;
    }

    /// The stream, made now or its limits raised if it does not keep `size` messages per subject
    /// for the quiet keep plus `ttl` yet.
    async fn stream(&self, size: usize, ttl: Duration) -> Result<Arc<Stream>, StoreError> {
        let size = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        let age = QUIET_KEEP.saturating_add(ttl);
        let enough = |r: &Ready| r.size >= size && r.age >= age && r.at.elapsed() < RECHECK;
        if let Some(r) = self.ready.lock().as_ref().filter(|r| enough(r)) {
            return Ok(Arc::clone(&r.stream));
        }
        let _setup = self.setup.lock().await;
        let known = self.ready.lock().clone();
        if let Some(r) = known.as_ref().filter(|r| enough(r)) {
            return Ok(Arc::clone(&r.stream));
        }
        let (size, age) = known.map_or((size, age), |r| (r.size.max(size), r.age.max(age)));
        let config = Config {
            name: self.stream_name.clone(),
            description: Some(format!(
                "Vestnik channel history of cluster {:?}",
                self.prefix
            )),
            subjects: vec![wire::stream_subjects(&self.prefix)],
            max_messages_per_subject: config_size(size),
            max_age: config_age(age),
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        };
        let mut stream = match call(self.js.get_or_create_stream(config)).await {
            Ok(stream) => stream,
            // Another node made the stream between our look-up and our create; JetStream answers
            // that race with an error ("subjects overlap with an existing stream", or "name
            // already in use" when its limits differ). Take the stream it made; if there is none,
            // the create's error stands.
            Err(create) => call(self.js.get_stream(&self.stream_name))
                .await
                .map_err(|_| create)?,
        };
        let mut have = stream.cached_info().config.clone();
        // Another node may have made it with other limits: raise what is lower, keep what is higher.
        let have_size = unlimited_if_not_positive(have.max_messages_per_subject);
        let have_age = if have.max_age.is_zero() {
            Duration::MAX
        } else {
            have.max_age
        };
        if have_size < size || have_age < age || !have.allow_direct {
            have.max_messages_per_subject = config_size(have_size.max(size));
            have.max_age = config_age(have_age.max(age));
            have.allow_direct = true;
            call(self.js.update_stream(have)).await?;
            stream = call(self.js.get_stream(&self.stream_name)).await?;
        }
        let config = &stream.cached_info().config;
        let ready = Ready {
            size: unlimited_if_not_positive(config.max_messages_per_subject),
            age: if config.max_age.is_zero() {
                Duration::MAX
            } else {
                config.max_age
            },
            stream: Arc::new(stream),
            at: Instant::now(),
        };
        let stream = Arc::clone(&ready.stream);
        *self.ready.lock() = Some(ready);
        Ok(stream)
    }

    /// The last message of `subject`, or `None` when it has none.
    async fn last(&self, stream: &Stream, subject: &str) -> Result<Option<Batch>, StoreError> {
        self.check()?;
        match read_timed(|| stream.direct_get_last_for_subject(subject)).await? {
            Ok(m) => Batch::of(&m).map(Some).ok_or_else(not_ours),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => {
                self.forget();
                Err(StoreError::unsent(format!(
                    "nats: reading the history: {e}"
                )))
            }
        }
    }

    /// The last message of `subject`, starting the channel (an empty batch at offset 0 under a
    /// new epoch) if it has none.
    async fn last_or_start(
        &self,
        limits: &StreamRef<'_>,
        subject: &str,
    ) -> Result<Batch, StoreError> {
        for _ in 0..=MAX_RETRIES {
            let stream = self.stream(limits.size, limits.ttl).await?;
            if let Some(last) = self.last(&stream, subject).await? {
                return Ok(last);
            }
            self.publish(subject, &new_epoch(), 1, 0, codec::encode([]), None)
                .await?;
        }
        Err(StoreError::unsent(format!(
            "nats: {subject} could not be started in {MAX_RETRIES} tries"
        )))
    }

    /// See [`HistoryStore::read`].
    async fn read_page(
        &self,
        limits: StreamRef<'_>,
        after: u64,
        limit: usize,
    ) -> Result<StoredPage, StoreError> {
        self.check()?;
        let subject = wire::subject(&self.prefix, limits.app, limits.channel)
            .ok_or_else(|| StoreError::unsent("an empty app id or channel name"))?;
        let last = self.last_or_start(&limits, &subject).await?;
        let stream = self.stream(limits.size, limits.ttl).await?;
        let top = last.top();
        let mut page = Page {
            epoch: Arc::clone(&last.epoch),
            lowest: top.saturating_sub(limits.size.max(1) as u64) + 1,
            cutoff: SystemTime::now()
                .checked_sub(limits.ttl)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            top,
            after,
            limit,
            first: top + 1,
            events: Vec::new(),
        };
        // Older messages can add something only if the last one is kept and starts after the
        // oldest event the channel's size keeps (times rise with sequences: an expired last
        // message means all older ones expired too).
        if page.keeps(&last) && last.first > page.lowest {
            let mut seq = 1;
            while seq < last.seq && !page.full() {
                self.check()?;
                let m = match read_timed(|| {
                    stream.direct_get_next_for_subject(subject.as_str(), Some(seq))
                })
                .await?
                {
                    Ok(m) => m,
                    // Expired or trimmed meanwhile: nothing older is left.
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                    Err(e) => {
                        self.forget();
                        return Err(StoreError::unsent(format!(
                            "nats: reading the history: {e}"
                        )));
                    }
                };
                if m.sequence >= last.seq {
                    break;
                }
                seq = m.sequence + 1;
                if let Some(batch) = Batch::of(&m) {
                    page.take(&batch);
                }
            }
        }
        page.take(&last);
        Ok(StoredPage {
            epoch: Some(page.epoch),
            top,
            first: page.first,
            events: page.events,
        })
    }
}

/// A read being assembled from a channel's messages, oldest first.
struct Page {
    epoch: Arc<str>,
    /// The oldest offset the channel's `size` keeps.
    lowest: u64,
    /// Messages stored before this have expired by the channel's `ttl`.
    cutoff: SystemTime,
    top: u64,
    after: u64,
    limit: usize,
    /// The oldest kept offset seen so far (`top + 1`: none yet).
    first: u64,
    events: Vec<(u64, Bytes)>,
}

impl Page {
    /// Whether `b`'s events are kept: the current epoch, not expired.
    fn keeps(&self, b: &Batch) -> bool {
        *b.epoch == *self.epoch && b.at >= self.cutoff
    }

    /// The oldest kept event is known and the page has `limit` events: older messages change
    /// nothing any more.
    fn full(&self) -> bool {
        self.first <= self.top && self.events.len() >= self.limit
    }

    /// Takes what `b` holds of the page, given that no younger message was taken yet.
    fn take(&mut self, b: &Batch) {
        if !self.keeps(b) {
            return;
        }
        for (offset, event) in (b.first..).zip(&b.events) {
            if offset < self.lowest || offset > self.top {
                continue;
            }
            self.first = self.first.min(offset);
            if offset > self.after && self.events.len() < self.limit {
                self.events.push((offset, event.clone()));
            }
        }
    }
}

/// `n`, or no limit for JetStream's 0 or -1.
fn unlimited_if_not_positive(n: i64) -> i64 {
    if n <= 0 {
        i64::MAX
    } else {
        n
    }
}

/// JetStream's way to say no limit on messages per subject (-1) for `i64::MAX`.
fn config_size(n: i64) -> i64 {
    if n == i64::MAX {
        -1
    } else {
        n
    }
}

/// JetStream's way to say no age limit (0) for `Duration::MAX`.
fn config_age(d: Duration) -> Duration {
    if d == Duration::MAX {
        Duration::ZERO
    } else {
        d
    }
}

/// The error for a message this crate did not write on a history subject.
fn not_ours() -> StoreError {
    StoreError::unknown("nats: a history message without Vestnik's headers")
}

/// Runs one JetStream call within [`CALL_TIMEOUT`], leaving its own error to the caller.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| no_answer())
}

/// The error of a call that got no answer within [`CALL_TIMEOUT`]: it may or may not have been
/// done.
fn no_answer() -> StoreError {
    StoreError::unknown(format!("nats did not answer within {CALL_TIMEOUT:?}"))
}

/// How long one try of a direct get waits for its answer before the get is sent again.
///
/// nats-server drops a direct get that arrives while the stream is being made by another node
/// (`nodes_making_the_stream_at_once_all_append` in `tests/history.rs` saw it: the first try never
/// answered, the second answered at once). A get is a read, so sending it again is safe.
const READ_TRY: Duration = Duration::from_millis(250);

/// Runs a direct get, sending it again after each [`READ_TRY`] without an answer, within
/// [`CALL_TIMEOUT`] in all.
async fn read_timed<T, F: std::future::Future<Output = T>>(
    mut get: impl FnMut() -> F,
) -> Result<T, StoreError> {
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(no_answer());
        }
        if let Ok(answer) = tokio::time::timeout(READ_TRY.min(left), get()).await {
            return Ok(answer);
        }
    }
}

/// Runs one JetStream call within [`CALL_TIMEOUT`], its error as a [`StoreError`].
async fn call<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    timed(call)
        .await?
        .map_err(|e| StoreError::unsent(format!("nats: the history stream: {e}")))
}

/// Runs a whole append or read within [`OP_TIMEOUT`].
async fn op<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::unknown(format!(
                "nats: the history did not answer within {OP_TIMEOUT:?}"
            )))
        })
}

impl HistoryStore for NatsHistory {
    fn append<'a>(
        &'a self,
        appends: &'a [Append<'a>],
    ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>> {
        Box::pin(op(self.append_all(appends)))
    }

    fn read<'a>(
        &'a self,
        stream: StreamRef<'a>,
        after: u64,
        limit: usize,
    ) -> HookFuture<'a, Result<StoredPage, StoreError>> {
        Box::pin(op(self.read_page(stream, after, limit)))
    }
}

/// Deletes the history stream of cluster `prefix` on the server at `url`, for tests and for
/// operators retiring a cluster: everything it kept is gone, and nodes still running make it
/// again on their next call (their channels start over under new epochs). `Ok(false)`: there was
/// none.
pub async fn delete_history_at(url: &str, prefix: &str) -> Result<bool, Error> {
    let client = async_nats::ConnectOptions::new()
        .name("vestnik-history-delete")
        .connection_timeout(CALL_TIMEOUT)
        .connect(servers::parse(url)?)
        .await?;
    let js = jetstream::context::ContextBuilder::new()
        .timeout(CALL_TIMEOUT)
        .build(client);
    let name = wire::stream_name(prefix);
    match js.delete_stream(&name).await {
        Ok(status) => Ok(status.success),
        Err(e) => match e.kind() {
            jetstream::context::DeleteStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(false)
            }
            _ => Err(Error::JetStream(format!("deleting stream {name}: {e}"))),
        },
    }
}
