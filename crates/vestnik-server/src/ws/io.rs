//! The bytes under a WebSocket session: [`SessionIo`], which reads client frames (parsed by
//! [`vestnik_protocol::frame`], with no per-socket buffer while the socket is idle), and [`Wire`],
//! the socket's write side, which the session's writer and the broker's direct writes share.
//!
//! The control frames the server sends (a pong, a close reply, our close) are encoded by the session
//! and queued in the outbox like every other frame, so that every byte on the wire is ordered by one
//! outbox. A plain TCP socket is one [`TcpWire`], which the session reads and writes and the outbox
//! may also write to directly ([`DirectWrite`]) when the socket is idle: a delivery then costs one
//! non-blocking `send` and no task wake-up. A TLS socket keeps the queued path. This module must
//! never decide when a direct write is allowed (the outbox does) and never wait while writing
//! directly.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use vestnik_broker::{DirectWrite, Sent};
use vestnik_protocol::frame::{FrameError, FrameParser, Inbound, Parsed};

use super::counters::SocketCounters;

/// The longest WebSocket header of a server frame: opcode byte, 127, eight length bytes.
const MAX_HEADER: usize = 10;

/// The header of an unmasked final text frame of `len` bytes (RFC 6455 §5.2), and its length.
pub fn text_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x81; // FIN + text
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// A plain TCP socket, shared by the session (which reads it, and writes when its writer has the
/// turn) and the outbox's direct writes. The outbox decides who may write when, so the two never
/// interleave within a frame.
///
/// The stream is held here whole, not split into tokio's owned halves: a direct write then finds
/// the socket's descriptor in the same allocation as the rest of the wire, rather than one pointer
/// further in the halves' shared `TcpStream`. At light load each delivery is one such lookup on
/// memory the kernel's send path has just evicted, so the hop cost a cache miss per delivery.
pub struct TcpWire {
    stream: TcpStream,
    /// Set once the broker has taken the socket; never set for a refused socket, which has no
    /// outbox to write directly for it.
    counters: OnceLock<Arc<SocketCounters>>,
}

impl Drop for TcpWire {
    /// Ends our side with a FIN first, as dropping tokio's write half did: a close with unread
    /// client bytes would otherwise be a bare reset, which can cost the client what it had not yet
    /// read (our close frame).
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(&self.stream, rustix::net::Shutdown::Write);
    }
}

impl std::fmt::Debug for TcpWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpWire").finish_non_exhaustive()
    }
}

/// The last payload this thread wrote directly, and its wire form (header and payload in one
/// buffer) once a second socket wanted it. A fan-out writes one shared payload to every subscriber
/// from one thread, so from the second subscriber on a delivery is one `write` of bytes framed once
/// rather than a `writev` of a header and the payload, and a payload sent to one socket is never
/// copied. Holding a clone of the payload keeps its memory alive, so a payload at the same address
/// with the same length is the same bytes (a `Bytes` never changes).
struct LastFramed {
    payload: Bytes,
    wire: Option<Bytes>,
}

/// Payloads above this are written with `writev` every time: copying them to frame them once
/// costs more than the second iovec saves, and the thread would hold a large buffer.
const MAX_FRAMED: usize = 16 * 1024;

/// Frames up to this many wire bytes that are written for the first time are framed in a buffer
/// on the stack rather than written as header plus payload.
const STACK_FRAMED: usize = 512;

thread_local! {
    static LAST_FRAMED: std::cell::RefCell<Option<LastFramed>> =
        const { std::cell::RefCell::new(None) };
}

/// `frame`'s wire form if this thread has already framed it or is writing it a second time (then
/// it is framed now and kept), or `None` for a payload seen for the first time (it is remembered,
/// and written as header plus payload).
fn framed(frame: &Bytes) -> Option<Bytes> {
    if frame.len() > MAX_FRAMED {
        return None;
    }
    LAST_FRAMED.with(|last| {
        let mut last = last.borrow_mut();
        match &mut *last {
            Some(l) if l.payload.as_ptr() == frame.as_ptr() && l.payload.len() == frame.len() => {
                Some(
                    l.wire
                        .get_or_insert_with(|| {
                            let (header, hlen) = text_header(frame.len());
                            let mut wire = BytesMut::with_capacity(hlen + frame.len());
                            wire.extend_from_slice(&header[..hlen]);
                            wire.extend_from_slice(frame);
                            wire.freeze()
                        })
                        .clone(),
                )
            }
            _ => {
                *last = Some(LastFramed {
                    payload: frame.clone(),
                    wire: None,
                });
                None
            }
        }
    })
}

impl TcpWire {
    /// The wire over `stream`, counting nothing until [`Wire::count_with`].
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            counters: OnceLock::new(),
        }
    }

    /// Reads what the socket has into `buf`, waiting for it to become readable. The buffer is
    /// zeroed (`try_read` takes initialised bytes) only once the socket is readable, so a poll
    /// that finds nothing to read costs nothing.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // `try_read` has cleared the readiness: the next poll waits for the next event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// One `write` of `wire` (a whole frame of `payload` payload bytes), without waiting.
    fn try_write_wire(&self, wire: Bytes, payload: usize) -> Sent {
        let Some(written) = self.took(self.send(&wire), wire.len(), payload) else {
            return Sent::Failed;
        };
        if written == wire.len() {
            Sent::All
        } else {
            Sent::Part(wire.slice(written..))
        }
    }

    /// One non-blocking `send` of `buf` on the socket's descriptor. It goes past tokio's
    /// readiness state, which a direct write has no use for: it never waits, it is only tried
    /// while the socket's writer is idle, and a full socket's `EAGAIN` hands the rest to that
    /// writer, whose next write finds the socket full and waits for tokio's next writable event.
    /// Skipping it saves a cache line per delivery (the socket's `ScheduledIo`).
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        rustix::net::send(
            &self.stream,
            buf,
            rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
        )
        .map_err(io::Error::from)
    }

    /// How many bytes of a `total`-byte frame carrying `payload` payload bytes one non-blocking
    /// write took (a full socket took none), counted as sent; `None` when the socket failed.
    fn took(&self, result: io::Result<usize>, total: usize, payload: usize) -> Option<usize> {
        let written = match result {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => return None,
        };
        if let Some(c) = self.counters.get() {
            if written == total {
                c.written_at_once(payload as u64);
            } else {
                c.sent(1, payload as u64);
            }
        }
        Some(written)
    }
}

impl DirectWrite for TcpWire {
    /// The socket's descriptor, which the write reads first.
    fn prefetch(&self) {
        vestnik_broker::cache::prefetch(&self.stream);
    }

    /// One `write` of the frame's wire form when this thread has framed the same payload for an
    /// earlier subscriber or the frame is small (framed on the stack), else one `writev` of header
    /// and payload, without waiting. What the socket did not take is returned as owed wire bytes.
    fn try_write(&self, frame: &Bytes) -> Sent {
        if let Some(wire) = framed(frame) {
            return self.try_write_wire(wire, frame.len());
        }
        let (header, hlen) = text_header(frame.len());
        let total = hlen + frame.len();
        if total <= STACK_FRAMED {
            // A small frame seen for the first time (often the only recipient's): framed on the
            // stack and sent with one `write`, which costs less than a `writev` of two slices.
            let mut buf = [0u8; STACK_FRAMED];
            buf[..hlen].copy_from_slice(&header[..hlen]);
            buf[hlen..total].copy_from_slice(frame);
            let result = self.send(&buf[..total]);
            return match self.took(result, total, frame.len()) {
                None => Sent::Failed,
                Some(n) if n == total => Sent::All,
                Some(n) => Sent::Part(Bytes::copy_from_slice(&buf[n..total])),
            };
        }
        let result = rustix::io::writev(
            &self.stream,
            &[IoSlice::new(&header[..hlen]), IoSlice::new(frame)],
        )
        .map_err(io::Error::from);
        match self.took(result, total, frame.len()) {
            None => Sent::Failed,
            Some(n) if n == total => Sent::All,
            Some(n) if n >= hlen => Sent::Part(frame.slice(n - hlen..)),
            Some(n) => {
                let mut rest = BytesMut::with_capacity(total - n);
                rest.extend_from_slice(&header[n..hlen]);
                rest.extend_from_slice(frame);
                Sent::Part(rest.freeze())
            }
        }
    }
}

/// Where the session writes: the shared TCP socket, or the upgraded stream for anything else
/// (TLS), which only the session writes to.
#[derive(Debug, Clone)]
pub enum Wire {
    /// Plain TCP: shared with the outbox for direct writes.
    Tcp(Arc<TcpWire>),
    /// Anything else: reached through [`SessionIo`].
    Stream,
}

impl Wire {
    /// From now on, what direct writes send is counted in `counters` (once the broker has taken
    /// the socket; a refused socket counts nothing). Set once: a second call changes nothing.
    pub fn count_with(&self, counters: Arc<SocketCounters>) {
        if let Wire::Tcp(w) = self {
            let _ = w.counters.set(counters);
        }
    }

    /// The direct writer to attach to the outbox, for plain TCP.
    pub fn direct(&self) -> Option<Arc<TcpWire>> {
        match self {
            Wire::Tcp(w) => Some(Arc::clone(w)),
            Wire::Stream => None,
        }
    }
}

/// The most bytes one read takes from a socket: the size of the stack buffer a read fills
/// (`socket_read_buffer` is capped to it). The buffer lives on the reading thread's stack for the
/// length of one read, never in the socket's state.
pub const MAX_READ_CHUNK: usize = 16 * 1024;

/// The read side, in one of two forms.
enum Transport {
    /// Plain TCP: the socket, shared with the session's [`Wire`].
    Tcp(Arc<TcpWire>),
    /// TLS or anything hyper would not hand back as a `TcpStream`, read and written here.
    Upgraded(Box<TokioIo<Upgraded>>),
}

/// Why a socket cannot be read any more.
#[derive(Debug)]
pub enum ReadEnd {
    /// The client closed its side of the connection.
    Eof,
    /// The transport failed.
    Io(io::Error),
    /// The client's bytes broke the WebSocket protocol or the message limit.
    Frame(FrameError),
}

/// The socket as its session sees it: client messages in ([`SessionIo::read`]), and the session's
/// own writes out ([`SessionIo::write_from`]).
///
/// Reading owns no buffer while the socket is idle: a read fills a buffer on the stack, frames are
/// parsed from it at once, and only the bytes of a frame still arriving (or of frames that came
/// behind the one returned) are kept, in `pending`, until they are parsed.
pub struct SessionIo {
    transport: Transport,
    /// Bytes read and not parsed yet, from `pending_at` on; empty and unallocated otherwise.
    pending: Vec<u8>,
    /// Where the unparsed bytes of `pending` start.
    pending_at: usize,
    /// The frame parser, holding a fragmented message's fragments while one arrives.
    parser: FrameParser,
    /// The largest client message, in bytes (`max_message_bytes`).
    max_message: u32,
    /// Bytes one read takes at most (`socket_read_buffer`, at most [`MAX_READ_CHUNK`]).
    chunk: u32,
}

/// How a socket is read: the message limit and the size of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// The largest client message, in bytes.
    pub max_message: usize,
    /// Bytes one read takes at most; capped at [`MAX_READ_CHUNK`].
    pub chunk: usize,
}

impl SessionIo {
    /// Takes over an upgraded connection, and returns the session's [`Wire`] with it: a plain TCP
    /// socket is shared between the two, anything else is kept here whole. What hyper read past
    /// the handshake is parsed first.
    pub fn new(upgraded: Upgraded, limits: ReadLimits) -> (Self, Wire) {
        let (transport, pending, wire) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let tcp = Arc::new(TcpWire::new(parts.io.into_inner()));
                // hyper hands back a slice of its connection read buffer (8 KiB), empty or not:
                // keeping it would keep that whole buffer alive for the socket's life.
                let wire = Wire::Tcp(Arc::clone(&tcp));
                (Transport::Tcp(tcp), parts.read_buf.to_vec(), wire)
            }
            Err(upgraded) => (
                Transport::Upgraded(Box::new(TokioIo::new(upgraded))),
                Vec::new(),
                Wire::Stream,
            ),
        };
        let io = Self {
            transport,
            pending,
            pending_at: 0,
            parser: FrameParser::new(),
            max_message: u32::try_from(limits.max_message).unwrap_or(u32::MAX),
            chunk: limits.chunk.clamp(64, MAX_READ_CHUNK) as u32,
        };
        (io, wire)
    }

    /// The next client message or control frame. Cancel-safe: what was read is kept until a
    /// message is returned.
    pub async fn read(&mut self) -> Result<Inbound, ReadEnd> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    /// [`SessionIo::read`] as a poll: parses what is pending, and reads when it holds no complete
    /// message.
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Inbound, ReadEnd>> {
        let max = self.max_message as usize;
        loop {
            while self.pending_at < self.pending.len() {
                match self
                    .parser
                    .parse(&self.pending[self.pending_at..], max)
                    .map_err(ReadEnd::Frame)?
                {
                    Parsed::Frame { len, message } => {
                        self.pending_at += len;
                        if self.pending_at == self.pending.len() {
                            // Nothing left: an idle socket keeps no buffer.
                            self.pending = Vec::new();
                            self.pending_at = 0;
                        }
                        if let Some(m) = message {
                            return Poll::Ready(Ok(m));
                        }
                    }
                    // Grown as bytes arrive, not reserved from the header: a client announcing a
                    // large frame and sending it slowly holds only what it sent.
                    Parsed::Incomplete(_) => {
                        self.pending.drain(..self.pending_at);
                        self.pending_at = 0;
                        break;
                    }
                }
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk[..self.chunk as usize]);
            let polled = match &mut self.transport {
                Transport::Tcp(tcp) => tcp.poll_read(cx, &mut buf),
                Transport::Upgraded(io) => Pin::new(&mut **io).poll_read(cx, &mut buf),
            };
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ReadEnd::Io(e))),
                Poll::Ready(Ok(())) => {}
            }
            let got = buf.filled();
            if got.is_empty() {
                return Poll::Ready(Err(ReadEnd::Eof));
            }
            if !self.pending.is_empty() {
                self.pending.extend_from_slice(got);
                continue;
            }
            // The usual case: frames parsed straight from the stack buffer, no copy kept.
            let mut at = 0;
            while at < got.len() {
                match self.parser.parse(&got[at..], max).map_err(ReadEnd::Frame)? {
                    Parsed::Frame { len, message } => {
                        at += len;
                        if let Some(m) = message {
                            self.pending.extend_from_slice(&got[at..]);
                            return Poll::Ready(Ok(m));
                        }
                    }
                    Parsed::Incomplete(_) => {
                        self.pending.extend_from_slice(&got[at..]);
                        break;
                    }
                }
            }
        }
    }

    /// Writes `buf[*at..]` to the socket, advancing `*at` as bytes go out, so that a caller that
    /// stops waiting knows exactly what was written. Fails with `TimedOut` when the socket takes
    /// nothing for `stall`: a reading client keeps a long write going, one that stopped is found.
    /// A plain TCP socket is written through the shared [`TcpWire`] (the outbox has handed the
    /// writer the turn); anything else through the upgraded stream, then flushed.
    pub async fn write_from(
        &mut self,
        wire: &Wire,
        buf: &[u8],
        at: &mut usize,
        stall: Duration,
    ) -> io::Result<()> {
        let timed_out = |_| io::Error::from(io::ErrorKind::TimedOut);
        match (wire, &mut self.transport) {
            (Wire::Tcp(tcp), _) => {
                while *at < buf.len() {
                    match tcp.stream.try_write(&buf[*at..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *at += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            tokio::time::timeout(stall, tcp.stream.writable())
                                .await
                                .map_err(timed_out)??;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            (Wire::Stream, Transport::Upgraded(io)) => {
                while *at < buf.len() {
                    let n = tokio::time::timeout(stall, io.write(&buf[*at..]))
                        .await
                        .map_err(timed_out)??;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    *at += n;
                }
                tokio::time::timeout(stall, io.flush())
                    .await
                    .map_err(timed_out)?
            }
            (Wire::Stream, Transport::Tcp(_)) => Err(io::Error::other(
                "a split TCP socket is written through its wire",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_framed_once_from_its_second_write() {
        let payload = Bytes::from(vec![b'x'; 300]);
        assert_eq!(framed(&payload), None, "the first write sends it as it is");
        let wire = framed(&payload.clone()).expect("the second write is framed");
        assert_eq!(&wire[..4], &[0x81, 126, 1, 44]);
        assert_eq!(&wire[4..], &payload[..]);
        let again = framed(&payload).expect("and kept");
        assert_eq!(again.as_ptr(), wire.as_ptr(), "framed once, not per write");
        // The same bytes at another address are another payload.
        let copy = Bytes::copy_from_slice(&payload);
        assert_eq!(framed(&copy), None);
        assert!(framed(&payload).is_none(), "the cache holds one payload");
        // Large payloads are never copied to be framed.
        let big = Bytes::from(vec![b'y'; MAX_FRAMED + 1]);
        assert_eq!(framed(&big), None);
        assert_eq!(framed(&big), None);
    }

    /// The wire form of a text frame carrying `payload`.
    fn wire_of(payload: &[u8]) -> Vec<u8> {
        let (h, n) = text_header(payload.len());
        [&h[..n], payload].concat()
    }

    /// Writes directly until the socket (whose peer never reads) stops taking whole frames, then
    /// checks that the bytes the peer gets are exactly the whole frames and the written part of the
    /// last one, and that what is owed is the rest of it: on the stack path (small frames, each a
    /// new payload), the framed path (one payload written again and again) and the `writev` path.
    #[tokio::test]
    async fn a_direct_write_that_does_not_fit_owes_exactly_the_rest_on_every_path() {
        use tokio::io::AsyncReadExt;
        for (size, fresh) in [(100, true), (2_000, false), (20_000, true)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = tokio::net::TcpSocket::new_v4().unwrap();
            client.set_recv_buffer_size(4096).unwrap();
            let mut client = client
                .connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let wire = TcpWire::new(server);
            let same = Bytes::from(vec![b'a'; size]);
            let mut expected = Vec::new();
            let rest = loop {
                let payload = if fresh {
                    Bytes::from(vec![b'b'; size])
                } else {
                    same.clone()
                };
                let whole = wire_of(&payload);
                match wire.try_write(&payload) {
                    Sent::All => expected.extend_from_slice(&whole),
                    Sent::Part(rest) => {
                        assert!(whole.ends_with(&rest), "size {size}: owes a suffix");
                        expected.extend_from_slice(&whole[..whole.len() - rest.len()]);
                        break rest;
                    }
                    Sent::Failed => panic!("size {size}: the socket failed"),
                }
            };
            assert!(!rest.is_empty());
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
                .await
                .expect("the written bytes arrive")
                .unwrap();
            assert!(
                got == expected,
                "size {size}: the stream is the frames in order"
            );
        }
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(&text_header(5).0[..2], &[0x81, 5]);
        assert_eq!(text_header(125).1, 2);
        let (h, n) = text_header(126);
        assert_eq!((n, &h[..4]), (4, &[0x81, 126, 0, 126][..]));
        let (h, n) = text_header(70_000);
        assert_eq!(n, 10);
        assert_eq!(u64::from_be_bytes(h[2..10].try_into().unwrap()), 70_000);
    }
}
