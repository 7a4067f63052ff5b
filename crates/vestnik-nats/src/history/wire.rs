//! Names and headers of the history in JetStream: the stream of a cluster, the subject of a
//! channel, and a stored message read back as a [`Batch`].
//!
//! - Stream `VESTNIK_HISTORY_<hex of the cluster prefix>`: stream names may not contain dots,
//!   which prefixes do, and hex keeps two prefixes apart that differ only in such characters.
//! - Subject `{prefix}.h.<app id hex>.<channel name hex>`: channel names may contain characters a
//!   NATS subject forbids (`.`, `*`, `>`, whitespace), hex has none of them and is never empty.
//! - Each message is one channel's batch of events (`codec`), with headers `Vestnik-Epoch` (the
//!   channel's epoch) and `Vestnik-First` (the offset of the batch's first event). An empty batch
//!   starts a channel (its position is epoch, `Vestnik-First - 1`).
//!
//! This module must never build a subject with a wildcard or an empty token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;

use super::codec;

/// The header with the channel's epoch.
pub(crate) const EPOCH: &str = "Vestnik-Epoch";
/// The header with the offset of the batch's first event.
pub(crate) const FIRST: &str = "Vestnik-First";

/// Lowercase hex of `s`'s bytes.
fn hex(s: &str) -> String {
    use std::fmt::Write;
    s.bytes()
        .fold(String::with_capacity(s.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The stream that keeps the history of the cluster `prefix`.
pub(crate) fn stream_name(prefix: &str) -> String {
    format!("VESTNIK_HISTORY_{}", hex(prefix))
}

/// The subjects of that stream: `{prefix}.h.>`.
pub(crate) fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.h.>")
}

/// The subject of one channel's messages, or `None` for an empty app id or channel name (which
/// would make an empty token).
pub(crate) fn subject(prefix: &str, app: &str, channel: &str) -> Option<String> {
    if app.is_empty() || channel.is_empty() {
        return None;
    }
    Some(format!("{prefix}.h.{}.{}", hex(app), hex(channel)))
}

/// One stored message read back: a channel's batch of events.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// The message's sequence in the stream.
    pub(crate) seq: u64,
    /// The channel's epoch when it was written.
    pub(crate) epoch: Arc<str>,
    /// The offset of the first event.
    pub(crate) first: u64,
    /// When the server stored it.
    pub(crate) at: SystemTime,
    /// The events, oldest first.
    pub(crate) events: Vec<Bytes>,
}

impl Batch {
    /// Reads a stored message, or `None` when it is not one this crate wrote.
    pub(crate) fn of(m: &StreamMessage) -> Option<Self> {
        let epoch = m.headers.get(EPOCH)?.as_str();
        let first: u64 = m.headers.get(FIRST)?.as_str().parse().ok()?;
        if epoch.is_empty() || first == 0 {
            return None;
        }
        let nanos = m.time.unix_timestamp_nanos();
        let at = u64::try_from(nanos)
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n))
            .unwrap_or(UNIX_EPOCH);
        Some(Self {
            seq: m.sequence,
            epoch: Arc::from(epoch),
            first,
            at,
            events: codec::decode(&m.payload)?,
        })
    }

    /// The offset of the channel's last event once this batch was written.
    pub(crate) fn top(&self) -> u64 {
        self.first + self.events.len() as u64 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(stream_name("a.b-c"), "VESTNIK_HISTORY_612e622d63");
        assert_eq!(stream_subjects("a.b"), "a.b.h.>");
        assert_eq!(
            subject("p.q", "app", "private-a.b*>c d").as_deref(),
            Some("p.q.h.617070.707269766174652d612e622a3e632064")
        );
        assert_eq!(subject("p", "", "c"), None);
        assert_eq!(subject("p", "a", ""), None);
    }
}
