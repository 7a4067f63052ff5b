//! The webhook body signature: `X-Pusher-Signature` is the hex HMAC-SHA256 of the raw body with the
//! app secret (Pusher webhooks docs). Pure: no HTTP here.

use crate::auth::{sign_bytes, verify_hex};

/// The `X-Pusher-Signature` value for a webhook body.
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
