//! The append path of [`NatsHistory`]: a batch split into one message per channel (several under
//! the server's max payload), each published after the channel's last message with
//! `Nats-Expected-Last-Subject-Sequence` and under a `Nats-Msg-Id` made of its first append's id,
//! so a batch asked again after its answer was lost is answered from what JetStream kept rather
//! than kept twice (see the module documentation of `history`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::future::try_join_all;
use vestnik_broker::adapter::{new_epoch, Append, Appended, StoreError, StreamRef};

use super::wire::{self, Batch};
use super::{codec, not_ours, read_timed, timed, NatsHistory, MAX_RETRIES};

/// Room left for the headers and the protocol line when a channel's batch is split under the
/// server's max payload.
const HEADROOM: usize = 4096;

/// What a publish did.
pub(super) enum Published {
    /// The message is stored now.
    Now,
    /// JetStream had stored a message under the same id before, at this sequence.
    Before(u64),
    /// Another node appended first (or the stream was made again): read again.
    Conflict,
}

/// One channel's part of an append: its events, and where they go in the answer.
struct Group<'a> {
    /// The id of the channel's first append in the call, which names its messages.
    id: u64,
    subject: String,
    restart: bool,
    events: Vec<&'a Bytes>,
    slots: Vec<usize>,
}

impl NatsHistory {
    /// See [`HistoryStore::append`](vestnik_broker::adapter::HistoryStore::append): one message per channel (in the order of their first
    /// events), the channels at once.
    pub(super) async fn append_all<'a>(
        &self,
        appends: &'a [Append<'a>],
    ) -> Result<Vec<Appended>, StoreError> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        self.check()?;
        // One message per channel (in the order of their first events), the channels at once.
        let mut groups: Vec<(StreamRef<'a>, Group<'a>)> = Vec::new();
        for (i, a) in appends.iter().enumerate() {
            let s = &a.stream;
            if let Some((_, g)) = groups
                .iter_mut()
                .find(|(r, _)| r.app == s.app && r.channel == s.channel)
            {
                g.events.push(&a.event);
                g.slots.push(i);
                continue;
            }
            let subject = wire::subject(&self.prefix, s.app, s.channel)
                .ok_or_else(|| StoreError::unsent("an empty app id or channel name"))?;
            groups.push((
                *s,
                Group {
                    id: a.id,
                    subject,
                    restart: s.restart,
                    events: vec![&a.event],
                    slots: vec![i],
                },
            ));
        }
        // Raise the stream's limits once for the whole batch.
        let size = groups.iter().map(|(s, _)| s.size).max().unwrap_or(1);
        let ttl = groups.iter().map(|(s, _)| s.ttl).max().unwrap_or_default();
        self.stream(size, ttl).await?;
        // Once a group may have been published, any failure may come after something was
        // kept (the others' publishes are cancelled mid-way).
        let done = try_join_all(groups.iter().map(|(s, g)| self.append_group(s, g)))
            .await
            .map_err(|e| StoreError::unknown(e.message))?;
        let mut out: Vec<Option<Appended>> = vec![None; appends.len()];
        for ((_, g), positions) in groups.iter().zip(done) {
            for (slot, p) in g.slots.iter().zip(positions) {
                out[*slot] = Some(p);
            }
        }
        out.into_iter()
            .map(|p| p.ok_or_else(|| StoreError::unknown("nats: an event was not appended")))
            .collect()
    }

    /// Publishes one channel's batch after the last message `expected` (0: the subject has none),
    /// under `id` (JetStream stores a message id once within its duplicate window).
    pub(super) async fn publish(
        &self,
        subject: &str,
        epoch: &str,
        first: u64,
        expected: u64,
        payload: Bytes,
        id: Option<&str>,
    ) -> Result<Published, StoreError> {
        self.check()?;
        let mut headers = HeaderMap::new();
        if let Some(id) = id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        }
        headers.insert(wire::EPOCH, epoch);
        headers.insert(wire::FIRST, first.to_string().as_str());
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let subject = subject.to_owned();
        let sent = timed(async {
            self.js
                .publish_with_headers(subject, headers, payload)
                .await?
                .await
        })
        .await?;
        match sent {
            Ok(ack) if ack.duplicate => Ok(Published::Before(ack.sequence)),
            Ok(_) => Ok(Published::Now),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Published::Conflict),
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                self.forget();
                Ok(Published::Conflict)
            }
            Err(e) => {
                self.forget();
                Err(StoreError::unknown(format!(
                    "nats: appending to the history: {e}"
                )))
            }
        }
    }

    /// Appends one channel's events as one message (or several, under the server's max payload),
    /// each at the channel's next offset. Returns the position of each event, in order.
    async fn append_group(
        &self,
        stream: &StreamRef<'_>,
        group: &Group<'_>,
    ) -> Result<Vec<Appended>, StoreError> {
        let max = self
            .client
            .server_info()
            .max_payload
            .saturating_sub(HEADROOM)
            .max(1);
        let mut out = Vec::with_capacity(group.events.len());
        let mut restart = group.restart;
        let mut rest = &group.events[..];
        let mut chunk_no = 0;
        while !rest.is_empty() {
            let mut n = 0;
            let mut len = 1;
            while n < rest.len() && (n == 0 || len + codec::encoded_len(rest[n].len()) <= max) {
                len += codec::encoded_len(rest[n].len());
                n += 1;
            }
            let (chunk, next) = rest.split_at(n);
            let payload = codec::encode(chunk.iter().copied());
            // The same group splits the same way when asked again, so each chunk keeps its id.
            let id = format!("{:016x}-{chunk_no}", group.id);
            chunk_no += 1;
            let (epoch, first) = self
                .append_chunk(stream, &group.subject, restart, payload, &id)
                .await?;
            out.extend((0..chunk.len() as u64).map(|i| Appended {
                epoch: Arc::clone(&epoch),
                offset: first + i,
            }));
            restart = false;
            rest = next;
        }
        Ok(out)
    }

    /// One message of a channel's events at its next offset: read the last, publish after it,
    /// retry on a concurrent append. Returns the epoch and the first event's offset; for a
    /// message JetStream already had under `id` (an append asked again after its answer was
    /// lost), the ones it was stored with.
    async fn append_chunk(
        &self,
        limits: &StreamRef<'_>,
        subject: &str,
        restart: bool,
        payload: Bytes,
        id: &str,
    ) -> Result<(Arc<str>, u64), StoreError> {
        for attempt in 0..=MAX_RETRIES {
            if attempt > 0 {
                // Another node appended between this read and publish: wait a random moment,
                // longer each time, so two nodes hammering one channel do not keep colliding.
                tokio::time::sleep(retry_pause(attempt)).await;
            }
            let stream = self.stream(limits.size, limits.ttl).await?;
            let last = self.last(&stream, subject).await?;
            let (epoch, first, expected) = match last {
                Some(b) if !restart => (b.epoch.clone(), b.top() + 1, b.seq),
                Some(b) => (new_epoch(), 1, b.seq),
                None => (new_epoch(), 1, 0),
            };
            match self
                .publish(subject, &epoch, first, expected, payload.clone(), Some(id))
                .await?
            {
                Published::Now => return Ok((epoch, first)),
                Published::Before(seq) => {
                    let kept = match read_timed(|| stream.direct_get(seq)).await? {
                        Ok(m) => Batch::of(&m).ok_or_else(not_ours)?,
                        Err(e) => {
                            return Err(StoreError::unknown(format!(
                                "nats: reading back an append stored before: {e}"
                            )))
                        }
                    };
                    return Ok((kept.epoch, kept.first));
                }
                Published::Conflict => {}
            }
        }
        Err(StoreError::unsent(format!(
            "nats: {subject} was appended to by other nodes {MAX_RETRIES} times in a row"
        )))
    }
}

/// A random pause before retry `attempt` (from 1) of an append that collided: up to 100 µs before
/// the first, doubling with each retry, at most 5 ms (32 retries wait well under a second in all).
fn retry_pause(attempt: usize) -> Duration {
    let cap = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
    Duration::from_micros(rand::random_range(0..=cap))
}
