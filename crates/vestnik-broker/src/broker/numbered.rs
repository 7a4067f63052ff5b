//! Cluster-wide positions: in a cluster whose backbone keeps a
//! [`HistoryStore`](crate::adapter::HistoryStore), an event of a channel that keeps history is
//! numbered by the store before it goes out, here and to the other nodes, so its position means
//! the same on every node; each node's history mirrors what it delivered (see
//! `crate::history::mirror`), and what a node lacks it reads from the store: the events a
//! recovery reaches back to, and the ones missing before an event that arrived early (a gap).
//!
//! When the store cannot be reached, the event still goes out, without a position: the channel
//! is then marked unnumbered here, so no recovery across it is answered as complete, and the next
//! append starts the channel over under a new epoch.
//!
//! This module awaits only the store, never with a lock held; everything that touches a stream
//! goes through `History`'s synchronous methods.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::warn;
use vestnik_protocol::limits::MAX_RECOVERED_EVENTS;
use vestnik_protocol::message::{Position, Recover, RecoveryFailure, Subscribe};
use vestnik_protocol::{ChannelName, ServerMessage, SocketId};

use super::sequencer::Job;
use super::{AppRuntime, Broker};
use crate::adapter::{Appended, HistoryStore, StoredPage, StreamRef};
use crate::app::App;
use crate::connection::ConnectionHandle;
use crate::error::ClientEventError;
use crate::history::{Held, HistoryPage, HistoryRefusal, KeptEvent, StreamLimits};
use crate::hook::HookFuture;
use crate::PublishEvent;

/// How long held events wait for the ones missing before them before the store is asked: long
/// enough for a relay that was merely overtaken, short enough that subscribers barely notice.
const GAP_WAIT: Duration = Duration::from_millis(100);

/// Store reads that may fail in a row before a gap is given up (a store that is down cannot fill
/// it; the held events then go out after about `GAP_TRIES × GAP_WAIT`).
const GAP_TRIES: u32 = 10;

/// An event queued for numbering (see [`Broker::queue_numbered`]): [`done`](Self::done) resolves
/// once the event went out, numbered or not. Dropping it does not cancel the event.
#[derive(Debug)]
#[must_use = "an event is out only once `done` resolved"]
pub struct Numbering(Option<oneshot::Receiver<()>>);

impl Numbering {
    /// Waits until the event went out (at once for an event that needed no numbering). Also
    /// resolves if the broker stopped before numbering it.
    pub async fn done(self) {
        if let Some(rx) = self.0 {
            let _ = rx.await;
        }
    }
}

/// How a channel keeps history on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keeping {
    /// Not at all: history is off for it, or the node is in a cluster without a history store.
    Off,
    /// A single node numbers and keeps its events itself.
    Local(StreamLimits),
    /// The cluster's history store numbers them; the node mirrors what it delivered.
    Cluster(StreamLimits),
}

/// What a subscribe found out before it ran (see [`Broker::subscribe_ready`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeReady {
    /// The history store could not be read: a recovery is answered `backbone_unavailable`.
    pub(crate) store_unreachable: bool,
}

/// One event as the history store keeps it: what a node needs to deliver it again.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    /// Event name.
    e: String,
    /// Data string.
    d: String,
    /// The sender's user id (presence client events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// The socket left out (the publisher's `socket_id`, a client event's sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    /// When it was published, in milliseconds since the Unix epoch.
    t: u64,
}

impl StoredEvent {
    /// The event's bytes in the store.
    pub(super) fn encode(
        event: &str,
        data: &str,
        user_id: Option<&str>,
        except: Option<SocketId>,
    ) -> Bytes {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let stored = StoredEvent {
            e: event.to_owned(),
            d: data.to_owned(),
            u: user_id.map(str::to_owned),
            x: except.map(|s| s.to_string()),
            t,
        };
        Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
    }
}

/// A channel's stream in the store, with the channel's bounds.
fn stream_ref<'a>(
    app: &'a App,
    channel: &'a ChannelName,
    limits: StreamLimits,
    restart: bool,
) -> StreamRef<'a> {
    StreamRef {
        app: &app.id,
        channel: channel.as_str(),
        size: limits.size,
        ttl: limits.ttl,
        restart,
    }
}

impl Broker {
    /// How `channel` keeps history on this node.
    pub(crate) fn keeping(&self, app: &App, channel: &str) -> Keeping {
        let Some(limits) = app.history.for_channel(channel) else {
            return Keeping::Off;
        };
        match self.hook() {
            None => Keeping::Local(limits),
            Some(hook) if hook.history_store().is_some() => Keeping::Cluster(limits),
            Some(_) => Keeping::Off,
        }
    }

    /// The cluster's history store, if this node is in a cluster that keeps one.
    pub(super) fn store(&self) -> Option<Arc<dyn HistoryStore>> {
        self.hook()?.history_store().cloned()
    }

    /// Publishes an API event like [`Broker::publish`], numbered first by the cluster's history
    /// store on the channels that keep history, so it carries the same position on every node,
    /// and returns once it went out (numbered, or unnumbered when the store failed): a trigger
    /// answered after this is in the store, so a client that recovers on another node after this
    /// node died still gets it. Without a store (a single node, or a backbone that keeps none) it
    /// is `publish`. See [`queue_numbered`](Self::queue_numbered) to queue several before waiting.
    pub async fn publish_numbered(&self, app: &Arc<App>, event: &PublishEvent<'_>) {
        self.queue_numbered(app, event).await.done().await;
    }

    /// Queues an API event for numbering like [`publish_numbered`](Self::publish_numbered), and
    /// returns as soon as it is queued, with a [`Numbering`] that resolves once it went out. A
    /// batch queues all its events first and then waits for all of them, so it costs one store
    /// round trip, not one per event; events queued one after another keep their order.
    pub async fn queue_numbered(&self, app: &Arc<App>, event: &PublishEvent<'_>) -> Numbering {
        let numbered = self.store().is_some()
            && event
                .channels
                .iter()
                .any(|c| matches!(self.keeping(app, c.as_str()), Keeping::Cluster(_)));
        if !numbered {
            self.publish(app, event);
            return Numbering(None);
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Publish {
            app: Arc::clone(app),
            name: event.name.to_owned(),
            data: event.data.to_owned(),
            channels: event.channels.to_vec(),
            except: event.except,
            done: Some(tx),
        })
        .await;
        Numbering(Some(rx))
    }

    /// Relays a client event like [`Broker::client_event`], numbered first by the cluster's
    /// history store when its channel keeps history (queued like
    /// [`publish_numbered`](Self::publish_numbered); the count is then 0, as nobody got it yet).
    pub async fn client_event_numbered(
        &self,
        conn: &ConnectionHandle,
        event: &str,
        channel: &ChannelName,
        data: &str,
    ) -> Result<usize, ClientEventError> {
        let user_id = self.check_client_event(conn, channel, data)?;
        let numbered = self.store().is_some()
            && matches!(
                self.keeping(conn.app(), channel.as_str()),
                Keeping::Cluster(_)
            );
        if !numbered {
            return Ok(self.send_client_event(
                conn,
                event,
                channel,
                data,
                user_id.as_deref(),
                None,
            ));
        }
        self.enqueue(Job::ClientEvent {
            conn: conn.clone(),
            event: event.to_owned(),
            channel: channel.clone(),
            data: data.to_owned(),
            user_id,
        })
        .await;
        Ok(0)
    }

    /// Takes an event the store numbered at `p` into `channel`'s history and delivers it in
    /// offset order; if it opened a gap, has the missing events fetched after [`GAP_WAIT`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accept_numbered(
        &self,
        app: &App,
        rt: &AppRuntime,
        channel: &ChannelName,
        limits: StreamLimits,
        p: &Appended,
        held: Held,
        now: Instant,
        mut deliver: impl FnMut(&Held) -> usize,
    ) -> usize {
        if !rt.registry.channels.contains_key(channel.as_str()) {
            // Nobody here subscribes: nothing to order, and a node that does not hear the
            // channel must not keep a partial mirror of it. A first subscriber reads the
            // channel's position from the store (`subscribe_ready`); the cache still takes it.
            return deliver(&held);
        }
        let accepted = rt.history.accept(channel, limits, now, p, held, deliver);
        if accepted.gap_opened {
            let broker = self.clone();
            let app_id = app.id.clone();
            let channel = channel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GAP_WAIT).await;
                if let Some(app) = broker.apps().by_id(&app_id) {
                    broker.fill_gap(&app, &channel, limits).await;
                }
            });
        }
        accepted.delivered
    }

    /// Fetches the events missing before `channel`'s held ones from the store and delivers them,
    /// then the held ones, until no event is held. What the store no longer has (or what it
    /// cannot tell for [`GAP_TRIES`] tries in a row) is given up (counted), and the held events
    /// go out anyway. A gap that closes by itself meanwhile (the missing relay arrived) costs
    /// nothing.
    async fn fill_gap(&self, app: &App, channel: &ChannelName, limits: StreamLimits) {
        let Some(store) = self.store() else {
            return;
        };
        let rt = self.runtime(app);
        let deliver = |h: &Held| self.deliver_held(&rt, app, channel, h);
        let mut failures = 0;
        loop {
            if let Some((epoch, top, first_held)) = rt.history.gap(channel.as_str()) {
                let want =
                    usize::try_from(first_held.saturating_sub(top + 1)).unwrap_or(usize::MAX);
                let read = store
                    .read(stream_ref(app, channel, limits, false), top, want)
                    .await;
                let now = Instant::now();
                let give_up = match read {
                    Ok(page) if page.epoch.as_deref() == Some(&*epoch) => {
                        failures = 0;
                        let events = self.stored_events(&rt, channel, &page);
                        let complete = events.len() == want
                            && events.first().is_some_and(|(o, _, _)| *o == top + 1);
                        rt.history
                            .fill(channel, limits, now, &epoch, top, page.top, events, deliver);
                        !complete
                    }
                    // The store went on to another epoch: what is held can no longer be joined.
                    Ok(_) => true,
                    Err(e) => {
                        failures += 1;
                        warn!(app_id = %app.id, %channel, "history gap not filled yet: {e}");
                        failures >= GAP_TRIES
                    }
                };
                if give_up
                    && rt
                        .history
                        .skip_gap(channel, limits, now, first_held, deliver)
                        > 0
                {
                    rt.history.count_gap_skipped();
                }
            }
            if !rt.history.gap_fill_goes_on(channel.as_str()) {
                return;
            }
            tokio::time::sleep(GAP_WAIT).await;
        }
    }

    /// Delivers an event read from the store (or held) and counts it in the app's usage.
    fn deliver_held(&self, rt: &AppRuntime, app: &App, channel: &ChannelName, h: &Held) -> usize {
        let data = h.cache_data.as_deref().unwrap_or("");
        let n = self.deliver_frame(rt, app, channel, &h.frame, h.except, data, Instant::now());
        rt.usage.delivered(n as u64, (n * h.frame.len()) as u64);
        n
    }

    /// The events of a store page as this node delivers them.
    fn stored_events(
        &self,
        rt: &AppRuntime,
        channel: &ChannelName,
        page: &StoredPage,
    ) -> Vec<(u64, Held, Instant)> {
        let Some(epoch) = page.epoch.as_deref() else {
            return Vec::new();
        };
        page.events
            .iter()
            .map_while(|(offset, bytes)| {
                let stored: StoredEvent = serde_json::from_slice(bytes).ok()?;
                let frame = ServerMessage::ChannelEvent {
                    event: &stored.e,
                    channel: channel.as_str(),
                    data: &stored.d,
                    user_id: stored.u.as_deref(),
                    position: Some(Position {
                        epoch,
                        offset: *offset,
                    }),
                }
                .encode();
                let held = Held {
                    frame,
                    except: stored.x.as_deref().and_then(|s| SocketId::parse(s).ok()),
                    cache_data: channel.is_cache().then_some(stored.d),
                };
                Some((*offset, held, rt.history.instant_of(stored.t)))
            })
            .collect()
    }

    /// What the edge awaits before [`subscribe`](Self::subscribe) on `sub.channel`, if anything:
    /// in a cluster that routes by interest, the backbone's confirmation that this node listens
    /// to the channel's route shard, so that an event published once the client saw
    /// `subscription_succeeded` reaches it; in a cluster with a history store, the channel's
    /// position and, for a `recover` this node cannot answer alone, the missed events, read from
    /// the store. `None` on a single node, or when nothing needs waiting. Pass what it resolves to
    /// to [`subscribe_with`](Self::subscribe_with).
    pub fn subscribe_ready(
        &self,
        conn: &ConnectionHandle,
        sub: &Subscribe,
    ) -> Option<HookFuture<'static, SubscribeReady>> {
        let hook = self.hook()?;
        let app = Arc::clone(conn.app());
        let route = hook.subscribe_ready(&app, &sub.channel);
        let read = match self.keeping(&app, sub.channel.as_str()) {
            Keeping::Cluster(limits) => {
                let rt = self.runtime(&app);
                let name = sub.channel.as_str();
                // A mirror is current only while this node has a subscriber (and so hears the
                // channel); the first subscriber reads the store.
                let heard = rt.registry.channels.contains_key(name);
                let needed = match &sub.recover {
                    Some(from) => {
                        !rt.history.is_unnumbered(name)
                            && (!heard || !rt.history.covers(name, from))
                    }
                    None => !heard || !rt.history.is_numbered(name),
                };
                needed.then(|| (limits, sub.recover.clone()))
            }
            _ => None,
        };
        if route.is_none() && read.is_none() {
            return None;
        }
        let broker = self.clone();
        let channel = sub.channel.clone();
        Some(Box::pin(async move {
            if let Some(route) = route {
                route.await;
            }
            match read {
                Some((limits, from)) => {
                    broker
                        .read_for_subscribe(&app, &channel, limits, from.as_ref())
                        .await
                }
                None => SubscribeReady::default(),
            }
        }))
    }

    /// Reads `channel`'s position, and the events after `from`, from the store into this node's
    /// history, for a subscribe.
    async fn read_for_subscribe(
        &self,
        app: &App,
        channel: &ChannelName,
        limits: StreamLimits,
        from: Option<&Recover>,
    ) -> SubscribeReady {
        let Some(store) = self.store() else {
            return SubscribeReady::default();
        };
        let (after, limit) = match from {
            Some(r) => (r.offset, MAX_RECOVERED_EVENTS + 1),
            None => (u64::MAX, 0),
        };
        let page = match store
            .read(stream_ref(app, channel, limits, false), after, limit)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                warn!(app_id = %app.id, %channel, "history not read for a subscribe: {e}");
                return SubscribeReady {
                    store_unreachable: true,
                };
            }
        };
        let Some(epoch) = page.epoch.clone() else {
            return SubscribeReady::default();
        };
        let rt = self.runtime(app);
        let now = Instant::now();
        let (after, events) = match from {
            Some(r) if *r.epoch == *epoch => (r.offset, self.stored_events(&rt, channel, &page)),
            _ => (page.top, Vec::new()),
        };
        let deliver = |h: &Held| self.deliver_held(&rt, app, channel, h);
        rt.history.fill(
            channel, limits, now, &epoch, after, page.top, events, deliver,
        );
        SubscribeReady::default()
    }

    /// A page of `channel`'s history read from the store, for the history API (see
    /// [`Broker::channel_history`]).
    pub(super) async fn store_page(
        &self,
        app: &App,
        channel: &ChannelName,
        limits: StreamLimits,
        after: Option<&Recover>,
        limit: usize,
    ) -> Result<HistoryPage, HistoryRefusal> {
        let refuse = |reason, current| Err(HistoryRefusal::new(reason, current));
        let Some(store) = self.store() else {
            return refuse(
                RecoveryFailure::ClusterHistoryUnavailable,
                HistoryPage::default(),
            );
        };
        let from = after.map_or(0, |r| r.offset);
        let page = match store
            .read(stream_ref(app, channel, limits, false), from, limit)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                warn!(app_id = %app.id, %channel, "history not read for the API: {e}");
                return refuse(RecoveryFailure::BackboneUnavailable, HistoryPage::default());
            }
        };
        let mut current = HistoryPage {
            epoch: page.epoch.as_deref().map(str::to_owned),
            first_offset: page.first,
            last_offset: page.top,
            events: Vec::new(),
        };
        if let Some(r) = after {
            if page.epoch.as_deref() != Some(r.epoch.as_str()) || r.offset > page.top {
                return refuse(RecoveryFailure::EpochChanged, current);
            }
            if r.offset + 1 < page.first {
                return refuse(RecoveryFailure::TooOld, current);
            }
        }
        let rt = self.runtime(app);
        current.events = self
            .stored_events(&rt, channel, &page)
            .into_iter()
            .map(|(offset, held, at)| KeptEvent {
                offset,
                frame: held.frame,
                published_at_ms: rt.history.millis_of(at),
            })
            .collect();
        Ok(current)
    }
}
