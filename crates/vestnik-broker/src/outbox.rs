//! A socket's [`Outbox`]: the only way the core talks to a socket.
//!
//! A frame pushed while the socket's writer is idle and nothing is waiting goes straight to the
//! socket through the [`DirectWrite`] the edge attached (one non-blocking write, no task woken);
//! whatever does not fit, and every frame pushed while something is waiting or the writer is busy,
//! waits in a bounded queue of encoded frames (`Bytes`, shared with every other recipient) that the
//! writer drains in one go, so frames queued while a write was in flight go out together in one
//! syscall. A publisher never waits on it: a full outbox marks the socket as a slow consumer and asks
//! the writer to close it with 4100. This module must never block, never wait on IO (the direct
//! write is the edge's non-blocking `try_write`), and never hold its lock across an `.await`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use vestnik_protocol::PusherCode;

/// A close the writer should perform after sending the frames queued before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The Pusher close code.
    pub code: PusherCode,
    /// The close reason text.
    pub reason: String,
}

/// What a [`DirectWrite`] did with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The whole frame went out.
    All,
    /// Only part of it went out (possibly nothing): these are the wire bytes still owed, which the
    /// writer must send before anything else.
    Part(Bytes),
    /// The socket failed; nothing was written. The frame is queued, and the writer finds the
    /// failure when it writes.
    Failed,
}

/// A socket's non-blocking writer, attached by the edge that owns the socket, so that a frame
/// pushed to an idle socket costs one write instead of a task wake-up. The edge knows the framing
/// (the core's frames are message payloads), the core knows when writing directly keeps the order.
pub trait DirectWrite: Send + Sync + std::fmt::Debug {
    /// Writes the wire form of the text message `frame` as far as the socket takes it now, without
    /// waiting. Called under the outbox's lock, so never concurrently for one socket.
    fn try_write(&self, frame: &Bytes) -> Sent;

    /// Starts loading what [`DirectWrite::try_write`] reads first into the cache, without waiting
    /// (see [`crate::cache`]). Does nothing by default.
    fn prefetch(&self) {}
}

/// The queue's state. `repr(C)`, in this order, so that everything a push to an idle socket reads
/// (the direct writer, the flags and `owed`) shares the outbox's first cache line with the lock,
/// and `frames` starts the second: [`Outbox::prefetch`] and [`Outbox::prefetch_direct`] ask for
/// exactly those lines.
#[derive(Debug, Default)]
#[repr(C)]
struct OutboxQueue {
    /// The edge's direct writer; `None` until attached, for TLS sockets, and once detached.
    direct: Option<Arc<dyn DirectWrite>>,
    closed: bool,
    /// The writer took something and has not yet come back to find the queue empty: a direct
    /// write now could overtake what it is writing.
    busy: bool,
    /// The edge has taken the socket back for its last writes: nothing more is accepted.
    detached: bool,
    /// Wire bytes that must go out before the queued frames: the rest of a direct write that did
    /// not fit, and control frames (pongs, closes) the edge produced. Owed bytes always sit on a
    /// frame boundary of their own, so writing them first never splits a frame.
    owed: Option<Bytes>,
    frames: VecDeque<Bytes>,
    /// When the oldest waiting frame was queued: set when the queue turns non-empty, taken by the
    /// writer's drain. One timestamp per batch rather than per frame keeps the queue a plain
    /// `VecDeque<Bytes>`, and the oldest frame is the one whose latency matters.
    oldest: Option<Instant>,
    close: Option<Box<CloseRequest>>,
}

/// What one drain of the outbox hands the writer besides the frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drained {
    /// Wire bytes to write first, as they are (the rest of a partial direct write, control frames).
    pub owed: Option<Bytes>,
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

/// Where a pushed frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the socket at once; nothing was queued and no task woken.
    Written,
    /// Queued (whole, or the rest of a partial write) for the socket's writer.
    Queued,
}

/// A socket's bounded outbound queue. Aligned to a cache line, with the queue first, so that the
/// lock and the state a direct write checks sit in one line (see [`OutboxQueue`]).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Outbox {
    queue: Mutex<OutboxQueue>,
    /// The socket's task, while it waits for work ([`Outbox::poll_next_batch`]) or for a close
    /// during a write ([`Outbox::close_requested`]): one waker, not a wait list, since only that
    /// task ever waits here; it is checked after registering, so no wake-up is lost.
    waker: AtomicWaker,
    capacity: usize,
}

/// A frame to push: owned by the caller, or shared with the other recipients of a fan-out.
enum Frame<'a> {
    Owned(Bytes),
    Shared(&'a Bytes),
}

impl Frame<'_> {
    fn bytes(&self) -> &Bytes {
        match self {
            Frame::Owned(b) => b,
            Frame::Shared(b) => b,
        }
    }

    fn into_owned(self) -> Bytes {
        match self {
            Frame::Owned(b) => b,
            Frame::Shared(b) => b.clone(),
        }
    }
}

/// `owed` followed by `more`: owed bytes are rare (a socket that did not take a whole frame, or a
/// pong), so joining them by copy is simpler than a second queue.
fn append(owed: Option<Bytes>, more: Bytes) -> Bytes {
    match owed {
        None => more,
        Some(first) => {
            let mut joined = BytesMut::with_capacity(first.len() + more.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&more);
            joined.freeze()
        }
    }
}

impl Outbox {
    /// An empty outbox that holds at most `capacity` frames. Allocates nothing until used.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(OutboxQueue::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    /// Starts loading the outbox's state into the cache, without waiting or locking: a fan-out
    /// asks for a batch of subscribers' outboxes before it pushes to the first of them.
    pub fn prefetch(&self) {
        crate::cache::prefetch(&self.queue);
    }

    /// Starts loading the direct writer's state into the cache, for a fan-out about to push to
    /// this outbox. Takes the lock briefly to find the writer.
    pub fn prefetch_direct(&self) {
        let q = self.queue.lock();
        if let Some(direct) = &q.direct {
            crate::cache::prefetch(&q.frames);
            direct.prefetch();
        }
    }

    /// Lets pushes to an idle socket go straight to it through `direct`. The edge attaches it once
    /// the socket is open, and detaches it before it writes its last bytes (see [`Outbox::detach`]).
    pub fn attach(&self, direct: Arc<dyn DirectWrite>) {
        let mut q = self.queue.lock();
        if !q.closed && !q.detached {
            q.direct = Some(direct);
        }
    }

    /// Stops direct writes for good and returns what is still owed and queued, so the edge can
    /// write its last frames (the close) knowing that nobody else writes to the socket any more.
    /// Also marks the outbox closed: later pushes are dropped.
    pub fn detach(&self, out: &mut VecDeque<Bytes>) -> Option<Bytes> {
        let mut q = self.queue.lock();
        q.direct = None;
        q.closed = true;
        q.detached = true;
        out.extend(q.frames.drain(..));
        q.oldest = None;
        q.owed.take()
    }

    /// Sends a frame without waiting: straight to the socket when it is idle (nothing owed or
    /// queued, the writer parked) and a direct writer is attached, else into the queue. A full
    /// queue closes the socket with 4100 and drops what was queued, so a slow socket never holds
    /// memory or slows anyone else.
    pub fn push(&self, frame: Bytes) -> Result<Pushed, PushError> {
        self.push_frame(Frame::Owned(frame))
    }

    /// [`Outbox::push`] of a frame shared with other recipients (a fan-out's): it is cloned only
    /// if it has to be queued, so a direct write costs no reference-count traffic on the shared
    /// buffer.
    pub fn push_shared(&self, frame: &Bytes) -> Result<Pushed, PushError> {
        self.push_frame(Frame::Shared(frame))
    }

    fn push_frame(&self, frame: Frame<'_>) -> Result<Pushed, PushError> {
        let mut q = self.queue.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if !q.busy && q.owed.is_none() && q.frames.is_empty() {
            if let Some(direct) = &q.direct {
                match direct.try_write(frame.bytes()) {
                    Sent::All => return Ok(Pushed::Written),
                    Sent::Part(rest) => {
                        q.owed = Some(rest);
                        q.oldest = Some(Instant::now());
                        drop(q);
                        self.waker.wake();
                        return Ok(Pushed::Queued);
                    }
                    Sent::Failed => {}
                }
            }
        }
        if q.frames.len() >= self.capacity {
            q.frames = VecDeque::new();
            q.oldest = None;
            q.closed = true;
            q.close = Some(Box::new(CloseRequest {
                code: PusherCode::OverCapacity,
                reason: "Slow consumer: outbound queue full".into(),
            }));
            drop(q);
            self.waker.wake();
            return Err(PushError::SlowConsumer);
        }
        let was_idle = q.frames.is_empty() && q.owed.is_none();
        if was_idle {
            q.oldest = Some(Instant::now());
        }
        q.frames.push_back(frame.into_owned());
        drop(q);
        // A writer that is awake will find this frame when it next drains; only wake an idle one.
        if was_idle {
            self.waker.wake();
        }
        Ok(Pushed::Queued)
    }

    /// Queues wire bytes the edge produced itself (a pong, a close reply) to go out before the
    /// queued frames. Never written directly: the edge calls this from the socket's own task, which
    /// writes them on its next turn. Accepted while closing too, since a close reply is owed even
    /// then; dropped once the outbox is detached.
    pub fn push_owed(&self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        if q.detached {
            return;
        }
        let was_idle = q.frames.is_empty() && q.owed.is_none();
        q.owed = Some(append(q.owed.take(), bytes));
        drop(q);
        if was_idle {
            self.waker.wake();
        }
    }

    /// Gives back the part of a write the writer could not finish (it stopped for a close), to go
    /// out before anything else owed: written last, with the close, so the frame is completed.
    pub fn give_back(&self, unwritten: Bytes) {
        if unwritten.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        let later = q.owed.take();
        q.owed = Some(match later {
            None => unwritten,
            Some(later) => append(Some(unwritten), later),
        });
    }

    /// Completes once a close has been requested and not yet taken; the writer races its write
    /// against this, so that a slow consumer's 4100 ends a write stuck on a full socket at once.
    pub async fn close_requested(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.queue.lock().close.is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Asks the writer to close the socket after the frames already queued. The first close wins.
    pub fn close(&self, code: PusherCode, reason: impl Into<String>) {
        let mut q = self.queue.lock();
        if q.closed {
            return;
        }
        q.closed = true;
        q.close = Some(Box::new(CloseRequest {
            code,
            reason: reason.into(),
        }));
        drop(q);
        self.waker.wake();
    }

    /// Whether a close has been requested.
    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    /// Moves every queued frame into `out` without waiting, and returns what is owed, the close
    /// request, if any, and when the oldest of those frames was queued. Marks the writer busy when
    /// it took something, so no direct write overtakes it until it comes back for more.
    pub fn drain_now(&self, out: &mut VecDeque<Bytes>) -> Drained {
        let mut q = self.queue.lock();
        if out.is_empty() {
            std::mem::swap(&mut q.frames, out);
        } else {
            out.extend(q.frames.drain(..));
        }
        let owed = q.owed.take();
        if owed.is_some() || !out.is_empty() {
            q.busy = true;
        }
        Drained {
            owed,
            close: q.close.take().map(|c| *c),
            queued_at: q.oldest.take(),
        }
    }

    /// Waits until there is something to do, then moves every queued frame into `out` (which should be
    /// empty) and returns what is owed, the close request, if one was made, and the oldest frame's
    /// queueing time. Finding nothing to do marks the writer idle, which lets pushes write directly
    /// again. Cancel-safe: nothing is taken before the wait completes.
    pub async fn next_batch(&self, out: &mut VecDeque<Bytes>) -> Drained {
        std::future::poll_fn(|cx| self.poll_next_batch(cx, out)).await
    }

    /// [`Outbox::next_batch`] as a poll, for a writer that waits on several things in one
    /// hand-written poll (the session does, so that its idle state holds no wait-list entry).
    pub fn poll_next_batch(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
    ) -> Poll<Drained> {
        self.waker.register(cx.waker());
        let mut q = self.queue.lock();
        if !q.frames.is_empty() || q.owed.is_some() || q.close.is_some() {
            drop(q);
            return Poll::Ready(self.drain_now(out));
        }
        q.busy = false;
        Poll::Pending
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock (lock_api keeps a mutex's data last, after its one-byte raw lock, at the data's
    /// alignment) and every field a push to an idle socket reads fit in the outbox's first cache
    /// line, and `frames` starts the next one: the two lines the fan-out prefetches.
    #[test]
    fn a_push_to_an_idle_socket_reads_the_first_cache_line_and_frames() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(align_of::<Outbox>(), 64);
        assert_eq!(offset_of!(Outbox, queue), 0);
        let data = align_of::<OutboxQueue>();
        let hot_end = data + offset_of!(OutboxQueue, owed) + size_of::<Option<Bytes>>();
        assert!(hot_end <= 64, "the hot fields end at byte {hot_end}");
        assert!(data + offset_of!(OutboxQueue, direct) < hot_end);
        assert!(data + offset_of!(OutboxQueue, closed) < hot_end);
        assert_eq!(data + offset_of!(OutboxQueue, frames), 64);
    }

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

    /// A socket that takes at most `room` more bytes, recording what it took (framing is the
    /// edge's business: the core only sees whole or partial writes).
    #[derive(Debug, Default)]
    struct Socket {
        taken: Mutex<Vec<u8>>,
        room: Mutex<usize>,
    }

    impl DirectWrite for Socket {
        fn try_write(&self, frame: &Bytes) -> Sent {
            let mut room = self.room.lock();
            let n = frame.len().min(*room);
            *room -= n;
            self.taken.lock().extend_from_slice(&frame[..n]);
            if n == frame.len() {
                Sent::All
            } else {
                Sent::Part(frame.slice(n..))
            }
        }
    }

    fn direct_outbox(room: usize) -> (Outbox, Arc<Socket>) {
        let o = Outbox::new(8);
        let s = Arc::new(Socket::default());
        *s.room.lock() = room;
        o.attach(s.clone());
        (o, s)
    }

    #[tokio::test]
    async fn an_idle_socket_is_written_directly_and_nothing_is_queued() {
        let (o, s) = direct_outbox(100);
        assert_eq!(o.push(Bytes::from_static(b"ab")), Ok(Pushed::Written));
        assert_eq!(o.push(Bytes::from_static(b"cd")), Ok(Pushed::Written));
        assert_eq!(&s.taken.lock()[..], b"abcd");
        let mut out = VecDeque::new();
        let woken =
            tokio::time::timeout(std::time::Duration::from_millis(50), o.next_batch(&mut out))
                .await;
        assert!(woken.is_err(), "no writer is woken for a direct write");
    }

    #[tokio::test]
    async fn a_partial_write_is_owed_first_and_later_frames_queue_behind_it() {
        let (o, s) = direct_outbox(3);
        assert_eq!(o.push(Bytes::from_static(b"hello")), Ok(Pushed::Queued));
        *s.room.lock() = 100;
        // The socket has room again, but something is owed: no direct write may overtake it.
        assert_eq!(o.push(Bytes::from_static(b"world")), Ok(Pushed::Queued));
        let mut out = VecDeque::new();
        let drained = o.next_batch(&mut out).await;
        assert_eq!(drained.owed.as_deref(), Some(&b"lo"[..]));
        assert_eq!(out, [Bytes::from_static(b"world")]);
        // The writer is writing: still no direct write.
        assert_eq!(o.push(Bytes::from_static(b"!")), Ok(Pushed::Queued));
        out.clear();
        let drained = o.next_batch(&mut out).await;
        assert_eq!((drained.owed, out.len()), (None, 1));
        // The writer comes back, finds nothing and parks: direct writes resume.
        out.clear();
        let parked =
            tokio::time::timeout(std::time::Duration::from_millis(20), o.next_batch(&mut out))
                .await;
        assert!(parked.is_err());
        assert_eq!(o.push(Bytes::from_static(b"?")), Ok(Pushed::Written));
        assert_eq!(&s.taken.lock()[..], b"hel?");
    }

    #[tokio::test]
    async fn owed_control_bytes_go_before_queued_frames_and_detach_ends_direct_writes() {
        let (o, _s) = direct_outbox(0);
        assert_eq!(o.push(Bytes::from_static(b"f1")), Ok(Pushed::Queued));
        assert_eq!(o.push(Bytes::from_static(b"f2")), Ok(Pushed::Queued));
        o.push_owed(Bytes::from_static(b"pong"));
        let mut out = VecDeque::new();
        let owed = o.detach(&mut out);
        assert_eq!(owed.as_deref(), Some(&b"f1pong"[..]));
        assert_eq!(out, [Bytes::from_static(b"f2")]);
        assert_eq!(o.push(Bytes::from_static(b"late")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_shared_frame_is_written_without_a_copy_and_queued_whole_when_it_must_wait() {
        let (o, s) = direct_outbox(4);
        let frame = Bytes::from(b"shared".to_vec());
        // The socket takes 4 bytes: the rest is owed, and the frame itself was not kept.
        assert_eq!(o.push_shared(&frame), Ok(Pushed::Queued));
        assert_eq!(&s.taken.lock()[..], b"shar");
        // Something is owed now, so the next push of it queues a reference to the same buffer.
        assert_eq!(o.push_shared(&frame), Ok(Pushed::Queued));
        let mut out = VecDeque::new();
        let drained = o.next_batch(&mut out).await;
        assert_eq!(drained.owed.as_deref(), Some(&b"ed"[..]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr(), frame.as_ptr(), "queued without copying");
        // A shared frame still counts against the bound and is refused once the socket is closed.
        o.close(PusherCode::Reconnect, "bye");
        assert_eq!(o.push_shared(&frame), Err(PushError::Closed));
    }
}
