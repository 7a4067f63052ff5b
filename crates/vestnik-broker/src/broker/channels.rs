//! Joining and leaving channels. A subscription runs as named steps, in this order:
//!
//! 1. [`authorise`]: the channel's kind decides what proves the right to join (nothing, a signature,
//!    a signature over `channel_data`, or the signed-in user).
//! 2. [`Joining::join_roster`]: on presence channels, the member joins the local roster, counted
//!    against the cluster-wide limit (members on other nodes come from the
//!    [`ClusterHook`](crate::hook::ClusterHook)).
//! 3. [`Joining::join_registry`]: the socket joins the channel's subscribers; the first one occupies
//!    the channel.
//! 4. Replies and events: `subscription_succeeded` (with the roster, the channel's position and the
//!    answer to a `recover`), the missed events a recovery found, `member_added` to the others, the
//!    subscription count, the cached event or `cache_miss` (not after a recovery).
//!
//! Where the channel keeps history, steps 2 to 4 run under its stream's lock (taken before the
//! shard), the lock its publishers fan out under: the missed events and the live ones meet with no
//! gap and no duplicate.
//!
//! The roster step runs before the registry step so that a full presence channel refuses a socket
//! before it is anyone's subscriber. All steps run under the socket's state lock and the channel's
//! shard lock, so two sockets joining one channel see each other in a consistent order. This module
//! must never await, and never names what goes to other nodes: it tells the hook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use vestnik_protocol::auth::{verify_channel, AuthError};
use vestnik_protocol::limits::MAX_RECOVERED_EVENTS;
use vestnik_protocol::limits::{
    SUBSCRIPTION_COUNT_INTERVAL_SECS, SUBSCRIPTION_COUNT_THROTTLE_ABOVE,
};
use vestnik_protocol::message::{
    MemberView, Position, PresenceData, Recover, Recovery, RecoveryFailure, Subscribe,
};
use vestnik_protocol::{ChannelKind, ChannelName, ServerMessage};

use bytes::Bytes;

use super::{AppRuntime, Broker, Keeping, SubscribeReady};
use crate::app::App;
use crate::connection::{Connection, ConnectionHandle, ConnectionState};
use crate::error::SubscribeError;
use crate::events::BrokerEvent;
use crate::history::Stream;
use crate::hook::RemoteMembers;
use crate::presence::{Join, Leave, Members};
use crate::registry::Channel;

/// A presence member about to join: user id and user info.
type NewMember = (Arc<str>, Option<Box<RawValue>>);

impl Broker {
    /// Joins a channel after checking its authorisation, replying on the socket with
    /// `subscription_succeeded` (and the cached event or `cache_miss`), and announcing a new presence
    /// member to the others.
    pub fn subscribe(&self, conn: &ConnectionHandle, req: Subscribe) -> Result<(), SubscribeError> {
        self.subscribe_with(conn, req, SubscribeReady::default())
    }

    /// [`subscribe`](Self::subscribe) with what [`subscribe_ready`](Self::subscribe_ready)
    /// found out first.
    pub fn subscribe_with(
        &self,
        conn: &ConnectionHandle,
        req: Subscribe,
        ready: SubscribeReady,
    ) -> Result<(), SubscribeError> {
        let app = conn.app().clone();
        let channel = req.channel;
        // The secrets of the app as served now: a rotation after this socket connected applies.
        let current = self.current_app(&app);
        let mut st = conn.state.lock();
        let member = authorise(
            &current,
            &st,
            &conn.socket_id().to_string(),
            &channel,
            req.auth.as_deref(),
            req.channel_data.as_deref(),
        )?;
        let already = st.channels.contains_key(&channel);
        let cap = app.max_channels_per_socket;
        if !already && cap > 0 && st.channels.len() >= cap {
            return Err(SubscribeError::LimitReached(format!(
                "This connection has joined the most channels allowed ({cap}); unsubscribe from one first"
            )));
        }
        let rt = self.runtime(&app);
        let step = Joining {
            broker: self,
            conn,
            app: &app,
            channel: &channel,
            member: member.as_ref(),
            already,
            ready,
        };
        let recover = req.recover.as_ref();
        match self.keeping(&app, channel.as_str()) {
            // The registry join and the history read under the stream's lock: a publish waits, and
            // then reaches this socket live, after the missed events.
            Keeping::Local(limits) | Keeping::Cluster(limits) => {
                rt.history
                    .with_stream(&channel, limits, Instant::now(), |s| {
                        step.join(&rt, Some(s), recover)
                    })?
            }
            Keeping::Off => step.join(&rt, None, recover)?,
        }
        st.channels.insert(channel, member.map(|(uid, _)| uid));
        Ok(())
    }

    /// Leaves a channel, announcing `member_removed` if this was the user's last socket there.
    pub fn unsubscribe(&self, conn: &ConnectionHandle, channel: &ChannelName) {
        let rt = self.runtime(conn.app());
        let mut st = conn.state.lock();
        leave(self, conn, &rt, &mut st, channel);
    }
}

/// One subscription in progress: what every step after [`authorise`] needs.
struct Joining<'a> {
    broker: &'a Broker,
    conn: &'a ConnectionHandle,
    app: &'a App,
    channel: &'a ChannelName,
    /// The presence member joining, on presence channels.
    member: Option<&'a NewMember>,
    /// The socket was subscribed already: the subscribe is answered again but changes nothing.
    already: bool,
    /// What the subscribe found out before it ran.
    ready: SubscribeReady,
}

impl Joining<'_> {
    /// Steps 2 to 4 under the channel's shard lock, and under `stream`'s lock where the channel keeps
    /// history, which makes the recovery exact: the missed events are read and sent in the same
    /// critical section that makes the socket a subscriber.
    fn join(
        &self,
        rt: &AppRuntime,
        stream: Option<&mut Stream>,
        recover: Option<&Recover>,
    ) -> Result<(), SubscribeError> {
        let mut entry = rt
            .registry
            .channels
            .entry(self.channel.clone())
            .or_default();
        let (join, remote_only) = match self.join_roster(&mut entry) {
            Ok(joined) => joined,
            Err(e) => {
                let empty = entry.subscribers.is_empty();
                drop(entry);
                if empty {
                    rt.registry
                        .channels
                        .remove_if(self.channel, |_, c| c.subscribers.is_empty());
                }
                return Err(e);
            }
        };
        if !self.already {
            self.join_registry(&mut entry);
        }
        let stream = stream.map(|s| &*s);
        let (recovery, missed) = self.recover(rt, stream, recover);
        // In a cluster, a stream that never heard from the store tells no position.
        let position = stream
            .filter(|s| self.broker.hook().is_none() || s.is_numbered())
            .map(Stream::position);
        self.reply_succeeded(&entry, &remote_only, position, recovery);
        let recovered = !missed.is_empty() || matches!(recovery, Some(Recovery::Recovered { .. }));
        for frame in missed {
            self.conn.send(frame);
        }
        self.announce_member(&entry, join, &remote_only);
        if !self.already {
            send_subscription_count(self.broker, self.app, self.channel, &mut entry);
        }
        // A recovered client has the last event already (or just got it among the missed ones).
        if self.channel.is_cache() && !recovered {
            self.send_cached(rt);
        }
        Ok(())
    }

    /// Step 4 (recovery): what to answer a `recover`, and the missed frames to send after
    /// `subscription_succeeded`.
    fn recover(
        &self,
        rt: &AppRuntime,
        stream: Option<&Stream>,
        recover: Option<&Recover>,
    ) -> (Option<Recovery>, Vec<Bytes>) {
        let Some(from) = recover else {
            return (None, Vec::new());
        };
        let channel = self.channel.as_str();
        let found = match (self.broker.keeping(self.app, channel), stream) {
            (Keeping::Off, _) | (_, None) => match self.app.history.for_channel(channel) {
                None => Err(RecoveryFailure::HistoryOff),
                Some(_) => Err(RecoveryFailure::ClusterHistoryUnavailable),
            },
            (Keeping::Cluster(_), Some(_)) if self.ready.store_unreachable => {
                Err(RecoveryFailure::BackboneUnavailable)
            }
            (Keeping::Cluster(_), Some(_)) if rt.history.is_unnumbered(channel) => {
                Err(RecoveryFailure::EpochChanged)
            }
            (Keeping::Cluster(_), Some(s)) if !s.is_numbered() => {
                Err(RecoveryFailure::BackboneUnavailable)
            }
            (_, Some(s)) => s.since(from, MAX_RECOVERED_EVENTS),
        };
        match found {
            Ok(frames) => (
                Some(Recovery::Recovered {
                    missed: frames.len(),
                }),
                frames,
            ),
            Err(reason) => (Some(Recovery::Failed(reason)), Vec::new()),
        }
    }

    /// Step 2: adds the presence member to the local roster unless the channel is full, counting the
    /// members that are only on other nodes. Returns how the roster changed and those remote-only
    /// members (empty off presence channels and on a single node).
    fn join_roster(&self, entry: &mut Channel) -> Result<(Join, RemoteMembers), SubscribeError> {
        let Some((uid, info)) = self.member else {
            return Ok((Join::AlreadyPresent, Vec::new()));
        };
        let local = entry.members.as_ref();
        let remote_only: RemoteMembers = match self.broker.hook() {
            Some(hook) => hook
                .remote_members(self.app, self.channel.as_str())
                .into_iter()
                .filter(|(u, _)| !local.is_some_and(|m| m.contains(u)))
                .collect(),
            None => Vec::new(),
        };
        let members = entry.members.get_or_insert_with(Members::default);
        if self.already {
            return Ok((Join::AlreadyPresent, remote_only));
        }
        let present = members.contains(uid) || remote_only.iter().any(|(u, _)| u == uid);
        if !present && members.count() + remote_only.len() >= self.app.max_presence_members {
            return Err(SubscribeError::LimitReached(format!(
                "Presence channel {} is full ({} members)",
                self.channel, self.app.max_presence_members
            )));
        }
        Ok((members.join(uid.clone(), info.clone()), remote_only))
    }

    /// Step 3: the socket becomes a subscriber. The channel's first subscriber here occupies it,
    /// for the cluster only if no other node had a subscriber already.
    fn join_registry(&self, entry: &mut Channel) {
        entry
            .subscribers
            .insert(self.conn.socket_id(), self.conn.clone());
        if entry.subscribers.len() == 1 {
            let elsewhere = self
                .broker
                .hook()
                .is_some_and(|hook| hook.occupied(self.app, self.channel));
            if !elsewhere {
                self.broker.report(
                    self.app,
                    BrokerEvent::ChannelOccupied {
                        channel: self.channel,
                    },
                );
            }
        }
        self.broker.report(
            self.app,
            BrokerEvent::Subscribed {
                channel: self.channel,
                socket_id: self.conn.socket_id(),
                user_id: self.member.map(|(uid, _)| &**uid),
            },
        );
    }

    /// Step 4a: `subscription_succeeded`, with the whole cluster's roster on presence channels, the
    /// channel's position where it keeps history, and the answer to a `recover`.
    fn reply_succeeded(
        &self,
        entry: &Channel,
        remote_only: &RemoteMembers,
        position: Option<Position<'_>>,
        recovery: Option<Recovery>,
    ) {
        let channel = self.channel.as_str();
        let succeeded = match &entry.members {
            Some(m) => {
                let mut views = m.views();
                views.extend(remote_only.iter().filter(|(u, _)| !m.contains(u)).map(
                    |(u, info)| MemberView {
                        user_id: u,
                        user_info: info.as_deref(),
                    },
                ));
                ServerMessage::PresenceSubscriptionSucceeded {
                    channel,
                    members: &views,
                    position,
                    recovery,
                }
                .encode()
            }
            None => ServerMessage::SubscriptionSucceeded {
                channel,
                position,
                recovery,
            }
            .encode(),
        };
        self.conn.send(succeeded);
    }

    /// Step 4b: a user new to the channel is announced: to the other nodes always, and as
    /// `member_added` (and its webhook) only if no other node had the user already.
    fn announce_member(&self, entry: &Channel, join: Join, remote_only: &RemoteMembers) {
        let (Join::Added, Some((uid, info))) = (join, self.member) else {
            return;
        };
        if let Some(hook) = self.broker.hook() {
            hook.member_joined(self.app, self.channel, uid, info.as_deref());
            if remote_only.iter().any(|(u, _)| u == uid) {
                // Present on another node already: the cluster saw this user join before.
                return;
            }
        }
        let member = entry.members.as_ref().and_then(|m| m.get(uid));
        let frame = ServerMessage::MemberAdded {
            channel: self.channel.as_str(),
            member: MemberView {
                user_id: uid,
                user_info: member.and_then(|m| m.info.as_deref()),
            },
        }
        .encode();
        entry.fan_out(&frame, Some(self.conn.socket_id()));
        self.broker.report(
            self.app,
            BrokerEvent::MemberAdded {
                channel: self.channel,
                user_id: uid,
            },
        );
    }

    /// Step 4c: on cache channels, the last event, or `cache_miss` (and its webhook).
    fn send_cached(&self, rt: &AppRuntime) {
        let channel = self.channel.as_str();
        let frame = match rt.registry.cached_frame(channel, Instant::now()) {
            Some(frame) => frame,
            None => {
                self.broker.report(
                    self.app,
                    BrokerEvent::CacheMiss {
                        channel: self.channel,
                    },
                );
                ServerMessage::CacheMiss { channel }.encode()
            }
        };
        self.conn.send(frame);
    }
}

/// Step 1: checks a subscription's right to join; for presence channels returns the member to add.
fn authorise(
    app: &App,
    st: &ConnectionState,
    socket_id: &str,
    channel: &ChannelName,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> Result<Option<NewMember>, SubscribeError> {
    let need_auth = || auth.ok_or(SubscribeError::from(AuthError::Missing));
    match channel.kind() {
        ChannelKind::Public => Ok(None),
        ChannelKind::ServerToUser => {
            let own = st.user.as_ref().map(|u| &*u.id);
            if own.is_some() && own == channel.server_to_user_id() {
                Ok(None)
            } else {
                Err(SubscribeError::Forbidden(format!(
                    "Only the socket signed in as user {:?} may subscribe to {channel}",
                    channel.server_to_user_id().unwrap_or_default()
                )))
            }
        }
        ChannelKind::Private | ChannelKind::Encrypted => {
            let auth = need_auth()?;
            app.verify_with(|secret| {
                verify_channel(&app.key, secret, socket_id, channel.as_str(), None, auth)
            })?;
            Ok(None)
        }
        ChannelKind::Presence => {
            authorise_presence(app, st, socket_id, channel, need_auth()?, channel_data).map(Some)
        }
    }
}

/// Step 1 on presence channels: the signature covers `channel_data`, whose user becomes the member;
/// without `channel_data` the signed-in user is the member.
fn authorise_presence(
    app: &App,
    st: &ConnectionState,
    socket_id: &str,
    channel: &ChannelName,
    auth: &str,
    channel_data: Option<&str>,
) -> Result<NewMember, SubscribeError> {
    let Some(cd) = channel_data else {
        // pusher-js lets a signed-in socket join presence without channel_data; the user from
        // sign-in is the member, and the signature covers socket_id:channel only.
        let Some(user) = &st.user else {
            return Err(SubscribeError::Invalid(
                "Presence channels need channel_data (or a signed-in user)".into(),
            ));
        };
        app.verify_with(|secret| {
            verify_channel(&app.key, secret, socket_id, channel.as_str(), None, auth)
        })?;
        return Ok((user.id.clone(), user.info.clone()));
    };
    app.verify_with(|secret| {
        verify_channel(
            &app.key,
            secret,
            socket_id,
            channel.as_str(),
            Some(cd),
            auth,
        )
    })?;
    let data = PresenceData::parse(cd, app.max_user_info_bytes)?;
    Ok((Arc::from(data.user_id.as_str()), data.user_info))
}

/// Leaves one channel; the caller holds the socket's state lock. The last subscriber here vacates
/// the channel (for the cluster only if no other node still has one) and the registry forgets it.
pub(super) fn leave(
    broker: &Broker,
    conn: &Connection,
    rt: &AppRuntime,
    st: &mut ConnectionState,
    channel: &ChannelName,
) {
    let Some(user_id) = st.channels.remove(channel) else {
        return;
    };
    let Some(mut entry) = rt.registry.channels.get_mut(channel) else {
        return;
    };
    let app = conn.app();
    entry.subscribers.remove(&conn.socket_id());
    broker.report(
        app,
        BrokerEvent::Unsubscribed {
            channel,
            socket_id: conn.socket_id(),
        },
    );
    if let Some(uid) = &user_id {
        leave_roster(broker, app, channel, &mut entry, uid);
    }
    send_subscription_count(broker, app, channel, &mut entry);
    let empty = entry.subscribers.is_empty();
    let elsewhere = empty && broker.hook().is_some_and(|hook| hook.vacated(app, channel));
    if empty && !elsewhere {
        broker.report(app, BrokerEvent::ChannelVacated { channel });
    }
    drop(entry);
    if empty {
        rt.registry
            .channels
            .remove_if(channel, |_, c| c.subscribers.is_empty());
    }
}

/// A presence member's socket left: with the user's last socket here the other nodes hear of it,
/// and `member_removed` goes out unless the user is still on another node.
fn leave_roster(broker: &Broker, app: &App, channel: &ChannelName, entry: &mut Channel, uid: &str) {
    let Some(members) = entry.members.as_mut() else {
        return;
    };
    if members.leave(uid) != Leave::Removed {
        return;
    }
    let hook = broker.hook();
    if let Some(hook) = hook {
        hook.member_left(app, channel, uid);
    }
    // Still on another node: the cluster-wide roster keeps the user.
    if hook.is_some_and(|h| h.has_remote_member(app, channel.as_str(), uid)) {
        return;
    }
    let frame = ServerMessage::MemberRemoved {
        channel: channel.as_str(),
        user_id: uid,
    }
    .encode();
    entry.fan_out(&frame, None);
    broker.report(
        app,
        BrokerEvent::MemberRemoved {
            channel,
            user_id: uid,
        },
    );
}

/// Sends `pusher_internal:subscription_count` if the app wants it, throttled on big channels.
fn send_subscription_count(broker: &Broker, app: &App, channel: &ChannelName, entry: &mut Channel) {
    if !app.subscription_count || channel.kind() == ChannelKind::Presence {
        return;
    }
    if entry.subscribers.is_empty() {
        broker.report(app, BrokerEvent::SubscriptionCount { channel, count: 0 });
        return;
    }
    let count = entry.subscribers.len();
    let now = Instant::now();
    if count > SUBSCRIPTION_COUNT_THROTTLE_ABOVE {
        let interval = Duration::from_secs(SUBSCRIPTION_COUNT_INTERVAL_SECS);
        if entry
            .last_count_sent
            .is_some_and(|t| now.duration_since(t) < interval)
        {
            return;
        }
    }
    entry.last_count_sent = Some(now);
    broker.report(app, BrokerEvent::SubscriptionCount { channel, count });
    let frame = ServerMessage::SubscriptionCount {
        channel: channel.as_str(),
        count,
    }
    .encode();
    entry.fan_out(&frame, None);
}
