//! One webhook request: the body with a fresh `time_ms`, its signature, the headers, and a POST
//! over a pooled hyper client (http, or https with rustls and the Mozilla roots).
//!
//! Each call builds and signs the body anew, so a retry carries a current `time_ms` that the
//! Python SDK's 5-minute check accepts. This module must never retry, sleep or touch the spool:
//! it reports one attempt's outcome and the lane decides what follows.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use vestnik_protocol::webhook::sign_webhook;

use crate::error::Error;
use crate::spool::StoredEvent;

/// The pooled client every lane shares.
/// HTTP/1.1 only: webhook receivers are ordinary web apps, and one batch per request gains nothing
/// from HTTP/2 multiplexing.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The header listing the ids of every event in the body, comma-separated, in body order.
/// Not part of Pusher's protocol: receivers that ignore it lose nothing, receivers that read it can
/// dedupe a redelivered batch without parsing the body.
pub const ID_HEADER: &str = "x-vestnik-webhook-id";
/// The header numbering the attempt (1 for the first request of a batch, 2 for its first retry…).
/// Lets a receiver tell a retry from a first delivery in its own logs.
pub const ATTEMPT_HEADER: &str = "x-vestnik-webhook-attempt";

/// How much of a response body is read (then discarded) so the connection can be reused. A
/// receiver that answers with more gets its connection closed instead.
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// How long an idle pooled connection is kept for the next batch. Our choice: longer than a batch
/// window, shorter than common server keep-alive timeouts (nginx: 75 s).
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why one attempt failed; the text is what the dead-letter list shows.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The receiver answered, but not with a 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// No full answer within the request timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// Connecting, TLS or the exchange failed (refused, reset, DNS, certificate, …).
    #[error("{0}")]
    Transport(String),
    /// The stored URL or headers cannot form a request (they were valid when spooled; a hand-edited
    /// spool is the only way here).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Builds the shared client: keep-alive pooled per host, at most `max_idle` idle connections.
/// `enforce_http(false)` lets the one connector take `https://` URLs; `https_or_http` keeps plain
/// `http://` working for receivers on a private network. The `ring` provider is named explicitly so
/// the crate does not depend on which rustls provider some other crate enabled.
pub(crate) fn client(connect_timeout: Duration, max_idle: usize) -> Result<HttpClient, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| Error::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(POOL_IDLE)
        .build(https))
}

/// `{"time_ms":…,"events":[…]}` from events that are already JSON objects.
/// The spool keeps each event as its finished JSON, so a retry only writes the envelope around the
/// stored text and never serialises an event again.
pub(crate) fn body(time_ms: u64, events: &[StoredEvent]) -> Vec<u8> {
    let len: usize = events.iter().map(|e| e.json.len() + 1).sum();
    let mut out = Vec::with_capacity(len + 40);
    out.extend_from_slice(b"{\"time_ms\":");
    out.extend_from_slice(time_ms.to_string().as_bytes());
    out.extend_from_slice(b",\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event.json.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

/// Everything one attempt needs.
pub(crate) struct Attempt<'a> {
    /// Where to POST: the target's URL as it was when the batch was spooled.
    pub url: &'a str,
    /// The app key for `X-Pusher-Key`.
    pub key: &'a str,
    /// The app secret that signs the body; only borrowed for the attempt.
    pub secret: &'a str,
    /// Extra headers from the target's config (an `Authorization` for the receiver, for example).
    pub headers: &'a BTreeMap<String, String>,
    /// The batch's events, already JSON.
    pub events: &'a [StoredEvent],
    /// 1-based attempt number, sent as [`ATTEMPT_HEADER`].
    pub number: u32,
    /// The envelope's `time_ms`: now, not when the event happened, so receivers that reject stale
    /// bodies accept a late retry.
    pub time_ms: u64,
}

impl Attempt<'_> {
    /// Builds the signed POST. The signature is over the exact body bytes sent, as Pusher's
    /// `X-Pusher-Signature` is (HMAC-SHA256 with the app secret, hex).
    fn request(&self) -> Result<Request<Full<Bytes>>, SendError> {
        let invalid = |what: &str| SendError::Invalid(what.to_owned());
        let uri: Uri = self.url.parse().map_err(|_| invalid("URL"))?;
        let body = body(self.time_ms, self.events);
        let signature = sign_webhook(self.secret, &body);
        let ids = self
            .events
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("vestnik-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-pusher-key", self.key)
            .header("x-pusher-signature", signature)
            .header(ID_HEADER, ids)
            .header(ATTEMPT_HEADER, self.number);
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header"))?;
            let value = HeaderValue::from_str(value).map_err(|_| invalid("header value"))?;
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Invalid(e.to_string()))
    }

    /// Sends the attempt; `Ok` only for a 2xx answer received within `timeout`.
    /// The timeout covers connect, the exchange and reading the bounded body, so one stuck receiver
    /// costs at most `timeout` per slot. A 3xx is a failure: webhook receivers are not expected to
    /// redirect, and following one would send the signed body to a host nobody configured.
    pub(crate) async fn send(
        &self,
        client: &HttpClient,
        timeout: Duration,
    ) -> Result<u16, SendError> {
        let request = self.request()?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| SendError::Transport(error_chain(&e)))?;
            let status = response.status();
            // Read (a bounded part of) the answer so the connection goes back to the pool.
            let _ = Limited::new(response.into_body(), RESPONSE_BODY_LIMIT)
                .collect()
                .await;
            Ok::<_, SendError>(status)
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let status = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(timeout_ms))??;
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}

/// hyper's errors say "client error (Connect)" and keep the useful part ("Connection refused")
/// in their sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-exact, because the signature is over these bytes: the Pusher SDKs verify it as sent.
    #[test]
    fn body_is_pushers_envelope() {
        let events = [
            StoredEvent {
                id: "a".into(),
                json: r#"{"name":"channel_occupied","channel":"c","id":"a"}"#.into(),
            },
            StoredEvent {
                id: "b".into(),
                json: r#"{"name":"channel_vacated","channel":"c","id":"b"}"#.into(),
            },
        ];
        let body = body(1_530_710_011_901, &events);
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(parsed["time_ms"], 1_530_710_011_901u64);
        assert_eq!(parsed["events"][1]["name"], "channel_vacated");
        assert_eq!(
            String::from_utf8(body).expect("utf8"),
            r#"{"time_ms":1530710011901,"events":[{"name":"channel_occupied","channel":"c","id":"a"},{"name":"channel_vacated","channel":"c","id":"b"}]}"#
        );
    }

    /// A receiver using a Pusher SDK needs `X-Pusher-Key` and a signature over the exact body; the
    /// target's own headers ride along.
    #[test]
    fn request_carries_the_protocol_headers() {
        let events = [StoredEvent {
            id: "e1".into(),
            json: r#"{"name":"cache_miss","channel":"cache-c","id":"e1"}"#.into(),
        }];
        let headers = BTreeMap::from([("Authorization".to_owned(), "Bearer t".to_owned())]);
        let attempt = Attempt {
            url: "http://127.0.0.1:9/hooks",
            key: "key",
            secret: "secret",
            headers: &headers,
            events: &events,
            number: 2,
            time_ms: 5,
        };
        let req = attempt.request().expect("request");
        let h = req.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-pusher-key"], "key");
        assert_eq!(h[ID_HEADER], "e1");
        assert_eq!(h[ATTEMPT_HEADER], "2");
        assert_eq!(h["authorization"], "Bearer t");
        let expected = sign_webhook("secret", &body(5, &events));
        assert_eq!(h["x-pusher-signature"], expected.as_str());
    }
}
