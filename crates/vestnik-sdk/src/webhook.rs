//! Verifying the webhooks a broker POSTs to the application.
//!
//! The check is the documented one: `X-Pusher-Key` must be the app key and `X-Pusher-Signature` the
//! hex HMAC-SHA256 of the raw body with the secret (compared in constant time by
//! `vestnik-protocol`). Only then is the body parsed. This module never parses an unverified body.

use serde::Deserialize;
use serde_json::Value;
use vestnik_protocol::webhook::verify_webhook as verify_signature;

use crate::Error;

/// A verified webhook body: `{"time_ms", "events": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookBody {
    /// When the broker built the body, in Unix milliseconds.
    pub time_ms: u64,
    /// The events, in order.
    pub events: Vec<WebhookEvent>,
}

/// One webhook event. The fields beyond `name` depend on the kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookEvent {
    /// `channel_occupied`, `channel_vacated`, `member_added`, `member_removed`, `client_event`,
    /// `cache_miss` or `subscription_count`.
    pub name: String,
    /// The channel it happened on.
    #[serde(default)]
    pub channel: Option<String>,
    /// For member events, the member.
    #[serde(default)]
    pub user_id: Option<String>,
    /// For client events, the event name.
    #[serde(default)]
    pub event: Option<String>,
    /// For client events, the data as sent.
    #[serde(default)]
    pub data: Option<String>,
    /// For client events, the sender.
    #[serde(default)]
    pub socket_id: Option<String>,
    /// For subscription-count events.
    #[serde(default)]
    pub subscription_count: Option<u64>,
    /// Anything else the broker sent, kept for forward compatibility.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Checks a webhook's key and signature headers against the app's credentials, then parses it.
pub fn verify_webhook(
    key: &str,
    secret: &str,
    header_key: Option<&str>,
    header_signature: Option<&str>,
    body: &[u8],
) -> Result<WebhookBody, Error> {
    if header_key != Some(key) {
        return Err(Error::WebhookKey);
    }
    let sig = header_signature.ok_or(Error::WebhookSignature)?;
    if !verify_signature(secret, body, &sig.to_ascii_lowercase()) {
        return Err(Error::WebhookSignature);
    }
    serde_json::from_slice(body).map_err(|e| Error::WebhookBody(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The PHP SDK's webhook vector.
    const BODY: &[u8] = br#"{"time_ms":1530710011901,"events":[{"name":"client_event","channel":"private-my-channel","event":"client-event","data":"Unencrypted","socket_id":"240621.35780774"}]}"#;
    const SIG: &str = "a19cab2af3ca1029257570395e78d5d675e9e700ca676d18a375a7083178df1c";

    /// The signature from Pusher's webhook docs must verify byte for byte.
    #[test]
    fn accepts_the_reference_vector() {
        let b = verify_webhook("k", "thisisasecret", Some("k"), Some(SIG), BODY).unwrap();
        assert_eq!(b.time_ms, 1530710011901);
        assert_eq!(b.events[0].name, "client_event");
        assert_eq!(b.events[0].socket_id.as_deref(), Some("240621.35780774"));
    }

    /// A changed body, a signature for another secret, or a key of another app is refused.
    #[test]
    fn refuses_tampering_and_wrong_keys() {
        assert!(matches!(
            verify_webhook("k", "thisisasecret", Some("other"), Some(SIG), BODY),
            Err(Error::WebhookKey)
        ));
        assert!(matches!(
            verify_webhook("k", "thisisasecret", Some("k"), None, BODY),
            Err(Error::WebhookSignature)
        ));
        assert!(matches!(
            verify_webhook("k", "wrong", Some("k"), Some(SIG), BODY),
            Err(Error::WebhookSignature)
        ));
        let mut tampered = BODY.to_vec();
        tampered[20] = b'9';
        assert!(matches!(
            verify_webhook("k", "thisisasecret", Some("k"), Some(SIG), &tampered),
            Err(Error::WebhookSignature)
        ));
        let sig = vestnik_protocol::webhook::sign_webhook("s", b"not json");
        assert!(matches!(
            verify_webhook("k", "s", Some("k"), Some(&sig), b"not json"),
            Err(Error::WebhookBody(_))
        ));
    }
}
