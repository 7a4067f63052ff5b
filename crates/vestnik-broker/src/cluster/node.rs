//! [`ClusterNode`]: the cluster loop. It hears the adapter, keeps the peer table, answers `Hello`
//! and queries, and turns every other node's news into calls of the broker's local API.
//!
//! This is the only place that decodes wire messages into broker calls, and the only cluster code
//! that holds a [`Broker`]. It must never reach into the broker's state (it calls
//! `publish_local`, `apply_remote_member`, `local_snapshot` and the like), and never blocks: every
//! branch of the loop is a few map updates and non-blocking sends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use vestnik_protocol::{ChannelName, SocketId};

use super::departed::WrittenOff;
use super::hearing::{Hearing, Tick};
use super::message::{Answer, Envelope, Msg, Query, SyncMember, WirePosition};
use super::replay::{Inboxes, Outcome};
use super::{ClusterLink, ClusterSettings, Peer, QueryNews};
use crate::adapter::{Adapter, AdapterEvent, Appended, Destination, NodeId};
use crate::broker::{PublishEvent, RemoteMemberChange};
use crate::hook::RelayedClientEvent;
use crate::Broker;

/// How long the settle timer sleeps while nothing is to settle: effectively never.
const IDLE: Duration = Duration::from_secs(3600);

/// Longest wait after connecting for the others' answers to `Hello` before this node says "ready".
const SETTLE_MAX: Duration = Duration::from_millis(500);

/// One node of the cluster: the broker it serves and its link to the others.
///
/// It sits over the broker the way centrifuge's `Node` sits over its `Broker`: it decides what the
/// other nodes' messages mean and calls the broker's local API to make it so. The broker holds the
/// link (as its hook), never the node, so there is no reference cycle: the node lives in the one
/// task that runs the cluster loop.
pub(crate) struct ClusterNode {
    /// The broker this node serves; a clone of the edges' broker.
    pub(super) broker: Broker,
    /// The link the broker also holds as its hook.
    pub(super) link: Arc<ClusterLink>,
    /// The adapter's events, taken by the loop when it starts; `None` for a single node.
    events: Option<mpsc::Receiver<AdapterEvent>>,
    /// Nodes declared dead by their silence, so that their return is reported as joins.
    pub(super) written_off: Mutex<WrittenOff>,
    /// Per origin and lane, the last relay delivered and what waits behind a gap (see `replay`).
    pub(super) inboxes: Mutex<Inboxes<Msg>>,
}

/// Why a node is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// It said `Leaving`: it is gone for good.
    Left,
    /// It was silent for longer than the node timeout while this node could hear it: it died, or
    /// it is stopped or cut off and may come back with the same id.
    Silent,
}

impl ClusterNode {
    /// Builds the link over `adapter` and attaches it to `broker` as its cluster hook. A second join
    /// is logged and not attached (its loop still runs, serving nobody).
    pub(crate) fn join(
        broker: Broker,
        node: NodeId,
        adapter: Arc<dyn Adapter>,
        settings: ClusterSettings,
    ) -> Self {
        let events = adapter.events();
        let link = Arc::new(ClusterLink::new(node, adapter, settings));
        if !broker.attach_cluster(link.clone()) {
            warn!("join_cluster called twice; the second call is ignored");
        }
        info!(node, adapter = link.adapter_name(), "joining the cluster");
        // The nodes already there answer this node's first Hello within a query timeout or so;
        // the node timeout is a generous bound on that on a loaded machine.
        let joining = link.settings.node_timeout.max(link.settings.query_timeout);
        Self {
            broker,
            link,
            events,
            written_off: Mutex::new(WrittenOff::default()),
            inboxes: Mutex::new(Inboxes::new(joining)),
        }
    }

    /// The task that runs the cluster loop until `shutdown` resolves. An adapter without events (a
    /// single node) has nothing to hear: the node is ready at once and waits for shutdown.
    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        match self.events.take() {
            // The router never ends by itself: the cluster loop's end (shutdown) ends both.
            Some(events) => {
                tokio::select! {
                    () = self.run_loop(events, shutdown) => {}
                    () = self.route_loop() => {}
                    () = self.reach_loop() => {}
                }
            }
            None => {
                let _ = self.link.ready.send(true);
                shutdown.await;
            }
        }
    }

    /// The cluster loop. One task selects over four things, in this order:
    ///
    /// 1. **Shutdown**: say `Leaving` (so the others forget this node now rather than at the
    ///    heartbeat timeout), close the adapter, return.
    /// 2. **The adapter's events**: a message from another node is decoded and applied
    ///    ([`ClusterNode::handle`]); our own echoes and malformed messages are dropped. On
    ///    (re)connection the node says `Hello`, sends a `Sync` of its whole state and a heartbeat,
    ///    and arms the settle timer. A lost backbone is logged; local sockets are served meanwhile.
    ///    If the adapter stops for good, the loop waits for shutdown serving local sockets only.
    /// 3. **Settle**: one round trip after connecting, the node counts as ready (the others have
    ///    had time to answer `Hello` with their `Sync`), which releases [`ClusterLink::ready`].
    /// 4. **Heartbeat tick**: send this node's socket counts per app, and forget nodes that have been
    ///    silent longer than the node timeout (their members leave, their channels vacate). Silence
    ///    counts only while this node could hear ([`Hearing`]): not while its backbone is down, not
    ///    across a stall of this loop (a stopped process), not while its own messages fail to come
    ///    back. After a stall or a deaf spell the node resyncs as after a reconnection.
    ///
    /// Nothing in the loop awaits anything but the adapter's close on shutdown, so a slow branch
    /// never delays the others.
    async fn run_loop(
        &self,
        mut events: mpsc::Receiver<AdapterEvent>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let link = &self.link;
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(link.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let settle = tokio::time::sleep(IDLE);
        tokio::pin!(settle);
        let mut hearing = Hearing::new(Instant::now(), &link.settings);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    link.send(Destination::All, Msg::Leaving);
                    link.adapter.close().await;
                    info!(node = link.node, "left the cluster");
                    return;
                }
                ev = events.recv() => match ev {
                    None => {
                        warn!("cluster adapter stopped; serving local sockets only");
                        shutdown.await;
                        return;
                    }
                    Some(ev) => if self.on_adapter_event(ev, &mut hearing) {
                        let wait = link.settings.query_timeout.min(SETTLE_MAX);
                        settle.as_mut().reset(tokio::time::Instant::now() + wait);
                    },
                },
                () = &mut settle => {
                    let _ = link.ready.send(true);
                    settle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                }
                _ = tick.tick() => {
                    self.on_tick(&mut hearing);
                }
            }
        }
    }

    /// Handles one adapter event; returns whether the backbone just (re)connected.
    fn on_adapter_event(&self, ev: AdapterEvent, hearing: &mut Hearing) -> bool {
        let link = &self.link;
        match ev {
            AdapterEvent::Message(bytes) => {
                match Envelope::decode(&bytes) {
                    Some(env) if env.from == link.node => {
                        if hearing.echo(Instant::now()) {
                            info!(
                                node = link.node,
                                "this node hears itself again on the backbone; resyncing"
                            );
                            self.resync();
                        }
                    }
                    Some(env) => {
                        link.counters.received.fetch_add(1, Ordering::Relaxed);
                        self.handle(env);
                    }
                    None => debug!("dropped a malformed cluster message"),
                }
                false
            }
            AdapterEvent::Connected => {
                info!(
                    node = link.node,
                    adapter = link.adapter_name(),
                    "cluster backbone connected; resyncing"
                );
                link.connected.store(true, Ordering::Relaxed);
                hearing.connected(Instant::now());
                self.inboxes.lock().connected(Instant::now());
                self.resync();
                true
            }
            AdapterEvent::Disconnected => {
                warn!(
                    node = link.node,
                    adapter = link.adapter_name(),
                    "cluster backbone lost; serving local sockets and reconnecting"
                );
                link.connected.store(false, Ordering::Relaxed);
                hearing.disconnected();
                false
            }
        }
    }

    /// The heartbeat tick: notice a stall or a deaf spell of this node, say "I am alive", and
    /// forget the nodes that were silent for longer than the node timeout while this node could
    /// hear them.
    fn on_tick(&self, hearing: &mut Hearing) {
        let node = self.link.node;
        match hearing.tick(Instant::now()) {
            Tick::Steady => self.send_heartbeat(),
            Tick::Stalled(gap) => {
                warn!(
                    node,
                    stalled_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
                    "the cluster loop did not run for a while (process stopped or starved); \
                     not judging other nodes by a silence it could not hear; resyncing"
                );
                self.resync();
            }
            Tick::Deaf(quiet) => {
                warn!(
                    node,
                    quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX),
                    "this node's own messages stopped coming back from the backbone; \
                     not judging other nodes until it hears itself again"
                );
                self.send_heartbeat();
            }
        }
        self.sweep_dead_nodes(hearing);
        self.chase_gaps();
    }

    /// Asks again the origins of gaps not filled yet, and gives up (counting the relays lost) the
    /// gaps open longer than the replay window: the origin's log has let them go by then.
    fn chase_gaps(&self) {
        let now = Instant::now();
        let (asks, given_up) = {
            let mut inboxes = self.inboxes.lock();
            let asks = inboxes.asks_due(now);
            let limit = self.link.replay_window + self.link.settings.node_timeout;
            (asks, inboxes.give_up(now, limit))
        };
        for (from, lane, after) in asks {
            self.link
                .send(Destination::Node(from), Msg::Resend { after, lane });
        }
        for (from, outcome) in given_up {
            self.deliver(from, outcome);
        }
    }

    /// Applies the relays an inbox released, in order, and counts the ones it gave up.
    pub(super) fn deliver(&self, from: NodeId, outcome: Outcome<Msg>) {
        self.link.count_missed(from, outcome.lost);
        for msg in outcome.deliver {
            self.apply(from, msg);
        }
    }

    /// Announces this node and asks for everyone's state: `Hello`, this node's `Sync`, a heartbeat.
    /// After a (re)connection, a stall or a deaf spell: the others may have missed this node's
    /// changes, or written it off, and this node may have missed theirs.
    fn resync(&self) {
        let link = &self.link;
        link.send(Destination::All, Msg::Hello);
        link.send(Destination::All, self.sync_msg());
        self.send_heartbeat();
    }

    /// Says "I am alive" with this node's sockets per app, for the others' app quotas.
    fn send_heartbeat(&self) {
        let connections = self.broker.connection_counts();
        let (day, messages) = self.broker.message_counts();
        self.link.send(
            Destination::All,
            Msg::Heartbeat {
                connections,
                day,
                messages,
            },
        );
    }

    /// Forgets every node that has been silent for longer than the node timeout while this node
    /// could hear it. While this node cannot hear (backbone down, just stalled, deaf), nobody is
    /// judged: the silence is this node's own.
    fn sweep_dead_nodes(&self, hearing: &Hearing) {
        let link = &self.link;
        let now = Instant::now();
        let dead: Vec<NodeId> = link
            .peers
            .lock()
            .iter()
            .filter(|(_, p)| {
                hearing
                    .silence(p.last_seen, now)
                    .is_some_and(|quiet| quiet > link.settings.node_timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for node in dead {
            warn!(
                node,
                "cluster node stopped sending heartbeats; removing its members"
            );
            self.forget_node(node, Departure::Silent);
        }
    }

    /// Forgets a node that left or died: queries stop waiting for it, its channels vacate and its
    /// members leave. The departed node cannot send its webhooks; the lowest surviving node id
    /// does, so they go out once. A node forgotten for its silence is remembered, with whether this
    /// node reported it, so that its return reports its members and channels back.
    fn forget_node(&self, node: NodeId, why: Departure) {
        let link = &self.link;
        link.peers.lock().remove(&node);
        for tx in link.queries.lock().values() {
            let _ = tx.send(QueryNews::Gone(node));
        }
        let leader = link.peers.lock().keys().all(|peer| *peer > link.node);
        match why {
            Departure::Silent => self.written_off.lock().insert(node, leader),
            Departure::Left => self.written_off.lock().forget(node),
        }
        for (app, channel) in link.occupancy.of_node(node) {
            let gone = link.occupancy.vacate(node, &app, &channel);
            let (Some(app), Ok(channel)) =
                (self.broker.apps().by_id(&app), ChannelName::parse(&channel))
            else {
                continue;
            };
            if gone && leader {
                self.broker.report_remote_vacated(&app, &channel);
            }
        }
        for (app_id, channel, user) in link.presence.of_node(node) {
            if self.remote_member_left(node, &app_id, &channel, &user) && leader {
                if let (Some(app), Ok(channel)) = (
                    self.broker.apps().by_id(&app_id),
                    ChannelName::parse(&channel),
                ) {
                    self.broker
                        .report_remote_member_removed(&app, &channel, &user);
                }
            }
        }
    }

    /// This node's whole state, as a `Sync`.
    fn sync_msg(&self) -> Msg {
        let lanes = self.link.sent.lock().recent_lanes(Instant::now());
        Msg::sync_of(self.broker.local_snapshot(), lanes)
    }

    /// Records that `from` spoke: its last-seen time, its socket counts, its draining flag. Returns
    /// whether it was known before. A node we did not know that says anything but `Hello` or `Sync`
    /// started while we were disconnected: ask it for its state.
    fn note_peer(&self, from: NodeId, msg: &Msg) -> bool {
        let link = &self.link;
        let known = {
            let mut peers = link.peers.lock();
            let known = peers.contains_key(&from);
            let peer = peers.entry(from).or_insert_with(|| Peer {
                last_seen: Instant::now(),
                connections: HashMap::new(),
                day: 0,
                messages: HashMap::new(),
                draining: false,
            });
            if matches!(msg, Msg::Draining) {
                peer.draining = true;
            }
            peer.last_seen = Instant::now();
            if let Msg::Heartbeat {
                connections,
                day,
                messages,
            } = msg
            {
                peer.connections = connections.iter().cloned().collect();
                peer.day = *day;
                peer.messages = messages
                    .iter()
                    .map(|(app, counted, flushed)| (app.clone(), (*counted, *flushed)))
                    .collect();
            }
            known
        };
        if !known && !matches!(msg, Msg::Leaving) {
            info!(node = from, "cluster node joined");
            if !matches!(msg, Msg::Hello | Msg::Sync { .. }) {
                link.send(Destination::Node(from), Msg::Hello);
            }
        }
        known
    }

    /// Takes one message from another node through its origin's inbox: a relay is applied once,
    /// in order (or held behind a gap, or dropped as a repeat), any other message is applied at
    /// once; a gap the message reveals is asked for.
    fn handle(&self, env: Envelope) {
        let Envelope {
            from,
            seq,
            lane,
            msg,
        } = env;
        self.note_peer(from, &msg);
        let now = Instant::now();
        let relay_lane = msg.is_relay().then_some(lane);
        if let Some(lane) = relay_lane {
            let outcome = self.inboxes.lock().relay(from, lane, seq, msg, now);
            if outcome.repeat {
                self.link.counters.repeats.fetch_add(1, Ordering::Relaxed);
            }
            self.deliver(from, outcome);
        } else {
            self.inboxes.lock().stamp(from, seq, now);
            self.apply(from, msg);
        }
        let lane = relay_lane.flatten();
        let ask = self.inboxes.lock().ask(from, lane, now);
        if let Some(after) = ask {
            debug!(
                node = self.link.node,
                origin = from,
                after,
                ?lane,
                "missed relays from another node; asking for them again"
            );
            self.link
                .send(Destination::Node(from), Msg::Resend { after, lane });
        }
    }

    /// Applies one message from another node.
    fn apply(&self, from: NodeId, msg: Msg) {
        let link = &self.link;
        match msg {
            Msg::Publish {
                app,
                channels,
                name,
                data,
                except,
                positions,
            } => {
                self.count_relay(&app, &channels);
                let positions: Vec<Option<Appended>> = positions
                    .into_iter()
                    .map(|p| p.map(WirePosition::into_appended))
                    .collect();
                self.remote_publish(&app, &channels, &name, &data, except.as_deref(), &positions);
            }
            Msg::ClientEvent {
                app,
                channel,
                event,
                data,
                except,
                user_id,
                position,
            } => {
                self.count_relay(&app, std::slice::from_ref(&channel));
                let (Some(app), Ok(channel), Ok(socket_id)) = (
                    self.broker.apps().by_id(&app),
                    ChannelName::parse(&channel),
                    SocketId::parse(&except),
                ) else {
                    return debug!("dropped a client event for an unknown app or channel");
                };
                let event = RelayedClientEvent {
                    channel: &channel,
                    event: &event,
                    data: &data,
                    socket_id,
                    user_id: user_id.as_deref(),
                };
                let position = position.map(WirePosition::into_appended);
                self.broker
                    .client_event_local(&app, &event, position.as_ref());
            }
            Msg::Terminate { app, user_id } => {
                if let Some(app) = self.broker.apps().by_id(&app) {
                    self.broker.terminate_local(&app, &user_id);
                }
            }
            Msg::MemberJoined(m) => {
                self.remote_member_joined(from, &m);
            }
            Msg::MemberLeft {
                app,
                channel,
                user_id,
            } => {
                self.remote_member_left(from, &app, &channel, &user_id);
            }
            Msg::Heartbeat { .. } => {}
            Msg::Hello => {
                link.send(Destination::Node(from), self.sync_msg());
                self.send_heartbeat();
            }
            Msg::Sync {
                members,
                channels,
                cache,
                lanes,
            } => {
                self.apply_sync(from, members, channels, cache);
                self.stamp_lanes(from, &lanes);
            }
            Msg::Occupied { app, channel } => {
                if link.occupancy.occupy(from, &app, &channel) {
                    if let (Some(app), Ok(channel)) =
                        (self.broker.apps().by_id(&app), ChannelName::parse(&channel))
                    {
                        self.broker.report_occupied_elsewhere(&app, &channel);
                    }
                }
            }
            Msg::Vacated { app, channel } => {
                link.occupancy.vacate(from, &app, &channel);
            }
            Msg::Draining => info!(node = from, "cluster node is draining"),
            Msg::Leaving => {
                info!(node = from, "cluster node left");
                self.forget_node(from, Departure::Left);
                self.inboxes.lock().forget(from);
            }
            Msg::Query { id, query } => {
                let answer = self.answer(&query);
                link.send(Destination::Node(from), Msg::Reply { id, answer });
            }
            Msg::Reply { id, answer } => {
                if let Some(tx) = link.queries.lock().get(&id) {
                    let _ = tx.send(QueryNews::Answer(from, answer));
                }
            }
            Msg::Resend { after, lane } => link.resend(from, lane, after),
            Msg::Missed { upto, lane } => {
                let outcome = self.inboxes.lock().missed(from, lane, upto);
                self.deliver(from, outcome);
            }
        }
    }

    /// An event published on another node: fan it out here.
    fn remote_publish(
        &self,
        app_id: &str,
        channels: &[String],
        name: &str,
        data: &str,
        except: Option<&str>,
        positions: &[Option<Appended>],
    ) {
        let Some(app) = self.broker.apps().by_id(app_id) else {
            return;
        };
        // Positions stay with their channels: a channel name that does not parse drops both.
        let (channels, positions): (Vec<ChannelName>, Vec<Option<Appended>>) = channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let name = ChannelName::parse(c).ok()?;
                Some((name, positions.get(i).cloned().flatten()))
            })
            .unzip();
        let except = except.and_then(|s| SocketId::parse(s).ok());
        self.broker.publish_local(
            &app,
            &PublishEvent {
                name,
                data,
                channels: &channels,
                except,
            },
            &positions,
        );
    }

    /// This node's part of the answer to another node's query.
    fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::Channels { app, prefix } => {
                Answer::Channels(self.broker.local_channels(app, prefix))
            }
            Query::Channel { app, channel } => {
                Answer::Channel(self.broker.local_subscriptions(app, channel))
            }
            Query::Ping => Answer::Pong,
        }
    }

    /// A remote node's first socket of a user joined: announce the user locally if nobody had it.
    /// Returns whether the user appeared in the cluster-wide roster (nobody here or elsewhere had
    /// it).
    pub(super) fn remote_member_joined(&self, from: NodeId, m: &SyncMember) -> bool {
        let Some(app) = self.broker.apps().by_id(&m.app) else {
            return false;
        };
        let info = m
            .info
            .as_ref()
            .and_then(|i| RawValue::from_string(i.clone()).ok());
        let presence = &self.link.presence;
        self.broker.apply_remote_member(
            &app,
            &m.channel,
            &m.user_id,
            RemoteMemberChange::Joined(info.as_deref()),
            || presence.join(from, &m.app, &m.channel, &m.user_id, info.clone()),
        )
    }

    /// A remote node's last socket of a user left: announce it locally if nobody has the user now.
    /// Returns whether the user left the cluster-wide roster.
    pub(super) fn remote_member_left(
        &self,
        from: NodeId,
        app_id: &str,
        channel: &str,
        user: &str,
    ) -> bool {
        let Some(app) = self.broker.apps().by_id(app_id) else {
            return false;
        };
        let presence = &self.link.presence;
        self.broker
            .apply_remote_member(&app, channel, user, RemoteMemberChange::Left, || {
                presence.leave(from, app_id, channel, user)
            })
    }
}
