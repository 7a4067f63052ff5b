//! The bytes under a WebSocket session: [`SessionIo`], which reads client frames (parsed by
//! [`vestnik_protocol::frame`], with no per-socket buffer while the socket is idle), and [`Wire`],
//! the socket's write side, which the session's writer and the broker's direct writes share.
//!
//! The control frames the server sends (a pong, a close reply, our close) are encoded by the session
//! and queued in the outbox like every other frame, so that every byte on the wire is ordered by one
//! outbox. On a
//! plain TCP socket the write half is a [`TcpWire`], which the outbox may also write to directly
//! ([`DirectWrite`]) when the socket is idle: a delivery then costs one non-blocking write and no task
//! wake-up. A TLS socket keeps the queued path. This module must never decide when a direct write is
//! allowed (the outbox does) and never wait while writing directly.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use vestnik_broker::{DirectWrite, Sent};
use vestnik_protocol::frame::{FrameError, FrameParser, Inbound, Parsed};

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

/// The per-app counters of a socket's traffic, made once per app and shared by its sockets (the
/// session and the direct writer count into the same handles, so counting costs an atomic add and
/// a socket holds one pointer for all of them).
#[derive(Debug)]
pub struct SocketCounters {
    /// `vestnik_ws_messages_received_total`: client text frames.
    pub messages_in: metrics::Counter,
    /// `vestnik_ws_bytes_received_total`: their bytes.
    pub bytes_in: metrics::Counter,
    /// `vestnik_ws_messages_sent_total`: frames written.
    pub messages_out: metrics::Counter,
    /// `vestnik_ws_bytes_sent_total`: their payload bytes.
    pub bytes_out: metrics::Counter,
    /// `vestnik_publish_to_write_seconds`: from the oldest frame of a batch entering the socket's
    /// queue to the batch's write finishing, one sample per coalesced write; a direct write that
    /// went out whole is sampled as zero, so the histogram still counts every write.
    pub publish_to_write: metrics::Histogram,
}

impl SocketCounters {
    /// Registers (or finds) `app_id`'s series.
    pub fn new(app_id: &str) -> Self {
        let id = app_id.to_owned();
        Self {
            messages_in: metrics::counter!("vestnik_ws_messages_received_total", "app_id" => id.clone()),
            bytes_in: metrics::counter!("vestnik_ws_bytes_received_total", "app_id" => id.clone()),
            messages_out: metrics::counter!("vestnik_ws_messages_sent_total", "app_id" => id.clone()),
            bytes_out: metrics::counter!("vestnik_ws_bytes_sent_total", "app_id" => id.clone()),
            publish_to_write: metrics::histogram!("vestnik_publish_to_write_seconds", "app_id" => id),
        }
    }
}

/// A plain TCP socket's write half, shared by the session's writer and the outbox's direct writes.
/// The outbox decides who may write when, so the two never interleave within a frame.
pub struct TcpWire {
    half: OwnedWriteHalf,
    /// `None` for a refused socket, which never has an outbox to write directly for it.
    counters: Option<Arc<SocketCounters>>,
}

impl std::fmt::Debug for TcpWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpWire").finish_non_exhaustive()
    }
}

impl DirectWrite for TcpWire {
    /// One `writev` of header and payload, without waiting. What the socket did not take is
    /// returned as owed wire bytes (copied: rare, only for a socket whose buffer is full).
    fn try_write(&self, frame: &Bytes) -> Sent {
        let (header, hlen) = text_header(frame.len());
        let total = hlen + frame.len();
        let written = match self
            .half
            .try_write_vectored(&[IoSlice::new(&header[..hlen]), IoSlice::new(frame)])
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => return Sent::Failed,
        };
        if let Some(c) = &self.counters {
            c.messages_out.increment(1);
            c.bytes_out.increment(frame.len() as u64);
        }
        if written == total {
            if let Some(c) = &self.counters {
                c.publish_to_write.record(0.0);
            }
            return Sent::All;
        }
        let mut rest = BytesMut::with_capacity(total - written);
        if written < hlen {
            rest.extend_from_slice(&header[written..hlen]);
            rest.extend_from_slice(frame);
        } else {
            rest.extend_from_slice(&frame[written - hlen..]);
        }
        Sent::Part(rest.freeze())
    }
}

/// Where the session writes: the shared TCP write half, or the upgraded stream for anything else
/// (TLS), which only the session writes to.
#[derive(Debug, Clone)]
pub enum Wire {
    /// Plain TCP: shared with the outbox for direct writes.
    Tcp(Arc<TcpWire>),
    /// Anything else: reached through [`SessionIo`].
    Stream,
}

impl Wire {
    /// The wire over `half` (plain TCP), or the upgraded stream when there is no half; `counters`
    /// count what direct writes send.
    pub fn new(half: Option<OwnedWriteHalf>, counters: Option<Arc<SocketCounters>>) -> Self {
        match half {
            Some(half) => Wire::Tcp(Arc::new(TcpWire { half, counters })),
            None => Wire::Stream,
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
    /// Plain TCP: the read half (the write half is the session's [`Wire`]).
    Tcp(OwnedReadHalf),
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
    /// Takes over an upgraded connection: a plain TCP socket is split and its write half returned,
    /// to become the session's [`Wire`]; anything else is kept whole. What hyper read past the
    /// handshake is parsed first.
    pub fn new(upgraded: Upgraded, limits: ReadLimits) -> (Self, Option<OwnedWriteHalf>) {
        let (transport, pending, half) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, half) = parts.io.into_inner().into_split();
                // hyper hands back a slice of its connection read buffer (8 KiB), empty or not:
                // keeping it would keep that whole buffer alive for the socket's life.
                (Transport::Tcp(read), parts.read_buf.to_vec(), Some(half))
            }
            Err(upgraded) => (
                Transport::Upgraded(Box::new(TokioIo::new(upgraded))),
                Vec::new(),
                None,
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
        (io, half)
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
                Transport::Tcp(read) => Pin::new(read).poll_read(cx, &mut buf),
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
    /// A plain TCP socket is written through the shared write half (the outbox has handed the
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
                    match tcp.half.try_write(&buf[*at..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *at += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            tokio::time::timeout(stall, tcp.half.writable())
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
