//! What happened on channels, for whoever listens: webhooks, the debug console, metrics.
//!
//! The core reports [`BrokerEvent`]s to an [`EventSink`] at the moment they happen (first subscriber,
//! last subscriber, a user's first and last socket, a client event, a cache miss, a count change, every
//! subscription and unsubscription, every API publish).
//! Events carry parsed names and ids ([`ChannelName`], [`SocketId`]; the app is the [`App`] passed
//! beside them), so no listener parses them again. This is the one spelling of a channel happening:
//! the webhook sender's `WebhookEvent` is its owned, webhook-only subset (converted in one place, the
//! server's webhook sink), and the console tap serialises it directly.
//!
//! A sink must return at once and never block: it is called on the publish and subscribe paths,
//! sometimes under a channel's shard lock. This module must never deliver anything itself.

use vestnik_protocol::{ChannelName, SocketId};

use crate::app::App;

/// One channel happening, in the vocabulary of Pusher's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerEvent<'a> {
    /// The channel got its first subscriber.
    ChannelOccupied {
        /// The channel.
        channel: &'a ChannelName,
    },
    /// The channel lost its last subscriber.
    ChannelVacated {
        /// The channel.
        channel: &'a ChannelName,
    },
    /// A user's first socket joined a presence channel.
    MemberAdded {
        /// The presence channel.
        channel: &'a ChannelName,
        /// The user.
        user_id: &'a str,
    },
    /// A user's last socket left a presence channel.
    MemberRemoved {
        /// The presence channel.
        channel: &'a ChannelName,
        /// The user.
        user_id: &'a str,
    },
    /// A socket sent a client event.
    ClientEvent {
        /// The channel.
        channel: &'a ChannelName,
        /// The event name.
        event: &'a str,
        /// The data string.
        data: &'a str,
        /// The sender.
        socket_id: SocketId,
        /// The sender's user id on presence channels.
        user_id: Option<&'a str>,
    },
    /// A socket joined a cache channel that had nothing cached.
    CacheMiss {
        /// The cache channel.
        channel: &'a ChannelName,
    },
    /// A non-presence channel's subscription count changed.
    SubscriptionCount {
        /// The channel.
        channel: &'a ChannelName,
        /// The new count.
        count: usize,
    },
    /// A socket joined a channel (for the console; not a webhook).
    Subscribed {
        /// The channel.
        channel: &'a ChannelName,
        /// The socket.
        socket_id: SocketId,
        /// The member's user id on presence channels.
        user_id: Option<&'a str>,
    },
    /// A socket left a channel, by unsubscribing or disconnecting (for the console; not a webhook).
    Unsubscribed {
        /// The channel.
        channel: &'a ChannelName,
        /// The socket.
        socket_id: SocketId,
    },
    /// An event was published through the API (for the console and metrics; not a webhook).
    Published {
        /// The channel.
        channel: &'a ChannelName,
        /// The event name.
        event: &'a str,
        /// The data string.
        data: &'a str,
        /// How many local sockets it was queued for.
        recipients: usize,
    },
    /// Another node told this one that a user joined a presence channel there and was in the
    /// cluster's roster nowhere before (for webhooks; no webhook of its own: that node reported
    /// `member_added`). A `member_removed` this node holds back for the user is void: the user is
    /// in the channel. This closes the race where this node writes a dead node's member off a moment
    /// after the member came back on another node.
    MemberJoinedElsewhere {
        /// The presence channel.
        channel: &'a ChannelName,
        /// The user.
        user_id: &'a str,
    },
    /// Another node told this one that it got a channel's first subscriber while no other remote
    /// node had it (for webhooks, like [`BrokerEvent::MemberJoinedElsewhere`]): a `channel_vacated`
    /// held back here is void.
    OccupiedElsewhere {
        /// The channel.
        channel: &'a ChannelName,
    },
}

impl<'a> BrokerEvent<'a> {
    /// The channel the event is about: every happening has one, already validated, so listeners
    /// (webhooks, the console) never parse it again.
    pub fn channel(&self) -> &'a ChannelName {
        match *self {
            BrokerEvent::ChannelOccupied { channel }
            | BrokerEvent::ChannelVacated { channel }
            | BrokerEvent::MemberAdded { channel, .. }
            | BrokerEvent::MemberRemoved { channel, .. }
            | BrokerEvent::ClientEvent { channel, .. }
            | BrokerEvent::CacheMiss { channel }
            | BrokerEvent::SubscriptionCount { channel, .. }
            | BrokerEvent::Subscribed { channel, .. }
            | BrokerEvent::Unsubscribed { channel, .. }
            | BrokerEvent::Published { channel, .. }
            | BrokerEvent::MemberJoinedElsewhere { channel, .. }
            | BrokerEvent::OccupiedElsewhere { channel } => channel,
        }
    }
}

/// Receives [`BrokerEvent`]s. Implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Called for every event of `app`.
    fn on_event(&self, app: &App, event: BrokerEvent<'_>);
}

/// A sink that drops everything; the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn on_event(&self, _app: &App, _event: BrokerEvent<'_>) {}
}
