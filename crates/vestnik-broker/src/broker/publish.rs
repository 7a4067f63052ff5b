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
use std::time::Instant;

use bytes::Bytes;

use vestnik_protocol::message::Position;
use vestnik_protocol::{ChannelName, ServerMessage, SocketId};

use super::Broker;
use crate::app::App;
use crate::connection::{ConnectionHandle, RateLimiter};
use crate::error::ClientEventError;
use crate::events::BrokerEvent;
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
    /// this node got it.
    pub fn publish(&self, app: &App, event: &PublishEvent<'_>) -> usize {
        self.runtime(app).usage.received(1);
        if let Some(hook) = self.hook() {
            hook.published(app, event);
        }
        self.publish_local(app, event)
    }

    /// Fans an event out to this node's sockets only (and caches it on cache channels). Where the
    /// channel keeps history, the event takes the next position and is fanned out under the
    /// stream's lock, so every subscriber sees offset order.
    pub(crate) fn publish_local(&self, app: &App, event: &PublishEvent<'_>) -> usize {
        let rt = self.runtime(app);
        let now = Instant::now();
        let mut delivered = 0;
        // Bytes written, over every channel: summed here and added to the counters once.
        let bytes = Cell::new(0u64);
        let mut kept = false;
        for channel in event.channels {
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
            let deliver = |frame: &Bytes| {
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
                let n = rt.registry.fan_out(channel.as_str(), frame, event.except);
                bytes.set(bytes.get() + (n * frame.len()) as u64);
                n
            };
            let recipients = match self.history_limits(app, channel.as_str()) {
                Some(limits) => {
                    kept = true;
                    rt.history
                        .publish(channel, limits, now, |p| encode(Some(p)), deliver)
                }
                None => deliver(&encode(None)),
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

    /// Relays a client event to the channel's other subscribers, on every node. Returns how many on
    /// this node got it.
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
        let relayed = RelayedClientEvent {
            channel,
            event,
            data,
            socket_id: conn.socket_id(),
            user_id: user_id.as_deref(),
        };
        let delivered = self.client_event_local(app, &relayed);
        if let Some(hook) = self.hook() {
            hook.client_event(app, &relayed);
        }
        self.report(
            app,
            BrokerEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id: conn.socket_id(),
                user_id: user_id.as_deref(),
            },
        );
        Ok(delivered)
    }

    /// Fans a client event out to this node's subscribers of its channel, except its sender; where
    /// the channel keeps history, at its next position, like [`Broker::publish_local`].
    pub(crate) fn client_event_local(&self, app: &App, event: &RelayedClientEvent<'_>) -> usize {
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
        let deliver = |frame: &Bytes| {
            let n = rt
                .registry
                .fan_out(event.channel.as_str(), frame, Some(event.socket_id));
            rt.usage.delivered(n as u64, (n * frame.len()) as u64);
            n
        };
        match self.history_limits(app, event.channel.as_str()) {
            Some(limits) => {
                let now = Instant::now();
                let n =
                    rt.history
                        .publish(event.channel, limits, now, |p| encode(Some(p)), deliver);
                rt.history.evict_over(app.history.max_bytes);
                n
            }
            None => deliver(&encode(None)),
        }
    }
}
