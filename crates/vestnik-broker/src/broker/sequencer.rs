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
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use vestnik_protocol::{ChannelName, SocketId};

use super::numbered::{Keeping, StoredEvent};
use super::{Broker, Inner};
use crate::adapter::{Append, Appended, HistoryStore, StoreError, StreamRef};
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
                appends.push((
                    app.id.clone(),
                    channel.clone(),
                    limits,
                    restart,
                    event,
                    self.inner.append_ids.fetch_add(1, Ordering::Relaxed),
                ));
            }
            slots.push(slot);
        }
        let positions: Vec<Option<Appended>> = match self.store() {
            Some(store) if !appends.is_empty() => {
                let refs: Vec<Append<'_>> = appends
                    .iter()
                    .map(|(app, channel, limits, restart, event, id)| Append {
                        id: *id,
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
                match append_resolved(store.as_ref(), &refs).await {
                    Ok(p) if p.len() == refs.len() => p.into_iter().map(Some).collect(),
                    Ok(_) => {
                        warn!("history store answered for other channels; events sent unnumbered");
                        Vec::new()
                    }
                    Err(e) => {
                        warn!(
                            unnumbered = refs.len(),
                            "appending to the history failed ({e}); the events go out unnumbered"
                        );
                        Vec::new()
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

/// How long the numbering asks again for a batch whose append may have been kept although its
/// answer was lost, before it gives up and sends the batch unnumbered. The queue waits meanwhile,
/// so events keep their order; a backbone back within this time numbers the batch exactly once.
/// Long enough for a node resumed from a stop to reconnect (its link notices the lost calls and
/// reconnects within a few hundred ms), short enough that while the backbone is really down the
/// node's own subscribers wait at most this long for the events published meanwhile (and, below
/// the trigger's 3 s wait, that a durable trigger is still answered after its events went out).
const RESOLVE: Duration = Duration::from_secs(2);

/// The longest pause between two askings of [`RESOLVE`].
const RESOLVE_PAUSE: Duration = Duration::from_millis(500);

/// Appends `appends`; when the store failed after it may have kept them (its answer timed out, the
/// connection dropped: a node stopped with the answer in its socket fires its timer first when it
/// resumes), asks again with the same ids until the store answers or [`RESOLVE`] has passed. The
/// store answers appends it kept with the positions it gave them, and keeps the others now, so a
/// batch is numbered once: sending a kept event unnumbered would deliver it twice to a subscriber
/// whose node fills its gap from the store. A failure before anything was sent is final at once.
async fn append_resolved(
    store: &dyn HistoryStore,
    appends: &[Append<'_>],
) -> Result<Vec<Appended>, StoreError> {
    let first = match store.append(appends).await {
        Err(e) if e.may_have_acted() => e,
        done => return done,
    };
    warn!(
        events = appends.len(),
        "appending to the history failed after sending ({first}); asking again for up to \
         {RESOLVE:?} (the store may have kept the events)"
    );
    let deadline = tokio::time::Instant::now() + RESOLVE;
    let mut pause = Duration::from_millis(20);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(first);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(RESOLVE_PAUSE);
        if let Ok(positions) = store.append(appends).await {
            return Ok(positions);
        }
    }
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
    use crate::adapter::{MemoryStore, StoredPage};
    use crate::hook::HookFuture;
    use bytes::Bytes;
    use std::sync::atomic::AtomicUsize;

    /// A store that keeps what it is given and then says its answer was lost, as one whose answer
    /// timed out, for its first `lost` appends.
    struct KeepsButFails {
        store: MemoryStore,
        lost: AtomicUsize,
        calls: AtomicUsize,
    }

    impl KeepsButFails {
        fn new(lost: usize) -> Self {
            Self {
                store: MemoryStore::new(),
                lost: AtomicUsize::new(lost),
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl HistoryStore for KeepsButFails {
        fn append<'a>(
            &'a self,
            appends: &'a [Append<'a>],
        ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let kept = self.store.append(appends).await?;
                let lose = self
                    .lost
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if lose {
                    return Err(StoreError::unknown("timed out"));
                }
                Ok(kept)
            })
        }

        fn read<'a>(
            &'a self,
            stream: StreamRef<'a>,
            after: u64,
            limit: usize,
        ) -> HookFuture<'a, Result<StoredPage, StoreError>> {
            self.store.read(stream, after, limit)
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

    fn batch() -> [Append<'static>; 3] {
        let same = Bytes::from_static(b"same");
        [
            Append::new(stream("a"), same.clone()),
            Append::new(stream("b"), Bytes::from_static(b"other")),
            Append::new(stream("a"), same),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_whose_answer_was_lost_is_asked_again_and_kept_once() {
        let store = KeepsButFails::new(2);
        let appends = batch();
        let got = append_resolved(&store, &appends).await.unwrap();
        let offsets: Vec<u64> = got.iter().map(|p| p.offset).collect();
        // Two identical events of one channel get one offset each, in batch order, and the
        // store kept each once although it was asked three times.
        assert_eq!(offsets, [1, 1, 2]);
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        let page = store.store.read(stream("a"), 0, 10).await.unwrap();
        assert_eq!(page.top, 2);
        assert_eq!(page.events.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_lost_for_good_fails_after_the_resolve_window() {
        let store = KeepsButFails::new(usize::MAX);
        let started = tokio::time::Instant::now();
        let e = append_resolved(&store, &batch()).await.unwrap_err();
        assert!(e.may_have_acted());
        assert!(started.elapsed() >= RESOLVE);
        assert!(store.calls.load(Ordering::SeqCst) > 2);
    }

    #[tokio::test]
    async fn a_failure_before_sending_is_final_at_once() {
        let store = MemoryStore::new();
        store.set_down(true);
        let e = append_resolved(&store, &batch()).await.unwrap_err();
        assert!(!e.may_have_acted());
    }
}
