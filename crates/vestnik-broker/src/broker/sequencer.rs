//! The node's numbering queue: in a cluster whose backbone keeps the history, every event of a
//! channel that keeps history is numbered by the store before it goes out. Awaiting the store per
//! event would put a backbone round trip into every trigger's answer and cap a publisher's
//! throughput at its concurrency over that round trip, so events queue here instead (the trigger is
//! waits for its event's batch, not for a round trip of its own), and one task appends what is
//! queued to the store in one call per batch, then delivers the batch in queue order and tells
//! each waiting trigger that its event went out (see [`Numbering`](super::Numbering)).
//!
//! Order: the queue is taken in order and batches one after another, so the events one publisher
//! sends one after another get rising offsets, as do a socket's client events.
//!
//! This module must never hold a lock across the store's await; the task holds the broker only
//! weakly, so it ends with the broker.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use vestnik_protocol::{ChannelName, SocketId};

use super::numbered::{Keeping, StoredEvent};
use super::{Broker, Inner};
use crate::adapter::{Append, Appended, HistoryStore, StreamRef};
use crate::app::App;
use crate::connection::ConnectionHandle;
use crate::PublishEvent;

/// Events queued for numbering before publishers wait for room.
pub(super) const QUEUE: usize = 16_384;

/// Most events one store call numbers.
const BATCH: usize = 256;

/// An event waiting for its positions.
pub(super) enum Job {
    /// An API event.
    Publish {
        app: Arc<App>,
        name: String,
        data: String,
        channels: Vec<ChannelName>,
        except: Option<SocketId>,
        /// Told once the event went out (numbered or not), for a caller that answers only then.
        done: Option<oneshot::Sender<()>>,
    },
    /// A client event, checked already.
    ClientEvent {
        conn: ConnectionHandle,
        event: String,
        channel: ChannelName,
        data: String,
        user_id: Option<Arc<str>>,
    },
}

impl Job {
    fn app(&self) -> &App {
        match self {
            Job::Publish { app, .. } => app,
            Job::ClientEvent { conn, .. } => conn.app(),
        }
    }

    fn channels(&self) -> &[ChannelName] {
        match self {
            Job::Publish { channels, .. } => channels,
            Job::ClientEvent { channel, .. } => std::slice::from_ref(channel),
        }
    }

    /// The event as the store keeps it.
    fn stored(&self) -> bytes::Bytes {
        match self {
            Job::Publish {
                name, data, except, ..
            } => StoredEvent::encode(name, data, None, *except),
            Job::ClientEvent {
                conn,
                event,
                data,
                user_id,
                ..
            } => StoredEvent::encode(event, data, user_id.as_deref(), Some(conn.socket_id())),
        }
    }
}

impl Broker {
    /// Queues `job` for numbering, starting the queue's task on first use.
    pub(super) async fn enqueue(&self, job: Job) {
        let tx = self.inner.numbering.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(Arc::downgrade(&self.inner), rx));
            tx
        });
        self.inner.numbering_pending.fetch_add(1, Ordering::AcqRel);
        if tx.send(job).await.is_err() {
            self.inner.numbering_pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until every queued event went out (numbered or not), for at most `timeout`: the
    /// drain calls it before the node leaves its cluster.
    pub async fn numbering_idle(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.numbering_pending.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Numbers one batch and delivers it in order.
    async fn number_batch(&self, jobs: Vec<Job>) {
        // Which channels of which job the store numbers, and each one's append.
        let mut appends = Vec::new();
        let mut slots: Vec<Vec<Option<usize>>> = Vec::with_capacity(jobs.len());
        let mut restarted: Vec<(String, ChannelName)> = Vec::new();
        for job in &jobs {
            let app = job.app();
            let rt = self.runtime(app);
            let mut slot = Vec::with_capacity(job.channels().len());
            let mut stored = None;
            for channel in job.channels() {
                let Keeping::Cluster(limits) = self.keeping(app, channel.as_str()) else {
                    slot.push(None);
                    continue;
                };
                // A channel sent unnumbered starts over under a new epoch, once per batch.
                let restart = rt.history.is_unnumbered(channel.as_str())
                    && !restarted.iter().any(|(a, c)| *a == app.id && c == channel);
                if restart {
                    restarted.push((app.id.clone(), channel.clone()));
                }
                let event = stored.get_or_insert_with(|| job.stored()).clone();
                slot.push(Some(appends.len()));
                appends.push((app.id.clone(), channel.clone(), limits, restart, event));
            }
            slots.push(slot);
        }
        let positions: Vec<Option<Appended>> = match self.store() {
            Some(store) if !appends.is_empty() => {
                let refs: Vec<Append<'_>> = appends
                    .iter()
                    .map(|(app, channel, limits, restart, event)| Append {
                        stream: StreamRef {
                            app,
                            channel: channel.as_str(),
                            size: limits.size,
                            ttl: limits.ttl,
                            restart: *restart,
                        },
                        event: event.clone(),
                    })
                    .collect();
                match store.append(&refs).await {
                    Ok(p) if p.len() == refs.len() => p.into_iter().map(Some).collect(),
                    Ok(_) => {
                        warn!("history store answered for other channels; events sent unnumbered");
                        Vec::new()
                    }
                    Err(e) => {
                        // A store that refused before sending anything kept nothing.
                        let found = if e.0.ends_with("is unreachable") {
                            vec![None; refs.len()]
                        } else {
                            read_back(store.as_ref(), &refs).await
                        };
                        let lost = found.iter().filter(|p| p.is_none()).count();
                        warn!(
                            kept = refs.len() - lost,
                            unnumbered = lost,
                            "appending to the history failed ({e}); events the store kept anyway \
                             go out with their positions, the others without"
                        );
                        found
                    }
                }
            }
            _ => Vec::new(),
        };
        for (job, slot) in jobs.into_iter().zip(slots) {
            let at = |i: Option<usize>| positions.get(i?)?.clone();
            if slot.iter().any(|i| i.is_some() && at(*i).is_none()) {
                self.runtime(job.app()).history.count_unnumbered();
            }
            match job {
                Job::Publish {
                    app,
                    name,
                    data,
                    channels,
                    except,
                    done,
                } => {
                    let positions: Vec<Option<Appended>> = slot.iter().map(|i| at(*i)).collect();
                    self.publish_at(
                        &app,
                        &PublishEvent {
                            name: &name,
                            data: &data,
                            channels: &channels,
                            except,
                        },
                        &positions,
                    );
                    if let Some(done) = done {
                        // The caller may have stopped waiting (its bound passed); nothing to tell.
                        let _ = done.send(());
                    }
                }
                Job::ClientEvent {
                    conn,
                    event,
                    channel,
                    data,
                    user_id,
                } => {
                    let position = at(slot[0]);
                    self.send_client_event(
                        &conn,
                        &event,
                        &channel,
                        &data,
                        user_id.as_deref(),
                        position.as_ref(),
                    );
                }
            }
            self.inner.numbering_pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How long [`read_back`] may take in all: a store that timed out once may well time out again.
const READ_BACK: std::time::Duration = std::time::Duration::from_secs(1);

/// After an append failed, the positions of the events the store kept anyway, read back from
/// their channels' kept events (matched by their stored bytes, which carry their publish time).
/// A failure is not always a refusal: an answer that timed out may come from a store that kept
/// the events (a node stopped with the answer waiting in its socket fires its timer first when it
/// resumes). Sending such an event unnumbered would deliver it twice to a client that meanwhile
/// recovered it from the store on another node. A store that is unreachable fails the reads at
/// once (retried until [`READ_BACK`] has passed), and everything goes out unnumbered, as before.
async fn read_back(store: &dyn HistoryStore, appends: &[Append<'_>]) -> Vec<Option<Appended>> {
    let mut found: Vec<Option<Appended>> = vec![None; appends.len()];
    let mut read: Vec<(&str, &str)> = Vec::new();
    let lookup = async {
        for (i, append) in appends.iter().enumerate() {
            let key = (append.stream.app, append.stream.channel);
            if read.contains(&key) {
                continue;
            }
            read.push(key);
            let stream = StreamRef {
                restart: false,
                ..append.stream
            };
            // The link may be down for a moment (a node that resumes from a stop finds its
            // backbone calls timed out and reconnects): try again until the deadline.
            let page = loop {
                match store.read(stream, 0, stream.size.max(1)).await {
                    Ok(page) => break page,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            let Some(epoch) = page.epoch else {
                continue;
            };
            // This stream's appends in batch order, each matched to the first unclaimed copy.
            let mut claimed: Vec<u64> = Vec::new();
            for (j, other) in appends.iter().enumerate().skip(i) {
                if (other.stream.app, other.stream.channel) != key {
                    continue;
                }
                let hit = page
                    .events
                    .iter()
                    .find(|(offset, bytes)| *bytes == other.event && !claimed.contains(offset));
                if let Some((offset, _)) = hit {
                    claimed.push(*offset);
                    found[j] = Some(Appended {
                        epoch: Arc::clone(&epoch),
                        offset: *offset,
                    });
                }
            }
        }
    };
    let _ = tokio::time::timeout(READ_BACK, lookup).await;
    found
}

/// The queue's task: takes what is queued, up to [`BATCH`] at a time, numbers and delivers it;
/// ends when the broker is gone.
async fn run(inner: Weak<Inner>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Broker { inner }.number_batch(jobs).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{MemoryStore, StoreError, StoredPage};
    use crate::hook::HookFuture;
    use bytes::Bytes;
    use std::time::Duration;

    /// A store that keeps what it is given and then says it failed, as one whose answer timed out.
    struct KeepsButFails(MemoryStore);

    impl HistoryStore for KeepsButFails {
        fn append<'a>(
            &'a self,
            appends: &'a [Append<'a>],
        ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>> {
            Box::pin(async move {
                self.0.append(appends).await?;
                Err(StoreError("timed out".into()))
            })
        }

        fn read<'a>(
            &'a self,
            stream: StreamRef<'a>,
            after: u64,
            limit: usize,
        ) -> HookFuture<'a, Result<StoredPage, StoreError>> {
            self.0.read(stream, after, limit)
        }
    }

    fn stream(channel: &str) -> StreamRef<'_> {
        StreamRef {
            app: "app",
            channel,
            size: 10,
            ttl: Duration::from_secs(60),
            restart: false,
        }
    }

    #[tokio::test]
    async fn a_failed_append_the_store_kept_is_read_back_with_its_positions() {
        let store = KeepsButFails(MemoryStore::new());
        let same = Bytes::from_static(b"same");
        let appends = [
            Append {
                stream: stream("a"),
                event: same.clone(),
            },
            Append {
                stream: stream("b"),
                event: Bytes::from_static(b"other"),
            },
            Append {
                stream: stream("a"),
                event: same.clone(),
            },
        ];
        assert!(store.append(&appends).await.is_err());
        let found = read_back(&store, &appends).await;
        let offsets: Vec<Option<u64>> =
            found.iter().map(|p| p.as_ref().map(|p| p.offset)).collect();
        // Two identical events of one channel get one offset each, in batch order.
        assert_eq!(offsets, [Some(1), Some(1), Some(2)]);
        assert_eq!(
            found[0].as_ref().unwrap().epoch,
            found[2].as_ref().unwrap().epoch
        );
    }

    #[tokio::test]
    async fn events_the_store_does_not_have_stay_unnumbered() {
        let store = MemoryStore::new();
        let appends = [Append {
            stream: stream("a"),
            event: Bytes::from_static(b"never stored"),
        }];
        assert_eq!(read_back(&store, &appends).await, [None]);
        // A store that is down fails the read: nothing is found.
        store
            .append(&[Append {
                stream: stream("a"),
                event: Bytes::from_static(b"never stored"),
            }])
            .await
            .unwrap();
        store.set_down(true);
        assert_eq!(read_back(&store, &appends).await, [None]);
    }
}
