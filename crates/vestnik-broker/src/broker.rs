//! [`Broker`]: the one API the edges call: connect, subscribe, client events, sign-in, publish, queries.
//!
//! It owns one [`AppRuntime`] per app (channels, signed-in users, watchers, counts) and talks back to
//! sockets only through their outboxes. Lock order, outermost first: a connection's state, then a
//! channel shard, then the users shard, then the watchers shard, then an outbox. No lock is held across
//! an `.await` (this module has none). It must never know about HTTP, WebSocket or disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::value::RawValue;
use vestnik_protocol::auth::{verify_channel, verify_user, AuthError};
use vestnik_protocol::limits::{
    MAX_WATCHLIST, OUTBOX_CAPACITY, SUBSCRIPTION_COUNT_INTERVAL_SECS,
    SUBSCRIPTION_COUNT_THROTTLE_ABOVE,
};
use vestnik_protocol::message::{MemberView, PresenceData, Subscribe, UserData, WatchlistEvent};
use vestnik_protocol::{ChannelKind, ChannelName, PusherCode, ServerMessage, SocketId};

use crate::adapter::Destination;
use crate::app::{App, AppStore};
use crate::cluster::message::{Answer, Msg, Query, SyncMember};
use crate::cluster::ClusterLink;
use crate::connection::{Connection, ConnectionHandle, ConnectionState, RateLimiter, SignedInUser};
use crate::error::{ClientEventError, ConnectError, SigninError, SubscribeError};
use crate::events::{BrokerEvent, EventSink, NoEvents};
use crate::presence::{Join, Leave, Members};
use crate::registry::{CachedEvent, Channel, ChannelStats, Registry};

/// Node-wide settings of the core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Most sockets on this node; 0 means no cap. Over it: 4100.
    pub max_connections: usize,
    /// Frames each socket may have queued before it is closed as a slow consumer.
    pub outbox_capacity: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            outbox_capacity: OUTBOX_CAPACITY,
        }
    }
}

/// The live state of one app on this node.
#[derive(Debug, Default)]
pub struct AppRuntime {
    /// Channels and cache.
    pub registry: Registry,
    /// Signed-in sockets by user id.
    users: DashMap<Arc<str>, Vec<ConnectionHandle>>,
    /// Sockets watching a user id.
    watchers: DashMap<Arc<str>, Vec<ConnectionHandle>>,
    connections: AtomicUsize,
}

impl AppRuntime {
    /// Sockets of this app on this node.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Distinct signed-in users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// An event to publish through the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct PublishEvent<'a> {
    /// The event name.
    pub name: &'a str,
    /// The data string, forwarded verbatim.
    pub data: &'a str,
    /// The channels it goes to.
    pub channels: &'a [ChannelName],
    /// A socket to leave out (the one whose action caused the event).
    pub except: Option<SocketId>,
}

/// Counts for `/usage` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStats {
    /// Sockets connected.
    pub connections: usize,
    /// Occupied channels, over all apps.
    pub channels: usize,
}

pub(crate) struct Inner {
    apps: Arc<dyn AppStore>,
    pub(crate) events: Arc<dyn EventSink>,
    config: BrokerConfig,
    pub(crate) runtimes: DashMap<String, Arc<AppRuntime>>,
    connections: AtomicUsize,
    pub(crate) cluster: OnceLock<Arc<ClusterLink>>,
}

/// The broker core. Cheap to clone; every clone is the same broker.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.inner.connections)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over `apps` that reports nothing.
    pub fn new(apps: Arc<dyn AppStore>, config: BrokerConfig) -> Self {
        Self::with_events(apps, config, Arc::new(NoEvents))
    }

    /// A broker over `apps` that reports channel happenings to `events`.
    pub fn with_events(
        apps: Arc<dyn AppStore>,
        config: BrokerConfig,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                apps,
                events,
                config,
                runtimes: DashMap::new(),
                connections: AtomicUsize::new(0),
                cluster: OnceLock::new(),
            }),
        }
    }

    /// The app store.
    pub fn apps(&self) -> &Arc<dyn AppStore> {
        &self.inner.apps
    }

    /// The live state of `app`, created on first use.
    pub fn runtime(&self, app: &App) -> Arc<AppRuntime> {
        if let Some(rt) = self.inner.runtimes.get(&app.id) {
            return rt.clone();
        }
        self.inner
            .runtimes
            .entry(app.id.clone())
            .or_default()
            .clone()
    }

    /// Counts for `/usage` and metrics.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            connections: self.inner.connections.load(Ordering::Relaxed),
            channels: self
                .inner
                .runtimes
                .iter()
                .map(|r| r.registry.channel_count())
                .sum(),
        }
    }

    /// Admits a new socket for `app`, or says which code to close it with.
    pub fn connect(&self, app: Arc<App>) -> Result<ConnectionHandle, ConnectError> {
        if !app.enabled {
            return Err(ConnectError::AppDisabled);
        }
        let node = &self.inner.connections;
        let cap = self.inner.config.max_connections;
        if node.fetch_add(1, Ordering::AcqRel) >= cap && cap > 0 {
            node.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectError::OverCapacity);
        }
        let rt = self.runtime(&app);
        // The quota counts the whole cluster: other nodes' sockets come from their heartbeats.
        let remote = match (app.max_connections, self.cluster()) {
            (0, _) | (_, None) => 0,
            (_, Some(link)) => link.remote_connections(&app.id),
        };
        if rt.connections.fetch_add(1, Ordering::AcqRel) + remote >= app.max_connections
            && app.max_connections > 0
        {
            rt.connections.fetch_sub(1, Ordering::AcqRel);
            node.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectError::AppOverQuota);
        }
        let socket_id = SocketId::new(
            rand::random_range(1..SocketId::MAX_PART),
            rand::random_range(1..SocketId::MAX_PART),
        );
        Ok(Arc::new(Connection::new(
            socket_id,
            app,
            self.inner.config.outbox_capacity,
        )))
    }

    /// Removes a socket from every channel, roster and user index, announcing departures. Call once
    /// when the socket is gone; later calls do nothing.
    pub fn disconnect(&self, conn: &ConnectionHandle) {
        let rt = self.runtime(conn.app());
        let mut st = conn.state.lock();
        if st.disconnected {
            return;
        }
        st.disconnected = true;
        let channels: Vec<ChannelName> = st.channels.keys().cloned().collect();
        for channel in &channels {
            leave(
                conn,
                &rt,
                &mut st,
                channel,
                &*self.inner.events,
                self.cluster().map(|c| &**c),
            );
        }
        let user = st.user.take();
        drop(st);
        if let Some(user) = user {
            remove_user_socket(&rt, conn, &user.id);
            for watched in &user.watchlist {
                remove_from_list(&rt.watchers, watched, conn.socket_id());
            }
        }
        rt.connections.fetch_sub(1, Ordering::AcqRel);
        self.inner.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Joins a channel after checking its authorisation, replying on the socket with
    /// `subscription_succeeded` (and the cached event or `cache_miss`), and announcing a new presence
    /// member to the others.
    pub fn subscribe(&self, conn: &ConnectionHandle, req: Subscribe) -> Result<(), SubscribeError> {
        let app = conn.app().clone();
        let channel = req.channel;
        let socket_id = conn.socket_id().to_string();
        let mut st = conn.state.lock();
        let presence = authorise(
            &app,
            &st,
            &socket_id,
            &channel,
            req.auth.as_deref(),
            req.channel_data.as_deref(),
        )?;
        let rt = self.runtime(&app);
        let already = st.channels.contains_key(&channel);
        let cap = app.max_channels_per_socket;
        if !already && cap > 0 && st.channels.len() >= cap {
            return Err(SubscribeError::LimitReached(format!(
                "This connection has joined the most channels allowed ({cap}); unsubscribe from one first"
            )));
        }
        let mut entry = rt.registry.channels.entry(channel.clone()).or_default();
        let mut join = Join::AlreadyPresent;
        let cluster = self.cluster().map(|c| &**c);
        // Members on other nodes that have no socket here; empty on a single node.
        let remote_only: Vec<(Arc<str>, Option<Box<RawValue>>)> = match (cluster, &presence) {
            (Some(link), Some(_)) => {
                let local = entry.members.as_ref();
                link.presence
                    .members(&app.id, channel.as_str())
                    .into_iter()
                    .filter(|(u, _)| !local.is_some_and(|m| m.contains(u)))
                    .collect()
            }
            _ => Vec::new(),
        };
        if let Some((uid, info)) = &presence {
            let members = entry.members.get_or_insert_with(Members::default);
            if !already {
                let present = members.contains(uid) || remote_only.iter().any(|(u, _)| u == uid);
                if !present && members.count() + remote_only.len() >= app.max_presence_members {
                    let empty = entry.subscribers.is_empty();
                    drop(entry);
                    if empty {
                        rt.registry
                            .channels
                            .remove_if(&channel, |_, c| c.subscribers.is_empty());
                    }
                    return Err(SubscribeError::LimitReached(format!(
                        "Presence channel {channel} is full ({} members)",
                        app.max_presence_members
                    )));
                }
                join = members.join(uid.clone(), info.clone());
            }
        }
        let events = &*self.inner.events;
        if !already {
            entry.subscribers.insert(conn.socket_id(), conn.clone());
            if entry.subscribers.len() == 1 {
                // Occupied for the cluster only if no other node had a subscriber already.
                let elsewhere = cluster.is_some_and(|link| {
                    link.send(
                        Destination::All,
                        Msg::Occupied {
                            app: app.id.clone(),
                            channel: channel.to_string(),
                        },
                    );
                    link.occupancy.has(&app.id, channel.as_str())
                });
                if !elsewhere {
                    events.on_event(
                        &app,
                        BrokerEvent::ChannelOccupied {
                            channel: channel.as_str(),
                        },
                    );
                }
            }
            events.on_event(
                &app,
                BrokerEvent::Subscribed {
                    channel: channel.as_str(),
                    socket_id: conn.socket_id(),
                    user_id: presence.as_ref().map(|(uid, _)| &**uid),
                },
            );
        }
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
                    channel: channel.as_str(),
                    members: &views,
                }
                .encode()
            }
            None => ServerMessage::SubscriptionSucceeded {
                channel: channel.as_str(),
            }
            .encode(),
        };
        conn.send(succeeded);
        if let (Join::Added, Some((uid, info)), Some(link)) = (join, &presence, cluster) {
            link.send(
                Destination::All,
                Msg::MemberJoined(SyncMember {
                    app: app.id.clone(),
                    channel: channel.to_string(),
                    user_id: uid.to_string(),
                    info: info.as_ref().map(|i| i.get().to_owned()),
                }),
            );
            if remote_only.iter().any(|(u, _)| u == uid) {
                // Present on another node already: the cluster saw this user join before.
                join = Join::AlreadyPresent;
            }
        }
        if let (Join::Added, Some((uid, _))) = (join, &presence) {
            let member = entry.members.as_ref().and_then(|m| m.get(uid));
            let frame = ServerMessage::MemberAdded {
                channel: channel.as_str(),
                member: MemberView {
                    user_id: uid,
                    user_info: member.and_then(|m| m.info.as_deref()),
                },
            }
            .encode();
            entry.fan_out(&frame, Some(conn.socket_id()));
            events.on_event(
                &app,
                BrokerEvent::MemberAdded {
                    channel: channel.as_str(),
                    user_id: uid,
                },
            );
        }
        if !already {
            send_subscription_count(&app, &channel, &mut entry, events);
        }
        if channel.is_cache() {
            let frame = match rt.registry.cached_frame(channel.as_str(), Instant::now()) {
                Some(frame) => frame,
                None => {
                    events.on_event(
                        &app,
                        BrokerEvent::CacheMiss {
                            channel: channel.as_str(),
                        },
                    );
                    ServerMessage::CacheMiss {
                        channel: channel.as_str(),
                    }
                    .encode()
                }
            };
            conn.send(frame);
        }
        drop(entry);
        st.channels.insert(channel, presence.map(|(uid, _)| uid));
        Ok(())
    }

    /// Leaves a channel, announcing `member_removed` if this was the user's last socket there.
    pub fn unsubscribe(&self, conn: &ConnectionHandle, channel: &ChannelName) {
        let rt = self.runtime(conn.app());
        let mut st = conn.state.lock();
        leave(
            conn,
            &rt,
            &mut st,
            channel,
            &*self.inner.events,
            self.cluster().map(|c| &**c),
        );
    }

    /// Relays a client event to the channel's other subscribers. Returns how many got it.
    pub fn client_event(
        &self,
        conn: &ConnectionHandle,
        event: &str,
        channel: &ChannelName,
        data: &str,
    ) -> Result<usize, ClientEventError> {
        let app = conn.app();
        if !app.client_events {
            return Err(ClientEventError::Disabled);
        }
        if !channel.kind().allows_client_events() {
            return Err(ClientEventError::ChannelKind(channel.to_string()));
        }
        if data.len() > app.max_event_bytes {
            return Err(ClientEventError::TooLarge {
                size: data.len(),
                limit: app.max_event_bytes,
            });
        }
        let user_id = {
            let mut st = conn.state.lock();
            let user_id = st
                .channels
                .get(channel)
                .ok_or_else(|| ClientEventError::NotSubscribed(channel.to_string()))?
                .clone();
            let rate = app.client_event_rate;
            if rate > 0 {
                let limiter = st.rate.get_or_insert_with(|| RateLimiter::new(rate));
                if !limiter.try_take(rate, Instant::now()) {
                    return Err(ClientEventError::RateLimited(rate));
                }
            }
            user_id
        };
        let frame = ServerMessage::ChannelEvent {
            event,
            channel: channel.as_str(),
            data,
            user_id: user_id.as_deref(),
        }
        .encode();
        let delivered =
            self.runtime(app)
                .registry
                .fan_out(channel.as_str(), &frame, Some(conn.socket_id()));
        if let Some(link) = self.cluster() {
            link.send(
                Destination::All,
                Msg::ClientEvent {
                    app: app.id.clone(),
                    channel: channel.to_string(),
                    event: event.to_owned(),
                    data: data.to_owned(),
                    except: conn.socket_id().to_string(),
                    user_id: user_id.as_deref().map(str::to_owned),
                },
            );
        }
        self.inner.events.on_event(
            app,
            BrokerEvent::ClientEvent {
                channel: channel.as_str(),
                event,
                data,
                socket_id: conn.socket_id(),
                user_id: user_id.as_deref(),
            },
        );
        Ok(delivered)
    }

    /// Signs a socket in as a user, replies `signin_success`, reports the watchlist's current state and
    /// tells the user's watchers that the user came online.
    pub fn signin(
        &self,
        conn: &ConnectionHandle,
        auth: &str,
        user_data: &str,
    ) -> Result<(), SigninError> {
        let app = conn.app().clone();
        verify_user(
            &app.key,
            &app.secret,
            &conn.socket_id().to_string(),
            user_data,
            auth,
        )?;
        let data = UserData::parse(user_data)?;
        let mut st = conn.state.lock();
        if let Some(existing) = &st.user {
            if *existing.id != *data.id {
                return Err(SigninError::AlreadySignedIn);
            }
            drop(st);
            conn.send(ServerMessage::SigninSuccess { user_data }.encode());
            return Ok(());
        }
        let id: Arc<str> = Arc::from(data.id.as_str());
        let mut ids = data.watchlist;
        let over_limit = ids.len() > MAX_WATCHLIST;
        ids.truncate(MAX_WATCHLIST);
        let watchlist: Vec<Arc<str>> = if app.watchlist {
            ids.iter().map(|s| Arc::from(s.as_str())).collect()
        } else {
            Vec::new()
        };
        st.user = Some(SignedInUser {
            id: id.clone(),
            watchlist: watchlist.clone(),
            info: data.user_info,
        });
        drop(st);
        conn.send(ServerMessage::SigninSuccess { user_data }.encode());
        if over_limit && app.watchlist {
            conn.send(
                ServerMessage::Error {
                    code: Some(PusherCode::WatchlistLimit),
                    message: "Watchlist limit exceeded; only the first 100 user ids are watched",
                }
                .encode(),
            );
        }
        let rt = self.runtime(&app);
        {
            let mut sockets = rt.users.entry(id.clone()).or_default();
            sockets.push(conn.clone());
            if sockets.len() == 1 {
                notify_watchers(&rt, &id, WatchlistEvent::Online);
            }
        }
        if !watchlist.is_empty() {
            for watched in &watchlist {
                rt.watchers
                    .entry(watched.clone())
                    .or_default()
                    .push(conn.clone());
            }
            let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
                .iter()
                .map(|w| &**w)
                .partition(|w| rt.users.contains_key(*w));
            for (event, ids) in [
                (WatchlistEvent::Online, online),
                (WatchlistEvent::Offline, offline),
            ] {
                if !ids.is_empty() {
                    conn.send(
                        ServerMessage::Watchlist {
                            event,
                            user_ids: &ids,
                        }
                        .encode(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Publishes an API event: encodes it once per channel, caches it on cache channels, and queues it
    /// for every subscriber but `except`. Returns how many sockets got it.
    pub fn publish(&self, app: &App, event: &PublishEvent<'_>) -> usize {
        if let Some(link) = self.cluster() {
            link.send(
                Destination::All,
                Msg::Publish {
                    app: app.id.clone(),
                    channels: event.channels.iter().map(|c| c.to_string()).collect(),
                    name: event.name.to_owned(),
                    data: event.data.to_owned(),
                    except: event.except.map(|s| s.to_string()),
                },
            );
        }
        self.publish_local(app, event)
    }

    /// Fans an event out to this node's sockets only (and caches it on cache channels).
    pub(crate) fn publish_local(&self, app: &App, event: &PublishEvent<'_>) -> usize {
        let rt = self.runtime(app);
        let now = Instant::now();
        let mut delivered = 0;
        for channel in event.channels {
            let frame = ServerMessage::ChannelEvent {
                event: event.name,
                channel: channel.as_str(),
                data: event.data,
                user_id: None,
            }
            .encode();
            if channel.is_cache() {
                rt.registry.cache.insert(
                    channel.clone(),
                    CachedEvent {
                        frame: frame.clone(),
                        data: event.data.to_owned(),
                        expires: now + app.cache_ttl(),
                    },
                );
            }
            let recipients = rt.registry.fan_out(channel.as_str(), &frame, event.except);
            self.inner.events.on_event(
                app,
                BrokerEvent::Published {
                    channel: channel.as_str(),
                    event: event.name,
                    data: event.data,
                    recipients,
                },
            );
            delivered += recipients;
        }
        delivered
    }

    /// Closes every socket signed in as `user_id` with 4009, on every node. Returns how many were on
    /// this node.
    pub fn terminate_user(&self, app: &App, user_id: &str) -> usize {
        if let Some(link) = self.cluster() {
            link.send(
                Destination::All,
                Msg::Terminate {
                    app: app.id.clone(),
                    user_id: user_id.to_owned(),
                },
            );
        }
        self.terminate_local(app, user_id)
    }

    /// Closes this node's sockets signed in as `user_id`.
    pub(crate) fn terminate_local(&self, app: &App, user_id: &str) -> usize {
        let rt = self.runtime(app);
        let sockets: Vec<ConnectionHandle> =
            rt.users.get(user_id).map(|v| v.clone()).unwrap_or_default();
        for conn in &sockets {
            conn.send_error_and_close(PusherCode::Unauthorized, "You got disconnected by the app.");
        }
        sockets.len()
    }

    /// An event published on another node: fan it out here.
    pub(crate) fn apply_remote_publish(
        &self,
        app_id: &str,
        channels: &[String],
        name: &str,
        data: &str,
        except: Option<&str>,
    ) {
        let Some(app) = self.apps().by_id(app_id) else {
            return;
        };
        let channels: Vec<ChannelName> = channels
            .iter()
            .filter_map(|c| ChannelName::parse(c).ok())
            .collect();
        let except = except.and_then(|s| SocketId::parse(s).ok());
        self.publish_local(
            &app,
            &PublishEvent {
                name,
                data,
                channels: &channels,
                except,
            },
        );
    }

    /// A client event sent on another node: fan it out here.
    pub(crate) fn apply_remote_client_event(
        &self,
        app_id: &str,
        channel: &str,
        event: &str,
        data: &str,
        except: &str,
        user_id: Option<&str>,
    ) {
        let Some(app) = self.apps().by_id(app_id) else {
            return;
        };
        let frame = ServerMessage::ChannelEvent {
            event,
            channel,
            data,
            user_id,
        }
        .encode();
        let except = SocketId::parse(except).ok();
        self.runtime(&app).registry.fan_out(channel, &frame, except);
    }

    /// Stats of one channel over the whole cluster: subscription counts are summed over the nodes
    /// that answer, user counts come from the replicated roster.
    pub async fn channel_stats(&self, app: &App, channel: &ChannelName) -> Option<ChannelStats> {
        let rt = self.runtime(app);
        let local = rt.registry.stats(channel.as_str());
        let Some(link) = self.cluster() else {
            return local;
        };
        let answers = link
            .ask(Query::Channel {
                app: app.id.clone(),
                channel: channel.to_string(),
            })
            .await;
        let remote: usize = answers
            .iter()
            .map(|a| match a {
                Answer::Channel(n) => *n,
                Answer::Channels(_) => 0,
            })
            .sum();
        let subscription_count = local.map_or(0, |s| s.subscription_count) + remote;
        if subscription_count == 0 {
            return None;
        }
        let user_count = (channel.kind() == ChannelKind::Presence)
            .then(|| self.presence_user_ids(app, channel.as_str()).len());
        Some(ChannelStats {
            subscription_count,
            user_count,
        })
    }

    /// Occupied channels with a prefix over the whole cluster, with their stats.
    pub async fn channel_list(&self, app: &App, prefix: &str) -> Vec<(ChannelName, ChannelStats)> {
        let rt = self.runtime(app);
        let local = rt.registry.list(prefix);
        let Some(link) = self.cluster() else {
            return local;
        };
        let mut counts: std::collections::BTreeMap<String, usize> = local
            .iter()
            .map(|(c, s)| (c.to_string(), s.subscription_count))
            .collect();
        for answer in link
            .ask(Query::Channels {
                app: app.id.clone(),
                prefix: prefix.to_owned(),
            })
            .await
        {
            if let Answer::Channels(list) = answer {
                for (name, n) in list {
                    *counts.entry(name).or_default() += n;
                }
            }
        }
        counts
            .into_iter()
            .filter_map(|(name, subscription_count)| {
                let channel = ChannelName::parse(&name).ok()?;
                let user_count = (channel.kind() == ChannelKind::Presence)
                    .then(|| self.presence_user_ids(app, &name).len());
                Some((
                    channel,
                    ChannelStats {
                        subscription_count,
                        user_count,
                    },
                ))
            })
            .collect()
    }

    /// User ids of a presence channel over the whole cluster.
    pub fn presence_user_ids(&self, app: &App, channel: &str) -> Vec<String> {
        let mut ids = self.runtime(app).registry.user_ids(channel);
        if let Some(link) = self.cluster() {
            for (u, _) in link.presence.members(&app.id, channel) {
                if !ids.iter().any(|i| **i == *u) {
                    ids.push(u.to_string());
                }
            }
        }
        ids
    }

    /// Drops expired cache entries of every app.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        for rt in self.inner.runtimes.iter() {
            rt.registry.purge_expired(now);
        }
    }
}

/// A presence member about to join: user id and user info.
type NewMember = (Arc<str>, Option<Box<RawValue>>);

/// Checks a subscription's right to join; for presence channels returns the member to add.
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
            verify_channel(
                &app.key,
                &app.secret,
                socket_id,
                channel.as_str(),
                None,
                need_auth()?,
            )?;
            Ok(None)
        }
        ChannelKind::Presence => {
            let auth = need_auth()?;
            let Some(cd) = channel_data else {
                // pusher-js lets a signed-in socket join presence without channel_data; the user from
                // sign-in is the member, and the signature covers socket_id:channel only.
                let Some(user) = &st.user else {
                    return Err(SubscribeError::Invalid(
                        "Presence channels need channel_data (or a signed-in user)".into(),
                    ));
                };
                verify_channel(
                    &app.key,
                    &app.secret,
                    socket_id,
                    channel.as_str(),
                    None,
                    auth,
                )?;
                return Ok(Some((user.id.clone(), user.info.clone())));
            };
            verify_channel(
                &app.key,
                &app.secret,
                socket_id,
                channel.as_str(),
                Some(cd),
                auth,
            )?;
            let data =
                PresenceData::parse(cd).map_err(|e| SubscribeError::Invalid(e.to_string()))?;
            if let Some(info) = &data.user_info {
                if info.get().len() > app.max_user_info_bytes {
                    return Err(SubscribeError::LimitReached(format!(
                        "user_info is {} bytes, over the limit of {}",
                        info.get().len(),
                        app.max_user_info_bytes
                    )));
                }
            }
            Ok(Some((Arc::from(data.user_id.as_str()), data.user_info)))
        }
    }
}

/// Leaves one channel; the caller holds the socket's state lock.
fn leave(
    conn: &Connection,
    rt: &AppRuntime,
    st: &mut ConnectionState,
    channel: &ChannelName,
    events: &dyn EventSink,
    cluster: Option<&ClusterLink>,
) {
    let Some(user_id) = st.channels.remove(channel) else {
        return;
    };
    let Some(mut entry) = rt.registry.channels.get_mut(channel) else {
        return;
    };
    entry.subscribers.remove(&conn.socket_id());
    events.on_event(
        conn.app(),
        BrokerEvent::Unsubscribed {
            channel: channel.as_str(),
            socket_id: conn.socket_id(),
        },
    );
    if let (Some(uid), Some(members)) = (&user_id, entry.members.as_mut()) {
        let removed = members.leave(uid) == Leave::Removed;
        if removed {
            if let Some(link) = cluster {
                link.send(
                    Destination::All,
                    Msg::MemberLeft {
                        app: conn.app().id.clone(),
                        channel: channel.to_string(),
                        user_id: uid.to_string(),
                    },
                );
            }
        }
        // Still on another node: the cluster-wide roster keeps the user.
        let elsewhere =
            cluster.is_some_and(|l| l.presence.has(&conn.app().id, channel.as_str(), uid));
        if removed && !elsewhere {
            let frame = ServerMessage::MemberRemoved {
                channel: channel.as_str(),
                user_id: uid,
            }
            .encode();
            entry.fan_out(&frame, None);
            events.on_event(
                conn.app(),
                BrokerEvent::MemberRemoved {
                    channel: channel.as_str(),
                    user_id: uid,
                },
            );
        }
    }
    send_subscription_count(conn.app(), channel, &mut entry, events);
    let empty = entry.subscribers.is_empty();
    // Vacated for the cluster only if no other node still has a subscriber.
    let elsewhere = empty
        && cluster.is_some_and(|link| {
            link.send(
                Destination::All,
                Msg::Vacated {
                    app: conn.app().id.clone(),
                    channel: channel.to_string(),
                },
            );
            link.occupancy.has(&conn.app().id, channel.as_str())
        });
    if empty && !elsewhere {
        events.on_event(
            conn.app(),
            BrokerEvent::ChannelVacated {
                channel: channel.as_str(),
            },
        );
    }
    drop(entry);
    if empty {
        rt.registry
            .channels
            .remove_if(channel, |_, c| c.subscribers.is_empty());
    }
}

/// Sends `pusher_internal:subscription_count` if the app wants it, throttled on big channels.
fn send_subscription_count(
    app: &App,
    channel: &ChannelName,
    entry: &mut Channel,
    events: &dyn EventSink,
) {
    if !app.subscription_count || channel.kind() == ChannelKind::Presence {
        return;
    }
    if entry.subscribers.is_empty() {
        events.on_event(
            app,
            BrokerEvent::SubscriptionCount {
                channel: channel.as_str(),
                count: 0,
            },
        );
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
    events.on_event(
        app,
        BrokerEvent::SubscriptionCount {
            channel: channel.as_str(),
            count,
        },
    );
    let frame = ServerMessage::SubscriptionCount {
        channel: channel.as_str(),
        count,
    }
    .encode();
    entry.fan_out(&frame, None);
}

/// Tells every watcher of `user_id` that it came online or went offline.
fn notify_watchers(rt: &AppRuntime, user_id: &str, event: WatchlistEvent) {
    let Some(watchers) = rt.watchers.get(user_id) else {
        return;
    };
    let frame: Bytes = ServerMessage::Watchlist {
        event,
        user_ids: &[user_id],
    }
    .encode();
    for w in watchers.iter() {
        w.send(frame.clone());
    }
}

/// Forgets one signed-in socket of a user; the user goes offline with its last socket.
fn remove_user_socket(rt: &AppRuntime, conn: &Connection, user_id: &Arc<str>) {
    let Some(mut sockets) = rt.users.get_mut(user_id) else {
        return;
    };
    sockets.retain(|c| c.socket_id() != conn.socket_id());
    if !sockets.is_empty() {
        return;
    }
    // Still under the user's shard lock, so no sign-in can slip in between "last socket gone" and
    // "offline announced".
    notify_watchers(rt, user_id, WatchlistEvent::Offline);
    drop(sockets);
    rt.users.remove_if(user_id, |_, v| v.is_empty());
}

fn remove_from_list(map: &DashMap<Arc<str>, Vec<ConnectionHandle>>, key: &str, socket: SocketId) {
    let empty = match map.get_mut(key) {
        Some(mut list) => {
            list.retain(|c| c.socket_id() != socket);
            list.is_empty()
        }
        None => false,
    };
    if empty {
        map.remove_if(key, |_, v| v.is_empty());
    }
}
