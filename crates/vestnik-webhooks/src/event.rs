//! Webhook events as the broker reports them, and their wire form: the JSON objects Pusher puts in
//! a webhook's `events` array, plus the `id` receivers dedupe on.
//!
//! This module is pure: it must never do IO or keep state. The one source of randomness is the
//! event id, drawn here so that every caller gets the same unique, time-ordered format.

use serde::Serialize;
use vestnik_protocol::{ChannelName, SocketId};

use crate::config::EventType;

/// Something that happened in the broker that an app may want to hear about.
///
/// The broker reports facts ("the last subscriber left"); this crate decides when they are sent
/// (the vacate hold, batching) and to whom (target filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The channel got its first subscriber.
    ChannelOccupied {
        /// The channel.
        channel: ChannelName,
    },
    /// The channel lost its last subscriber.
    ChannelVacated {
        /// The channel.
        channel: ChannelName,
    },
    /// A user's first connection joined a presence channel.
    MemberAdded {
        /// The presence channel.
        channel: ChannelName,
        /// The user's id from the channel data.
        user_id: String,
    },
    /// A user's last connection left a presence channel.
    MemberRemoved {
        /// The presence channel.
        channel: ChannelName,
        /// The user's id from the channel data.
        user_id: String,
    },
    /// A client sent a `client-` event.
    ClientEvent {
        /// The channel it was sent on.
        channel: ChannelName,
        /// The event name (`client-…`).
        event: String,
        /// The event data, as the string the client sent.
        data: String,
        /// The sender's socket.
        socket_id: SocketId,
        /// The sender's user id, on presence channels only.
        user_id: Option<String>,
    },
    /// A subscriber found a cache channel with nothing cached.
    CacheMiss {
        /// The cache channel.
        channel: ChannelName,
    },
    /// A channel's subscription count changed.
    SubscriptionCount {
        /// The channel.
        channel: ChannelName,
        /// Subscribers now.
        count: u64,
    },
}

impl WebhookEvent {
    /// The kind of the event, for target filters.
    /// Exhaustive on purpose (no `_`): a new variant must choose its kind here and in `to_json`.
    pub fn kind(&self) -> EventType {
        match self {
            WebhookEvent::ChannelOccupied { .. } => EventType::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => EventType::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => EventType::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => EventType::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => EventType::ClientEvent,
            WebhookEvent::CacheMiss { .. } => EventType::CacheMiss,
            WebhookEvent::SubscriptionCount { .. } => EventType::SubscriptionCount,
        }
    }

    /// The channel the event is about, for target filters.
    pub fn channel(&self) -> &ChannelName {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }

    /// The event object as it appears in a webhook body, with `id` last.
    /// Called once per event release, not per target or attempt: the string is shared by every
    /// batch the event goes into and stored as is in the spool. `socket_id` is written as its wire
    /// text (`123.456`), which is what Pusher's receivers expect.
    pub fn to_json(&self, id: &str) -> String {
        let mut wire = Wire {
            name: self.kind().as_str(),
            channel: self.channel().as_str(),
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
            subscription_count: None,
            id,
        };
        match self {
            WebhookEvent::ChannelOccupied { .. }
            | WebhookEvent::ChannelVacated { .. }
            | WebhookEvent::CacheMiss { .. } => {}
            WebhookEvent::MemberAdded { user_id, .. }
            | WebhookEvent::MemberRemoved { user_id, .. } => wire.user_id = Some(user_id),
            WebhookEvent::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                wire.event = Some(event);
                wire.data = Some(data);
                wire.socket_id = Some(socket_id.to_string());
                wire.user_id = user_id.as_deref();
            }
            WebhookEvent::SubscriptionCount { count, .. } => wire.subscription_count = Some(*count),
        }
        serde_json::to_string(&wire).expect("a struct of strings and integers always serialises")
    }
}

/// The wire object; field order follows Pusher's docs, `id` (our addition) comes last.
#[derive(Serialize)]
struct Wire<'a> {
    /// Pusher's name for the kind (`channel_occupied`, `member_added`, …).
    name: &'static str,
    channel: &'a str,
    /// Client events only: the `client-…` event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    /// Client events only: the data string exactly as the client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    /// Client events only: the sender, so the receiver can tell who sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<String>,
    /// Member events, and client events on presence channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    /// `subscription_count` events only.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<u64>,
    /// Our addition: the event id receivers dedupe on; Pusher's receivers ignore unknown fields.
    id: &'a str,
}

/// A new event id: a UUID version 7 (RFC 9562), so ids are unique across nodes and restarts
/// without coordination, sort by creation time, and fit a receiver's `uuid` column.
/// Only the low 48 bits of `unix_ms` fit the UUID's time field, which lasts until the year 10889.
pub(crate) fn new_event_id(unix_ms: u64) -> String {
    let random: u128 = rand::random();
    let mut v: u128 = u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80;
    v |= 0x7 << 76; // version 7
    v |= (random & 0xFFF) << 64; // rand_a
    v |= 0b10 << 62; // RFC 9562 variant
    v |= random >> 66; // rand_b, 62 bits
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Milliseconds since the Unix epoch, as webhook `time_ms` uses them.
/// A clock before 1970 reads as 0 rather than panicking: a wrong clock must not stop deliveries.
pub(crate) fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).expect("valid channel")
    }

    /// Field names and presence per kind follow Pusher's webhook docs, which receivers' SDKs parse.
    #[test]
    fn each_kind_has_pushers_shape() {
        let cases = [
            (
                WebhookEvent::ChannelOccupied { channel: ch("a") },
                r#"{"name":"channel_occupied","channel":"a","id":"X"}"#,
            ),
            (
                WebhookEvent::ChannelVacated { channel: ch("a") },
                r#"{"name":"channel_vacated","channel":"a","id":"X"}"#,
            ),
            (
                WebhookEvent::MemberAdded {
                    channel: ch("presence-a"),
                    user_id: "7".into(),
                },
                r#"{"name":"member_added","channel":"presence-a","user_id":"7","id":"X"}"#,
            ),
            (
                WebhookEvent::MemberRemoved {
                    channel: ch("presence-a"),
                    user_id: "7".into(),
                },
                r#"{"name":"member_removed","channel":"presence-a","user_id":"7","id":"X"}"#,
            ),
            (
                WebhookEvent::ClientEvent {
                    channel: ch("private-a"),
                    event: "client-typing".into(),
                    data: r#"{"x":"\"q\""}"#.into(),
                    socket_id: SocketId::new(12, 34),
                    user_id: None,
                },
                r#"{"name":"client_event","channel":"private-a","event":"client-typing","data":"{\"x\":\"\\\"q\\\"\"}","socket_id":"12.34","id":"X"}"#,
            ),
            (
                WebhookEvent::ClientEvent {
                    channel: ch("presence-a"),
                    event: "client-hi".into(),
                    data: "hello".into(),
                    socket_id: SocketId::new(1, 2),
                    user_id: Some("u1".into()),
                },
                r#"{"name":"client_event","channel":"presence-a","event":"client-hi","data":"hello","socket_id":"1.2","user_id":"u1","id":"X"}"#,
            ),
            (
                WebhookEvent::CacheMiss {
                    channel: ch("cache-a"),
                },
                r#"{"name":"cache_miss","channel":"cache-a","id":"X"}"#,
            ),
            (
                WebhookEvent::SubscriptionCount {
                    channel: ch("a"),
                    count: 3,
                },
                r#"{"name":"subscription_count","channel":"a","subscription_count":3,"id":"X"}"#,
            ),
        ];
        for (event, json) in cases {
            assert_eq!(event.to_json("X"), json);
        }
    }

    #[test]
    fn ids_are_uuid_v7_unique_and_time_ordered() {
        let a = new_event_id(1_700_000_000_000);
        let b = new_event_id(1_700_000_000_001);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7", "version nibble");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant bits");
        assert!(a < b);
        assert_eq!(&a[..8], &format!("{:012x}", 1_700_000_000_000u64)[..8]);
        let many: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_event_id(5)).collect();
        assert_eq!(many.len(), 10_000);
    }
}
