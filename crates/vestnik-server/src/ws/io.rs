//! The bytes under a WebSocket session: [`SessionIo`], which tungstenite reads client frames from,
//! and [`Wire`], the socket's write side, which the session's writer and the broker's direct writes
//! share.
//!
//! tungstenite parses what clients send, but it never writes to the socket: what it produces (a pong,
//! a close reply, our close) lands in [`SessionIo::take_control`]'s buffer, and the session queues it
//! in the outbox like every other frame, so that every byte on the wire is ordered by one outbox. On a
//! plain TCP socket the write half is a [`TcpWire`], which the outbox may also write to directly
//! ([`DirectWrite`]) when the socket is idle: a delivery then costs one non-blocking write and no task
//! wake-up. A TLS socket keeps the queued path. This module must never decide when a direct write is
//! allowed (the outbox does) and never wait while writing directly.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use vestnik_broker::{DirectWrite, Sent};

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

/// Counters of what a direct write sent, the same series the session's writer counts into.
#[derive(Debug, Clone)]
pub struct WireCounters {
    /// `vestnik_ws_messages_sent_total`.
    pub messages_out: metrics::Counter,
    /// `vestnik_ws_bytes_sent_total` (payload bytes, as the writer counts them).
    pub bytes_out: metrics::Counter,
    /// `vestnik_publish_to_write_seconds`: a direct write that went out whole is one write with no
    /// wait, sampled as zero, so the histogram still counts every write.
    pub publish_to_write: metrics::Histogram,
}

/// A plain TCP socket's write half, shared by the session's writer and the outbox's direct writes.
/// The outbox decides who may write when, so the two never interleave within a frame.
pub struct TcpWire {
    half: OwnedWriteHalf,
    /// `None` for a refused socket, which never has an outbox to write directly for it.
    counters: Option<WireCounters>,
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
    pub fn new(half: Option<OwnedWriteHalf>, counters: Option<WireCounters>) -> Self {
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

/// The read side, in one of two forms.
enum Transport {
    /// Plain TCP: the read half, with the bytes hyper read past the handshake first.
    Tcp { prefix: Bytes, read: OwnedReadHalf },
    /// TLS or anything hyper would not hand back as a `TcpStream`.
    Upgraded(TokioIo<Upgraded>),
}

/// The stream tungstenite runs over: reads come from the socket; writes are kept in a buffer for
/// the session to queue ([`SessionIo::take_control`]).
pub struct SessionIo {
    transport: Transport,
    /// What tungstenite wrote (pongs, close frames), not yet handed to the outbox.
    control: Vec<u8>,
}

impl SessionIo {
    /// Takes over an upgraded connection: a plain TCP socket is split and its write half returned,
    /// to become the session's [`Wire`]; anything else is kept whole.
    pub fn new(upgraded: Upgraded) -> (Self, Option<OwnedWriteHalf>) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, half) = parts.io.into_inner().into_split();
                // hyper hands back a slice of its connection read buffer (8 KiB), empty or not:
                // keeping it would keep that whole buffer alive for the socket's life.
                let prefix = if parts.read_buf.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(&parts.read_buf)
                };
                let io = Self {
                    transport: Transport::Tcp { prefix, read },
                    control: Vec::new(),
                };
                (io, Some(half))
            }
            Err(upgraded) => {
                let io = Self {
                    transport: Transport::Upgraded(TokioIo::new(upgraded)),
                    control: Vec::new(),
                };
                (io, None)
            }
        }
    }

    /// What tungstenite has written since the last call: complete control frames (tungstenite
    /// writes whole frames into a buffer that always accepts them).
    pub fn take_control(&mut self) -> Option<Bytes> {
        if self.control.is_empty() {
            return None;
        }
        let bytes = Bytes::from(std::mem::take(&mut self.control));
        Some(bytes)
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
            (Wire::Stream, Transport::Tcp { .. }) => Err(io::Error::other(
                "a split TCP socket is written through its wire",
            )),
        }
    }
}

impl AsyncRead for SessionIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Tcp { prefix, read } => {
                if !prefix.is_empty() {
                    let n = prefix.len().min(buf.remaining());
                    buf.put_slice(&prefix.split_to(n));
                    if prefix.is_empty() {
                        *prefix = Bytes::new();
                    }
                    return Poll::Ready(Ok(()));
                }
                Pin::new(read).poll_read(cx, buf)
            }
            Transport::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SessionIo {
    /// Keeps what tungstenite writes; the session queues it in the outbox.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().control.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
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
