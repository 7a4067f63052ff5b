//! The session's writes: a drained batch (owed wire bytes, then each frame with its header) in as
//! few syscalls as the socket allows, and the last bytes of a session (what is owed, then the close),
//! each bounded by `write_timeout_ms`.
//!
//! The writer only writes what the outbox handed it: while it writes, the outbox holds direct writes
//! back, and before the last writes it detaches the direct writer, so nothing else writes to the
//! socket. This module must never write without a time limit: a client that stops reading would
//! hold the session for ever (TCP keeps a full window open indefinitely).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use vestnik_broker::Outbox;

use super::io::{text_header, SessionIo, Wire};

/// Why a write to the socket did not finish.
#[derive(Debug)]
pub(super) enum WriteFailure {
    /// It took longer than `write_timeout_ms`: the client stopped reading.
    Stalled,
    /// The transport failed or the client went away.
    Failed,
}

/// How a write that did not finish ended: a socket that took nothing for the limit stalled; any
/// other error means the client is gone.
fn failure(e: &std::io::Error) -> WriteFailure {
    if e.kind() == std::io::ErrorKind::TimedOut {
        WriteFailure::Stalled
    } else {
        WriteFailure::Failed
    }
}

/// How a batch write ended.
pub(super) enum Batch {
    /// Everything went out.
    Written,
    /// The outbox asked for a close (a slow consumer's 4100, the drain's 4200) while the socket
    /// was not taking the batch: what was not written has been given back to the outbox, to be
    /// written with the close.
    Interrupted,
    /// The write failed or stalled.
    Failed(WriteFailure),
}

/// `owed` as it is, then every frame of `frames` (emptied) with its text header, in one buffer.
pub(super) fn lay_out(owed: Option<Bytes>, frames: &mut VecDeque<Bytes>) -> Bytes {
    let total: usize =
        owed.as_ref().map_or(0, Bytes::len) + frames.iter().map(|f| f.len() + 10).sum::<usize>();
    let mut buf = Vec::with_capacity(total);
    if let Some(owed) = &owed {
        buf.extend_from_slice(owed);
    }
    for frame in frames.drain(..) {
        let (header, n) = text_header(frame.len());
        buf.extend_from_slice(&header[..n]);
        buf.extend_from_slice(&frame);
    }
    // A burst can grow the queue; do not let an idle socket keep that memory.
    if frames.capacity() > 64 {
        frames.shrink_to(8);
    }
    Bytes::from(buf)
}

/// Writes `owed` as it is, then every frame of `frames` as a text message: the headers and payloads
/// are laid out in one buffer, so a batch costs one syscall when the socket takes it whole. The
/// write goes on as long as the socket takes something within `limit`, so a slow but reading
/// client keeps up while one that stopped reading is found within `limit`; a close requested
/// meanwhile (a queue that overflowed behind this write) interrupts it at once.
pub(super) async fn write_batch(
    io: &mut SessionIo,
    wire: &Wire,
    outbox: &Outbox,
    owed: Option<Bytes>,
    frames: &mut VecDeque<Bytes>,
    limit: Duration,
) -> Batch {
    let buf = lay_out(owed, frames);
    let mut at = 0;
    let result = {
        let write = io.write_from(wire, &buf, &mut at, limit);
        tokio::select! {
            biased;
            r = write => Some(r),
            () = outbox.close_requested() => None,
        }
    };
    match result {
        Some(Ok(())) => Batch::Written,
        Some(Err(e)) => Batch::Failed(failure(&e)),
        None => {
            outbox.give_back(Bytes::copy_from_slice(&buf[at..]));
            Batch::Interrupted
        }
    }
}

/// Writes the session's last bytes: what the outbox still owes (the rest of a direct write or of an
/// interrupted batch, queued pongs, an error before the close), then `tail` (a close frame, a close
/// reply, or nothing), bounded by `limit`. The caller has detached the outbox, so nothing else
/// writes to the socket any more.
pub(super) async fn write_last(
    io: &mut SessionIo,
    wire: &Wire,
    owed: Option<Bytes>,
    tail: &[u8],
    limit: Duration,
) -> Result<(), WriteFailure> {
    let mut buf = Vec::with_capacity(owed.as_ref().map_or(0, Bytes::len) + tail.len());
    if let Some(owed) = &owed {
        buf.extend_from_slice(owed);
    }
    buf.extend_from_slice(tail);
    let mut at = 0;
    io.write_from(wire, &buf, &mut at, limit)
        .await
        .map_err(|e| failure(&e))
}
