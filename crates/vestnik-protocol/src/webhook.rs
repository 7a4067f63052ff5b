//! Webhooks, the pure parts: the event kinds Pusher sends, what a target subscribes to, and the body
//! signature (`X-Pusher-Signature` is the hex HMAC-SHA256 of the raw body with the app secret, Pusher
//! webhooks docs). No HTTP and no delivery here: the `vestnik-webhooks` crate sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::{sign_bytes, verify_hex};

/// The kinds of webhook event Pusher sends, by their wire `name`.
///
/// Targets list the kinds they want in `event_types`, with exactly these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The first subscriber joined a channel.
    ChannelOccupied,
    /// The last subscriber left a channel (held back, see `hold_ms`).
    ChannelVacated,
    /// A user joined a presence channel.
    MemberAdded,
    /// A user left a presence channel (held back, see `hold_ms`).
    MemberRemoved,
    /// A client sent a `client-` event.
    ClientEvent,
    /// A subscriber found a cache channel empty.
    CacheMiss,
    /// A channel's subscription count changed.
    SubscriptionCount,
}

impl EventType {
    /// Every kind, in the order Pusher's docs list them.
    pub const ALL: [EventType; 7] = [
        EventType::ChannelOccupied,
        EventType::ChannelVacated,
        EventType::MemberAdded,
        EventType::MemberRemoved,
        EventType::ClientEvent,
        EventType::CacheMiss,
        EventType::SubscriptionCount,
    ];

    /// The wire `name` of events of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ChannelOccupied => "channel_occupied",
            EventType::ChannelVacated => "channel_vacated",
            EventType::MemberAdded => "member_added",
            EventType::MemberRemoved => "member_removed",
            EventType::ClientEvent => "client_event",
            EventType::CacheMiss => "cache_miss",
            EventType::SubscriptionCount => "subscription_count",
        }
    }

    /// The kind whose arrival cancels a held event of this kind, and the reverse: a target that
    /// wants only one of the pair still depends on the hold of the other.
    pub fn partner(self) -> Option<EventType> {
        match self {
            EventType::ChannelOccupied => Some(EventType::ChannelVacated),
            EventType::ChannelVacated => Some(EventType::ChannelOccupied),
            EventType::MemberAdded => Some(EventType::MemberRemoved),
            EventType::MemberRemoved => Some(EventType::MemberAdded),
            EventType::ClientEvent | EventType::CacheMiss | EventType::SubscriptionCount => None,
        }
    }
}

/// The serde default of `event_types`: a target that names no kinds gets all of them.
fn all_event_types() -> Vec<EventType> {
    EventType::ALL.to_vec()
}

/// One receiver of an app's webhooks: an `[[apps.webhooks]]` table.
///
/// An event goes to a target when its kind is in `event_types` and its channel matches both the
/// prefix and the suffix filter (when set). Several targets may receive the same event; each gets
/// its own copy, retried on its own. `Debug` hides header values: they often carry credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// Which kinds of event to send; every kind when omitted.
    #[serde(default = "all_event_types")]
    pub event_types: Vec<EventType>,
    /// Only channels whose name starts with this.
    #[serde(default)]
    pub channel_prefix: Option<String>,
    /// Only channels whose name ends with this.
    #[serde(default)]
    pub channel_suffix: Option<String>,
    /// Extra request headers, for example an `Authorization` token the receiver's proxy expects.
    /// They may not replace the headers the protocol defines.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebhookTarget {
    /// Header names only: a target is logged at start, and its `Authorization` value must not be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("channel_prefix", &self.channel_prefix)
            .field("channel_suffix", &self.channel_suffix)
            .field("headers", &header_names)
            .finish()
    }
}

impl WebhookTarget {
    /// A target for every event kind on every channel: what `--webhook-url` configures.
    pub fn every_event(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            event_types: all_event_types(),
            channel_prefix: None,
            channel_suffix: None,
            headers: BTreeMap::new(),
        }
    }

    /// Whether `channel` passes this target's prefix and suffix filters.
    pub fn matches_channel(&self, channel: &str) -> bool {
        self.channel_prefix
            .as_deref()
            .is_none_or(|p| channel.starts_with(p))
            && self
                .channel_suffix
                .as_deref()
                .is_none_or(|s| channel.ends_with(s))
    }
}

/// The `X-Pusher-Signature` value for a webhook body.
///
/// HMAC-SHA256 of the exact body bytes with the app secret, hex: what every Pusher server SDK's
/// webhook check recomputes. Sign the bytes that are sent, not a re-encoding of them.
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    sign_bytes(secret, body)
}

/// Checks a webhook's `X-Pusher-Signature` in constant time.
pub fn verify_webhook(secret: &str, body: &[u8], signature: &str) -> bool {
    verify_hex(secret, body, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature made by pusher-http-php for a known body, so PHP receivers accept ours.
    #[test]
    fn php_sdk_vectors() {
        assert_eq!(
            sign_webhook("thisisasecret", br#"{"hello":"world"}"#),
            "40e0ad3b9aa49529322879e84de1aaaf18bde1efe839ca263d540cc865510d25"
        );
        let body = br#"{"time_ms":1530710011901,"events":[{"name":"client_event","channel":"private-my-channel","event":"client-event","data":"Unencrypted","socket_id":"240621.35780774"}]}"#;
        let sig = "a19cab2af3ca1029257570395e78d5d675e9e700ca676d18a375a7083178df1c";
        assert_eq!(sign_webhook("thisisasecret", body), sig);
        assert!(verify_webhook("thisisasecret", body, sig));
        assert!(!verify_webhook("thisisasecret", b"{}", sig));
    }
}
