//! The backbone's channel history: a [`HistoryStore`] numbers each channel's events for the whole
//! cluster and keeps the recent ones, so that positions mean the same on every node and a client
//! recovers on any node, also after its own node died.
//!
//! A store knows channels only as opaque stream names and events only as opaque bytes (the cluster
//! layer encodes them): it gives each appended event the channel's next offset (exactly one more
//! than the last, across all nodes), keeps the last `size` events for `ttl`, and remembers the
//! channel's epoch and last offset for [`QUIET_KEEP`](crate::history::QUIET_KEEP) after its last
//! event. Losing what it kept (a restart of an in-memory Redis, an eviction) must change the epoch,
//! never reuse offsets under the old one.
//!
//! Redis keeps its streams in Redis itself (one atomic script per append); [`MemoryStore`] is the
//! in-process one the [`MemoryHub`](super::MemoryHub) tests share. This module must never block:
//! every call is a future, and a store that cannot answer fails it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::hook::HookFuture;

/// One channel's stream in a store, with its bounds.
#[derive(Debug, Clone, Copy)]
pub struct StreamRef<'a> {
    /// The app id.
    pub app: &'a str,
    /// The channel name.
    pub channel: &'a str,
    /// Events kept.
    pub size: usize,
    /// How long an event is kept.
    pub ttl: Duration,
    /// Start the stream over under a new epoch before this append: this node delivered an event
    /// of the channel that it could not number.
    pub restart: bool,
}

/// One event to append to one channel's stream.
#[derive(Debug, Clone)]
pub struct Append<'a> {
    /// The channel's stream.
    pub stream: StreamRef<'a>,
    /// The event, as the cluster layer encoded it.
    pub event: Bytes,
    /// This append's id, unique in the cluster and the same when the append is asked again: a
    /// store answers an append it has already kept with the positions it gave it then rather
    /// than keep it twice (for at least [`DEDUPE_KEEP`]), so an append whose answer was lost can
    /// be asked again safely.
    pub id: u64,
}

impl<'a> Append<'a> {
    /// An append of `event` to `stream` under a fresh random id.
    pub fn new(stream: StreamRef<'a>, event: Bytes) -> Self {
        Self {
            stream,
            event,
            id: rand::random(),
        }
    }
}

/// How long a store remembers an append's id, so that asking it again within this time finds
/// the positions it got rather than keeping the event twice. Longer than the numbering asks
/// again after an answer it lost.
pub const DEDUPE_KEEP: Duration = Duration::from_secs(60);

/// Where an appended event landed in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The event's offset in it.
    pub offset: u64,
}

impl Appended {
    /// The position as frames carry it.
    pub fn as_position(&self) -> vestnik_protocol::message::Position<'_> {
        vestnik_protocol::message::Position {
            epoch: &self.epoch,
            offset: self.offset,
        }
    }
}

/// What a read of one stream found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredPage {
    /// The stream's epoch; `None` when the store knows nothing of the channel.
    pub epoch: Option<Arc<str>>,
    /// The offset of the channel's last event (0 before the first).
    pub top: u64,
    /// The offset of the oldest event still kept (`top + 1` when none is).
    pub first: u64,
    /// Events after the asked offset, oldest first, with their offsets: consecutive.
    pub events: Vec<(u64, Bytes)>,
}

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// Whether the call may have reached the store.
    pub kind: StoreErrorKind,
    /// What went wrong, for the logs (never a secret).
    pub message: String,
}

/// Whether a failed call may have acted in the store: what an append's caller may conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Nothing of the call acted in the store (it was not sent, or the store refused it before
    /// acting): an append kept nothing.
    Unsent,
    /// The call may have acted and its answer was lost (it timed out, its connection dropped
    /// after sending): an append may have been kept. Asking the same appends again (same ids)
    /// tells.
    Unknown,
}

impl StoreError {
    /// A failure before anything acted in the store.
    pub fn unsent(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Unsent,
            message: message.into(),
        }
    }

    /// A failure after which the store may have acted.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Unknown,
            message: message.into(),
        }
    }

    /// Whether an append that failed so may have been kept.
    pub fn may_have_acted(&self) -> bool {
        self.kind == StoreErrorKind::Unknown
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Cluster-wide channel history kept in the backbone. See the module documentation.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends each of `appends`, in order, at its channel's next offset (atomically per
    /// append; one call numbers a whole batch). Returns their positions, in the same order. An
    /// append whose id the store kept within [`DEDUPE_KEEP`] is not kept again: its answer is
    /// the positions it got then.
    fn append<'a>(
        &'a self,
        appends: &'a [Append<'a>],
    ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>>;

    /// Up to `limit` of the kept events of `stream` after offset `after`, with the stream's
    /// epoch and bounds.
    fn read<'a>(
        &'a self,
        stream: StreamRef<'a>,
        after: u64,
        limit: usize,
    ) -> HookFuture<'a, Result<StoredPage, StoreError>>;
}

/// A fresh epoch: 48 random bits in hex, as the node's own history makes them.
pub fn new_epoch() -> Arc<str> {
    let bits: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
    Arc::from(format!("{bits:012x}"))
}

/// One channel's stream in a [`MemoryStore`].
#[derive(Debug)]
struct MemStream {
    epoch: Arc<str>,
    top: u64,
    events: VecDeque<(u64, Instant, Bytes)>,
}

/// An in-process [`HistoryStore`] shared by the nodes of one [`MemoryHub`](super::MemoryHub),
/// for tests of the cluster layer. It can be switched off to play a backbone outage.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    streams: Arc<Mutex<HashMap<(String, String), MemStream>>>,
    /// The ids of the last [`MEMORY_IDS`] appends and their positions.
    ids: Arc<Mutex<SeenIds>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

/// Append ids a [`MemoryStore`] has kept, with their positions, oldest first.
#[derive(Debug, Default)]
struct SeenIds {
    at: HashMap<u64, Appended>,
    order: VecDeque<u64>,
}

/// How many append ids a [`MemoryStore`] remembers.
const MEMORY_IDS: usize = 65_536;

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail (`true`) or answer again (`false`), as a backbone outage would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::unsent("the store is down"));
        }
        Ok(())
    }
}

impl HistoryStore for MemoryStore {
    fn append<'a>(
        &'a self,
        appends: &'a [Append<'a>],
    ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            let now = Instant::now();
            let mut map = self.streams.lock();
            let mut ids = self.ids.lock();
            let mut out = Vec::with_capacity(appends.len());
            for Append {
                stream: s,
                event,
                id,
            } in appends
            {
                if let Some(kept) = ids.at.get(id) {
                    out.push(kept.clone());
                    continue;
                }
                let key = (s.app.to_owned(), s.channel.to_owned());
                let stream = map.entry(key).or_insert_with(|| MemStream {
                    epoch: new_epoch(),
                    top: 0,
                    events: VecDeque::new(),
                });
                if s.restart {
                    stream.epoch = new_epoch();
                    stream.top = 0;
                    stream.events.clear();
                }
                stream.top += 1;
                stream.events.push_back((stream.top, now, event.clone()));
                while stream.events.len() > s.size.max(1) {
                    stream.events.pop_front();
                }
                let at = Appended {
                    epoch: Arc::clone(&stream.epoch),
                    offset: stream.top,
                };
                ids.at.insert(*id, at.clone());
                ids.order.push_back(*id);
                if ids.order.len() > MEMORY_IDS {
                    if let Some(old) = ids.order.pop_front() {
                        ids.at.remove(&old);
                    }
                }
                out.push(at);
            }
            Ok(out)
        })
    }

    fn read<'a>(
        &'a self,
        stream: StreamRef<'a>,
        after: u64,
        limit: usize,
    ) -> HookFuture<'a, Result<StoredPage, StoreError>> {
        Box::pin(async move {
            self.check()?;
            let now = Instant::now();
            let map = self.streams.lock();
            let key = (stream.app.to_owned(), stream.channel.to_owned());
            let Some(s) = map.get(&key) else {
                return Ok(StoredPage {
                    first: 1,
                    ..StoredPage::default()
                });
            };
            let kept = s
                .events
                .iter()
                .filter(|(_, at, _)| now.saturating_duration_since(*at) < stream.ttl);
            let first = kept.clone().next().map_or(s.top + 1, |(o, _, _)| *o);
            Ok(StoredPage {
                epoch: Some(Arc::clone(&s.epoch)),
                top: s.top,
                first,
                events: kept
                    .filter(|(o, _, _)| *o > after)
                    .take(limit)
                    .map(|(o, _, b)| (*o, b.clone()))
                    .collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_append_asked_again_is_kept_once() {
        let store = MemoryStore::new();
        let stream = StreamRef {
            app: "app",
            channel: "c",
            size: 10,
            ttl: Duration::from_secs(60),
            restart: false,
        };
        let batch = [
            Append::new(stream, Bytes::from_static(b"one")),
            Append::new(stream, Bytes::from_static(b"two")),
        ];
        let first = store.append(&batch).await.unwrap();
        assert_eq!(store.append(&batch).await.unwrap(), first);
        assert_eq!(store.read(stream, 0, 10).await.unwrap().top, 2);
        let next = store
            .append(&[Append::new(stream, Bytes::from_static(b"three"))])
            .await
            .unwrap();
        assert_eq!(next[0].offset, 3);
    }
}
