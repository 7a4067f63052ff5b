//! The core's view of a socket: a [`ConnectionHandle`] with its id, app, state and [`Outbox`].
//!
//! The outbox is the only way the core talks to a socket. It is a bounded queue of encoded frames
//! (`Bytes`, shared with every other recipient) that the socket's writer drains in one go, so frames
//! queued while a write was in flight go out together in one syscall. A publisher never waits on it: a
//! full outbox marks the socket as a slow consumer and asks the writer to close it with 4100. This
//! module must never do IO and never hold its lock across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use vestnik_protocol::{ChannelName, PusherCode, SocketId};

use crate::app::App;

/// A close the writer should perform after sending the frames queued before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The Pusher close code.
    pub code: PusherCode,
    /// The close reason text.
    pub reason: String,
}

#[derive(Debug, Default)]
struct OutboxQueue {
    frames: VecDeque<Bytes>,
    /// When the oldest waiting frame was queued: set when the queue turns non-empty, taken by the
    /// writer's drain. One timestamp per batch rather than per frame keeps the queue a plain
    /// `VecDeque<Bytes>`, and the oldest frame is the one whose latency matters.
    oldest: Option<Instant>,
    close: Option<CloseRequest>,
    closed: bool,
}

/// What one drain of the outbox hands the writer besides the frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drained {
    /// The close to perform after writing the frames, if one was requested.
    pub close: Option<CloseRequest>,
    /// When the oldest drained frame was queued, for the publish-to-write latency; `None` when the
    /// drain took no frame.
    pub queued_at: Option<Instant>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The socket is closing; the frame is dropped.
    Closed,
    /// The queue was full: the socket is too slow and is now being closed with 4100.
    SlowConsumer,
}

/// A socket's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<OutboxQueue>,
    notify: Notify,
    capacity: usize,
}

impl Outbox {
    /// An empty outbox that holds at most `capacity` frames. Allocates nothing until used.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(OutboxQueue::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues a frame without waiting. A full queue closes the socket with 4100 and drops what was
    /// queued, so a slow socket never holds memory or slows anyone else.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut q = self.queue.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if q.frames.len() >= self.capacity {
            q.frames = VecDeque::new();
            q.oldest = None;
            q.closed = true;
            q.close = Some(CloseRequest {
                code: PusherCode::OverCapacity,
                reason: "Slow consumer: outbound queue full".into(),
            });
            drop(q);
            self.notify.notify_one();
            return Err(PushError::SlowConsumer);
        }
        let was_empty = q.frames.is_empty();
        if was_empty {
            q.oldest = Some(Instant::now());
        }
        q.frames.push_back(frame);
        drop(q);
        // A writer that is awake will find this frame when it next drains; only wake an idle one.
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Asks the writer to close the socket after the frames already queued. The first close wins.
    pub fn close(&self, code: PusherCode, reason: impl Into<String>) {
        let mut q = self.queue.lock();
        if q.closed {
            return;
        }
        q.closed = true;
        q.close = Some(CloseRequest {
            code,
            reason: reason.into(),
        });
        drop(q);
        self.notify.notify_one();
    }

    /// Whether a close has been requested.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    /// Moves every queued frame into `out` without waiting, and returns the close request, if any,
    /// and when the oldest of those frames was queued.
    pub fn drain_now(&self, out: &mut VecDeque<Bytes>) -> Drained {
        let mut q = self.queue.lock();
        if out.is_empty() {
            std::mem::swap(&mut q.frames, out);
        } else {
            out.extend(q.frames.drain(..));
        }
        Drained {
            close: q.close.take(),
            queued_at: q.oldest.take(),
        }
    }

    /// Waits until there is something to do, then moves every queued frame into `out` (which should be
    /// empty) and returns the close request, if one was made, with the oldest frame's queueing time.
    /// Cancel-safe: nothing is taken before the wait completes.
    pub async fn next_batch(&self, out: &mut VecDeque<Bytes>) -> Drained {
        loop {
            {
                let q = self.queue.lock();
                if !q.frames.is_empty() || q.close.is_some() {
                    drop(q);
                    return self.drain_now(out);
                }
            }
            self.notify.notified().await;
        }
    }

    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A signed-in user on a socket.
#[derive(Debug, Clone)]
pub struct SignedInUser {
    /// The user id from `user_data`.
    pub id: Arc<str>,
    /// Users this socket watches.
    pub watchlist: Vec<Arc<str>>,
    /// The user's info, shared in presence channels joined without `channel_data`.
    pub info: Option<Box<serde_json::value::RawValue>>,
}

/// Token bucket for client events.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            tokens: f64::from(per_second),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available. The bucket holds one second's worth.
    pub(crate) fn try_take(&mut self, per_second: u32, now: Instant) -> bool {
        let rate = f64::from(per_second);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Mutable state of a socket, guarded by one lock that is never held while a registry lock is taken
/// by someone else first (see docs/architecture.md for the lock order).
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// Channels joined, with the presence user id for presence channels.
    pub(crate) channels: HashMap<ChannelName, Option<Arc<str>>>,
    /// The signed-in user, if any.
    pub(crate) user: Option<SignedInUser>,
    /// Client event limiter, created on the first client event.
    pub(crate) rate: Option<RateLimiter>,
    /// Set once the broker has removed the socket everywhere.
    pub(crate) disconnected: bool,
}

/// One socket as the core sees it.
#[derive(Debug)]
pub struct Connection {
    socket_id: SocketId,
    app: Arc<App>,
    outbox: Outbox,
    pub(crate) state: Mutex<ConnectionState>,
}

/// A shared handle on a socket: cheap to clone, held by every channel the socket joined.
pub type ConnectionHandle = Arc<Connection>;

impl Connection {
    pub(crate) fn new(socket_id: SocketId, app: Arc<App>, outbox_capacity: usize) -> Self {
        Self {
            socket_id,
            app,
            outbox: Outbox::new(outbox_capacity),
            state: Mutex::new(ConnectionState {
                channels: HashMap::new(),
                user: None,
                rate: None,
                disconnected: false,
            }),
        }
    }

    /// The socket's id.
    pub fn socket_id(&self) -> SocketId {
        self.socket_id
    }

    /// The app the socket belongs to.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The socket's outbound queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The signed-in user's id, if the socket signed in.
    pub fn user_id(&self) -> Option<Arc<str>> {
        self.state.lock().user.as_ref().map(|u| u.id.clone())
    }

    /// Number of channels joined.
    pub fn channel_count(&self) -> usize {
        self.state.lock().channels.len()
    }

    /// Queues a frame for this socket; a full queue closes it (see [`Outbox::push`]).
    pub fn send(&self, frame: Bytes) {
        // A refused push has already asked the writer to close the socket; nothing more to do here.
        let _ = self.outbox.push(frame);
    }

    /// Sends `pusher:error` with `code` and `message`, then closes the socket with the same code.
    pub fn send_error_and_close(&self, code: PusherCode, message: &str) {
        self.send(
            vestnik_protocol::ServerMessage::Error {
                code: Some(code),
                message,
            }
            .encode(),
        );
        self.outbox.close(code, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_everything_in_one_batch() {
        let o = Outbox::new(8);
        for i in 0..5u8 {
            o.push(Bytes::from(vec![i])).unwrap();
        }
        let mut out = VecDeque::new();
        let drained = o.next_batch(&mut out).await;
        assert_eq!(drained.close, None);
        assert!(
            drained.queued_at.is_some(),
            "frames were drained, so their age is known"
        );
        assert_eq!(out.len(), 5);
        assert_eq!(
            o.drain_now(&mut out).queued_at,
            None,
            "nothing new was queued"
        );
        assert!(o.is_empty());
    }

    #[tokio::test]
    async fn full_queue_closes_with_4100_and_drops_frames() {
        let o = Outbox::new(2);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(
            o.push(Bytes::from_static(b"c")),
            Err(PushError::SlowConsumer)
        );
        assert_eq!(o.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        let mut out = VecDeque::new();
        let drained = o.next_batch(&mut out).await;
        assert_eq!(drained.close.unwrap().code, PusherCode::OverCapacity);
        assert_eq!(
            drained.queued_at, None,
            "the dropped frames' age goes with them"
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn close_comes_after_queued_frames() {
        let o = Outbox::new(8);
        o.push(Bytes::from_static(b"err")).unwrap();
        o.close(PusherCode::Unauthorized, "bye");
        o.close(PusherCode::Reconnect, "ignored");
        let mut out = VecDeque::new();
        let close = o.next_batch(&mut out).await.close.unwrap();
        assert_eq!(close.code, PusherCode::Unauthorized);
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn wakes_a_waiting_writer() {
        let o = Arc::new(Outbox::new(8));
        let o2 = o.clone();
        let waiter = tokio::spawn(async move {
            let mut out = VecDeque::new();
            o2.next_batch(&mut out).await;
            out.len()
        });
        tokio::task::yield_now().await;
        o.push(Bytes::from_static(b"x")).unwrap();
        assert_eq!(
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .unwrap()
                .unwrap(),
            1
        );
    }

    #[test]
    fn rate_limiter_refills() {
        let start = Instant::now();
        let mut r = RateLimiter {
            tokens: 2.0,
            last: start,
        };
        assert!(r.try_take(2, start));
        assert!(r.try_take(2, start));
        assert!(!r.try_take(2, start));
        assert!(r.try_take(2, start + std::time::Duration::from_millis(600)));
    }
}
