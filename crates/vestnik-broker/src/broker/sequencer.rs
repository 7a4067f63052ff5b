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
use crate::adapter::{Append, Appended, StreamRef};
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
        let positions: Option<Vec<Appended>> = match self.store() {
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
                    Ok(p) if p.len() == refs.len() => Some(p),
                    Ok(_) => {
                        warn!("history store answered for other channels; events sent unnumbered");
                        None
                    }
                    Err(e) => {
                        warn!("events sent without positions: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        for (job, slot) in jobs.into_iter().zip(slots) {
            let at = |i: Option<usize>| Some(positions.as_ref()?.get(i?)?.clone());
            if positions.is_none() && slot.iter().any(Option::is_some) {
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
