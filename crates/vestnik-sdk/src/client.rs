//! The HTTP API client: `trigger`, `trigger_batch` and `channel_history`, signed per request, over
//! a pooled hyper client (plain http, or https with rustls and the Mozilla roots).
//!
//! Every request is checked against the protocol's limits before it leaves, so a caller's mistake
//! is a typed error, not a 400 from the broker. This module never retries and never logs event
//! data: triggers can carry personal data, and retrying is the caller's decision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;
use vestnik_protocol::auth::sign_request;
use vestnik_protocol::limits::{
    MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER, MAX_EVENT_BYTES, MAX_EVENT_NAME_LEN,
};
use vestnik_protocol::{ChannelName, SocketId};

use crate::auth::{self, ChannelAuth, PresenceMember, UserAuth};
use crate::history::{self, HistoryCursor, HistoryPage};
use crate::webhook::{self, WebhookBody};
use crate::{Config, Error};

/// HTTP/1.1 over a pooled connector: a backend that triggers often reuses its connections to the
/// broker instead of paying a TCP (and TLS) handshake per event.
type HttpClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A broker's answer to a trigger: `{}` or, when asked for, channel attributes.
pub type TriggerResponse = Value;

/// One event of a batch, for one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEvent {
    /// The channel.
    pub channel: String,
    /// The event name.
    pub name: String,
    /// The data, already encoded (a JSON text or any string).
    pub data: String,
    /// A socket to leave out, usually the one whose action caused the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
}

impl BatchEvent {
    /// An event whose data is `data` encoded as JSON (a string value is sent as is).
    pub fn new<T: Serialize + ?Sized>(channel: &str, name: &str, data: &T) -> Result<Self, Error> {
        Ok(Self {
            channel: channel.into(),
            name: name.into(),
            data: encode_data(data)?,
            socket_id: None,
        })
    }
}

/// A Pusher HTTP API client for one app. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    /// The broker's address and the app's credentials; `Debug` of the client hides the secret
    /// through it.
    config: Config,
    /// The pool, shared by clones.
    http: HttpClient,
}

/// Pusher's `data` is a string on the wire. A `&str` is sent as is (the caller may have encoded it
/// already, as the official SDKs allow), anything else as its JSON text, so a struct is not encoded
/// twice into a quoted string.
fn encode_data<T: Serialize + ?Sized>(data: &T) -> Result<String, Error> {
    Ok(match serde_json::to_value(data)? {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Refuses what the broker would refuse anyway, before the request: an empty or over-long name, or
/// data over Pusher's 10 KB. A clear local error beats a 413 from the other side of the network.
fn check_event(name: &str, data: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME_LEN {
        return Err(Error::EventName {
            max: MAX_EVENT_NAME_LEN,
        });
    }
    if data.len() > MAX_EVENT_BYTES {
        return Err(Error::DataTooLarge {
            size: data.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

/// A pooled-client connector for plain `http://` and `https://` URLs alike, with a connect
/// deadline: rustls trusting the Mozilla roots (webpki-roots) when `tls` is `None`, or `tls` (a
/// private CA, client certificates). The SDK's [`Client`] is built on it, and any backend that
/// calls other HTTPS services (webhooks to partners) can share it rather than build its own.
pub fn https_connector(
    connect_timeout: Duration,
    tls: Option<rustls::ClientConfig>,
) -> Result<HttpsConnector<HttpConnector>, Error> {
    Ok(match tls {
        Some(tls) => with_tls(connect_timeout, tls),
        None => finish(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| Error::Tls(e.to_string()))?,
            connect_timeout,
        ),
    })
}

/// A connector over a caller's own rustls config (its roots, its client certificate).
fn with_tls(connect_timeout: Duration, tls: rustls::ClientConfig) -> HttpsConnector<HttpConnector> {
    finish(
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls),
        connect_timeout,
    )
}

/// The plain-TCP layer under both: `enforce_http(false)` so one connector serves both schemes,
/// `TCP_NODELAY` because API calls are small and latency-bound, and the connect deadline.
fn finish(
    builder: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>,
    connect_timeout: Duration,
) -> HttpsConnector<HttpConnector> {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    builder
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}

/// Seconds since the epoch for `auth_timestamp`; the broker accepts a window around its own clock
/// (600 s in Pusher's servers), so a host with a badly wrong clock gets 401s.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Client {
    /// A client for `config`; https trusts the Mozilla root certificates. Fails only if no TLS
    /// crypto provider can be set up.
    pub fn new(config: Config) -> Result<Self, Error> {
        let https = https_connector(config.timeout, None)?;
        Ok(Self::with_connector(config, https))
    }

    /// A client whose https uses `tls` (for a private CA or client certificates), e.g. a broker
    /// behind a company proxy.
    pub fn with_tls_config(config: Config, tls: rustls::ClientConfig) -> Self {
        let https = with_tls(config.timeout, tls);
        Self::with_connector(config, https)
    }

    fn with_connector(config: Config, https: HttpsConnector<HttpConnector>) -> Self {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
        Self { config, http }
    }

    /// The configuration this client uses.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Triggers `event` on each of `channels` (1 to 100), leaving out `socket_id` when given.
    ///
    /// `data` is encoded as JSON, except a string, which is sent as is (as every official SDK does).
    pub async fn trigger<T: Serialize + ?Sized>(
        &self,
        channels: &[&str],
        event: &str,
        data: &T,
        socket_id: Option<&str>,
    ) -> Result<TriggerResponse, Error> {
        if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_TRIGGER {
            return Err(Error::ChannelCount {
                given: channels.len(),
                max: MAX_CHANNELS_PER_TRIGGER,
            });
        }
        for c in channels {
            ChannelName::parse(c)?;
        }
        if let Some(s) = socket_id {
            SocketId::parse(s)?;
        }
        let data = encode_data(data)?;
        check_event(event, &data)?;
        let mut body = serde_json::json!({"name": event, "channels": channels, "data": data});
        if let Some(s) = socket_id {
            body["socket_id"] = Value::from(s);
        }
        self.post("events", body.to_string()).await
    }

    /// Triggers up to 10 events, each on its own channel, in one request.
    pub async fn trigger_batch(&self, events: &[BatchEvent]) -> Result<TriggerResponse, Error> {
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(Error::BatchSize {
                given: events.len(),
                max: MAX_BATCH_EVENTS,
            });
        }
        for e in events {
            ChannelName::parse(&e.channel)?;
            check_event(&e.name, &e.data)?;
            if let Some(s) = &e.socket_id {
                SocketId::parse(s)?;
            }
        }
        let body = serde_json::json!({ "batch": events });
        self.post("batch_events", body.to_string()).await
    }

    /// Reads a page of `channel`'s history from Vestnik's history API, oldest first: after
    /// `cursor` (from the oldest kept event without one), at most `limit` events (the broker's
    /// default, 100, without one; at most 1000). Go on with
    /// `HistoryCursor { epoch, offset: page.next_after }`. A position the history no longer has is
    /// [`Error::HistoryRefused`] with the channel's current epoch and bounds.
    pub async fn channel_history(
        &self,
        channel: &str,
        cursor: Option<HistoryCursor<'_>>,
        limit: Option<usize>,
    ) -> Result<HistoryPage, Error> {
        let channel = ChannelName::parse(channel)?;
        let after = cursor.map(|c| c.offset.to_string());
        let limit = limit.map(|l| l.to_string());
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let (Some(c), Some(after)) = (cursor, after.as_deref()) {
            params.push(("epoch", c.epoch));
            params.push(("after", after));
        }
        if let Some(limit) = limit.as_deref() {
            params.push(("limit", limit));
        }
        // `#` (only in `#server-to-user-…`) is the one channel character a path cannot carry.
        let path = format!("channels/{}/history", channel.as_str().replace('#', "%23"));
        match self
            .request(Method::GET, &path, &params, String::new())
            .await?
        {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(Error::Json),
            Err((status, body)) => Err(history::refusal(status, body)),
        }
    }

    /// Signs a private or presence subscription with this app's credentials; see
    /// [`auth::authorize_channel`].
    pub fn authorize_channel(
        &self,
        socket_id: &str,
        channel: &str,
        member: Option<&PresenceMember>,
    ) -> Result<ChannelAuth, Error> {
        auth::authorize_channel(
            &self.config.key,
            &self.config.secret,
            socket_id,
            channel,
            member,
        )
    }

    /// Signs a user sign-in with this app's credentials; see [`auth::authenticate_user`].
    pub fn authenticate_user(&self, socket_id: &str, user: &Value) -> Result<UserAuth, Error> {
        auth::authenticate_user(&self.config.key, &self.config.secret, socket_id, user)
    }

    /// Verifies a webhook with this app's credentials; see [`webhook::verify_webhook`].
    pub fn verify_webhook(
        &self,
        header_key: Option<&str>,
        header_signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookBody, Error> {
        webhook::verify_webhook(
            &self.config.key,
            &self.config.secret,
            header_key,
            header_signature,
            body,
        )
    }

    /// Signs and sends one POST under `/apps/{app_id}/`; a non-2xx answer comes back as
    /// [`Error::Status`] with the broker's body, which names the problem.
    async fn post(&self, endpoint: &str, body: String) -> Result<TriggerResponse, Error> {
        match self.request(Method::POST, endpoint, &[], body).await? {
            Ok(bytes) if bytes.is_empty() => Ok(Value::Object(Default::default())),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(Error::Json),
            Err((status, body)) => Err(Error::Status { status, body }),
        }
    }

    /// Signs and sends one request under `/apps/{app_id}/` with `params` in its query. The
    /// signature covers the method, the path, the sorted query with `body_md5`, and is computed
    /// fresh per call (the timestamp is part of it). The timeout covers the whole exchange, reading
    /// the answer included. A 2xx answer is its body; any other its status and body as text.
    async fn request(
        &self,
        method: Method,
        endpoint: &str,
        params: &[(&str, &str)],
        body: String,
    ) -> Result<Result<Bytes, (u16, String)>, Error> {
        let path = format!("/apps/{}/{endpoint}", self.config.app_id);
        let query = sign_request(
            &self.config.key,
            &self.config.secret,
            method.as_str(),
            &path,
            params,
            body.as_bytes(),
            now(),
        );
        let uri: Uri = format!("{}{path}?{query}", self.config.base_url())
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Url(e.to_string()))?;
        let mut req = Request::builder().method(method).uri(uri).header(
            header::USER_AGENT,
            concat!("vestnik-sdk/", env!("CARGO_PKG_VERSION")),
        );
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Url(e.to_string()))?;
        let timeout = self.config.timeout;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| Error::Transport(format!("{e:?}")))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Transport(e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        if (200..300).contains(&status) {
            Ok(Ok(bytes))
        } else {
            Ok(Err((status, String::from_utf8_lossy(&bytes).into_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_sent_as_is_and_values_as_json() {
        assert_eq!(encode_data("hello").unwrap(), "hello");
        assert_eq!(
            encode_data(&serde_json::json!({"a": 1})).unwrap(),
            r#"{"a":1}"#
        );
    }
}
