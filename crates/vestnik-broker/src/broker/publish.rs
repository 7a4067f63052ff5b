//! Events into channels: API events (encoded once per channel, cached on cache channels) and client
//! events (checked against the app's switches, size and rate limits, never sent back to their
//! sender).
//!
//! Each public entry fans out to this node's sockets and tells the [`ClusterHook`] so the other
//! nodes do the same; the `_local` forms are what the cluster layer calls for events that came from
//! another node. This module must never serialise per subscriber, and never waits for one: a full
//! outbox closes its socket instead.
//!
//! [`ClusterHook`]: crate::hook::ClusterHook

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use vestnik_protocol::message::Position;
use vestnik_protocol::{ChannelName, ServerMessage, SocketId};

use super::numbered::Keeping;
use super::{AppRuntime, Broker};
use crate::adapter::Appended;
use crate::app::App;
use crate::connection::{ConnectionHandle, RateLimiter};
use crate::error::ClientEventError;
use crate::events::BrokerEvent;
use crate::history::Held;
use crate::hook::RelayedClientEvent;
use crate::registry::CachedEvent;

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

impl Broker {
    /// Publishes an API event: encodes it once per channel, caches it on cache channels, and queues it
    /// for every subscriber but `except`, here and on every other node. Returns how many sockets on
    /// this node got it. In a cluster with a history store, use [`Broker::publish_numbered`], which
    /// numbers it first; this one delivers it without a position there.
    pub fn publish(&self, app: &App, event: &PublishEvent<'_>) -> usize {
        self.publish_at(app, event, &[])
    }

    /// [`Broker::publish`] at the positions the history store gave (one per channel, `None` where
    /// the channel got none; an empty slice for none at all).
    pub(crate) fn publish_at(
        &self,
        app: &App,
        event: &PublishEvent<'_>,
        positions: &[Option<Appended>],
    ) -> usize {
        self.runtime(app).usage.received(1);
        if let Some(hook) = self.hook() {
            hook.published(app, event, positions);
        }
        self.publish_local(app, event, positions)
    }

    /// Fans an event out to this node's sockets only (and caches it on cache channels). Where the
    /// channel keeps history, the event takes the next position (or, in a cluster, the one in
    /// `positions`) and is fanned out under the stream's lock, so every subscriber sees offset
    /// order.
    pub(crate) fn publish_local(
        &self,
        app: &App,
        event: &PublishEvent<'_>,
        positions: &[Option<Appended>],
    ) -> usize {
        let rt = self.runtime(app);
        let now = Instant::now();
        let mut delivered = 0;
        // Bytes written, over every channel: summed here and added to the counters once.
        let bytes = Cell::new(0u64);
        let mut kept = false;
        for (i, channel) in event.channels.iter().enumerate() {
            let encode = |position: Option<Position<'_>>| {
                ServerMessage::ChannelEvent {
                    event: event.name,
                    channel: channel.as_str(),
                    data: event.data,
                    user_id: None,
                    position,
                }
                .encode()
            };
            let deliver = |frame: &Bytes, except: Option<SocketId>, data: &str| {
                let n = self.deliver_frame(&rt, app, channel, frame, except, data, now);
                bytes.set(bytes.get() + (n * frame.len()) as u64);
                n
            };
            let position = positions.get(i).and_then(Option::as_ref);
            let recipients = match (self.keeping(app, channel.as_str()), position) {
                (Keeping::Local(limits), _) => {
                    kept = true;
                    rt.history.publish(
                        channel,
                        limits,
                        now,
                        |p| encode(Some(p)),
                        |f| deliver(f, event.except, event.data),
                    )
                }
                (Keeping::Cluster(limits), Some(p)) => {
                    kept = true;
                    let held = Held {
                        frame: encode(Some(p.as_position())),
                        except: event.except,
                        cache_data: channel.is_cache().then(|| event.data.to_owned()),
                    };
                    self.accept_numbered(app, &rt, channel, limits, p, held, now, |h| {
                        deliver(&h.frame, h.except, h.cache_data.as_deref().unwrap_or(""))
                    })
                }
                (Keeping::Cluster(_), None) => {
                    rt.history.mark_unnumbered(channel, now);
                    deliver(&encode(None), event.except, event.data)
                }
                (Keeping::Off, _) => deliver(&encode(None), event.except, event.data),
            };
            self.report(
                app,
                BrokerEvent::Published {
                    channel,
                    event: event.name,
                    data: event.data,
                    recipients,
                },
            );
            delivered += recipients;
        }
        if kept {
            rt.history.evict_over(app.history.max_bytes);
        }
        rt.usage.delivered(delivered as u64, bytes.get());
        delivered
    }

    /// Puts one frame of `channel` on its subscribers' outboxes but `except`'s, caching it (with
    /// `data`) on cache channels. Returns how many got it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_frame(
        &self,
        rt: &AppRuntime,
        app: &App,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
        data: &str,
        now: Instant,
    ) -> usize {
        if channel.is_cache() {
            rt.registry.cache.insert(
                channel.clone(),
                CachedEvent {
                    frame: frame.clone(),
                    data: data.to_owned(),
                    expires: now + app.cache_ttl(),
                },
            );
        }
        rt.registry.fan_out(channel.as_str(), frame, except)
    }

    /// Relays a client event to the channel's other subscribers, on every node. Returns how many on
    /// this node got it. In a cluster with a history store, use
    /// [`Broker::client_event_numbered`], which numbers it first.
    pub fn client_event(
        &self,
        conn: &ConnectionHandle,
        event: &str,
        channel: &ChannelName,
        data: &str,
    ) -> Result<usize, ClientEventError> {
        let user_id = self.check_client_event(conn, channel, data)?;
        Ok(self.send_client_event(conn, event, channel, data, user_id.as_deref(), None))
    }

    /// Checks a client event against the app's switches, quota, size and rate limits and the
    /// socket's subscriptions. Returns the sender's user id on presence channels.
    pub(super) fn check_client_event(
        &self,
        conn: &ConnectionHandle,
        channel: &ChannelName,
        data: &str,
    ) -> Result<Option<Arc<str>>, ClientEventError> {
        let app = conn.app();
        if !app.client_events {
            return Err(ClientEventError::Disabled);
        }
        if self.over_message_quota(app) {
            return Err(ClientEventError::OverQuota);
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
        let mut st = conn.state.lock();
        let user_id = st
            .channels
            .get(channel)
            .ok_or_else(|| ClientEventError::NotSubscribed(channel.to_string()))?
            .clone();
        let rate = app.client_event_rate;
        if rate > 0 {
            let limiter = st
                .rate
                .get_or_insert_with(|| Box::new(RateLimiter::new(rate)));
            if !limiter.try_take(rate, Instant::now()) {
                return Err(ClientEventError::RateLimited(rate));
            }
        }
        Ok(user_id)
    }

    /// Sends a checked client event, here and to the other nodes, at `position` if the history
    /// store gave it one.
    pub(super) fn send_client_event(
        &self,
        conn: &ConnectionHandle,
        event: &str,
        channel: &ChannelName,
        data: &str,
        user_id: Option<&str>,
        position: Option<&Appended>,
    ) -> usize {
        let app = conn.app();
        let relayed = RelayedClientEvent {
            channel,
            event,
            data,
            socket_id: conn.socket_id(),
            user_id,
        };
        let delivered = self.client_event_local(app, &relayed, position);
        if let Some(hook) = self.hook() {
            hook.client_event(app, &relayed, position);
        }
        self.report(
            app,
            BrokerEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id: conn.socket_id(),
                user_id,
            },
        );
        delivered
    }

    /// Fans a client event out to this node's subscribers of its channel, except its sender; where
    /// the channel keeps history, at its next position (or, in a cluster, at `position`), like
    /// [`Broker::publish_local`].
    pub(crate) fn client_event_local(
        &self,
        app: &App,
        event: &RelayedClientEvent<'_>,
        position: Option<&Appended>,
    ) -> usize {
        let encode = |position: Option<Position<'_>>| {
            ServerMessage::ChannelEvent {
                event: event.event,
                channel: event.channel.as_str(),
                data: event.data,
                user_id: event.user_id,
                position,
            }
            .encode()
        };
        let rt = self.runtime(app);
        let deliver = |frame: &Bytes, except: Option<SocketId>| {
            let n = rt.registry.fan_out(event.channel.as_str(), frame, except);
            rt.usage.delivered(n as u64, (n * frame.len()) as u64);
            n
        };
        let sender = Some(event.socket_id);
        let now = Instant::now();
        let n = match (self.keeping(app, event.channel.as_str()), position) {
            (Keeping::Local(limits), _) => rt.history.publish(
                event.channel,
                limits,
                now,
                |p| encode(Some(p)),
                |f| deliver(f, sender),
            ),
            (Keeping::Cluster(limits), Some(p)) => {
                let held = Held {
                    frame: encode(Some(p.as_position())),
                    except: sender,
                    cache_data: None,
                };
                self.accept_numbered(app, &rt, event.channel, limits, p, held, now, |h| {
                    deliver(&h.frame, h.except)
                })
            }
            (Keeping::Cluster(_), None) => {
                rt.history.mark_unnumbered(event.channel, now);
                return deliver(&encode(None), sender);
            }
            (Keeping::Off, _) => return deliver(&encode(None), sender),
        };
        rt.history.evict_over(app.history.max_bytes);
        n
    }
}
