//! The signed Pusher HTTP API, as an app server calls it: `POST /apps/{id}/events` and
//! `/batch_events`, over keep-alive HTTP/1.1 connections.
//!
//! Each [`ApiConn`] owns one connection and is used by one task at a time, so calls on it never
//! queue behind each other inside the client. Signing uses the protocol crate's `sign_request`, as
//! the official SDKs sign.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::clock;
use crate::pusher::BENCH_EVENT;
use crate::target::{App, Channels, Endpoint};

/// One bench event to trigger: its channel and its sequence number on that channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchEvent {
    /// Channel index.
    pub channel: usize,
    /// Sequence number within the channel and run.
    pub seq: u64,
}

/// Where API calls go and how bench event bodies are built.
#[derive(Debug)]
pub struct ApiTarget {
    /// The broker's HTTP address.
    pub endpoint: Endpoint,
    /// The app whose secret signs the calls.
    pub app: App,
    /// Channel naming.
    pub channels: Channels,
    /// Padding added to each event's data, to load larger messages.
    pub pad: String,
}

#[derive(Serialize)]
struct EventBody<'a> {
    name: &'a str,
    channel: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    batch: Vec<EventBody<'a>>,
}

impl ApiTarget {
    /// The data of a bench event: run, sequence, send time and padding, as a JSON object in a string.
    fn data(&self, run: u32, seq: u64, ts: u64) -> String {
        format!(
            r#"{{"run":{run},"seq":{seq},"ts":{ts},"pad":"{}"}}"#,
            self.pad
        )
    }

    /// The path and JSON body that trigger `events` of run `run`, stamped now: `/events` for one,
    /// `/batch_events` for several.
    pub fn body(&self, run: u32, events: &[BenchEvent]) -> (String, Bytes) {
        let ts = clock::now_us();
        let names: Vec<String> = events
            .iter()
            .map(|e| self.channels.name(e.channel))
            .collect();
        let datas: Vec<String> = events.iter().map(|e| self.data(run, e.seq, ts)).collect();
        let bodies: Vec<EventBody<'_>> = names
            .iter()
            .zip(&datas)
            .map(|(channel, data)| EventBody {
                name: BENCH_EVENT,
                channel,
                data,
            })
            .collect();
        let (path, json) = match bodies.len() {
            1 => (
                format!("/apps/{}/events", self.app.id),
                serde_json::to_vec(&bodies[0]),
            ),
            _ => (
                format!("/apps/{}/batch_events", self.app.id),
                serde_json::to_vec(&BatchBody { batch: bodies }),
            ),
        };
        (path, Bytes::from(json.expect("plain strings serialise")))
    }
}

/// Why an API call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Could not connect.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The API address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// No answer within [`CALL_TIMEOUT`].
    #[error("no answer within {}s (is the broker out of file descriptors?)", CALL_TIMEOUT.as_secs())]
    Timeout,
    /// The broker answered with a non-2xx status.
    #[error("status {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// Longest wait for one API call, connect included: a broker that accepted the connection into its
/// backlog but never serves it must not hang the run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest part of an error body kept in a report.
const ERROR_BODY_CHARS: usize = 200;

/// One keep-alive connection to the HTTP API, reconnected after an error.
#[derive(Debug)]
pub struct ApiConn {
    target: Arc<ApiTarget>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl ApiConn {
    /// A connection to `target`, opened on first use.
    pub fn new(target: Arc<ApiTarget>) -> Self {
        Self {
            target,
            sender: None,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, CallError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let addr = self.target.endpoint.addr;
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| CallError::Connect { addr, source })?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // The connection ends when the sender is dropped or the broker closes it; either
                // way the next call reconnects.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("set just above"))
    }

    /// Signs and posts `body` to `path`; Ok when the broker answered 2xx.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(), CallError> {
        let query = vestnik_protocol::auth::sign_request(
            &self.target.app.key,
            &self.target.app.secret,
            "POST",
            path,
            &[],
            &body,
            clock::unix_secs(),
        );
        let req = Request::post(format!("{path}?{query}"))
            .header(HOST, &self.target.endpoint.authority)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("method, URI and headers are valid");
        let result = tokio::time::timeout(CALL_TIMEOUT, self.exchange(req))
            .await
            .unwrap_or(Err(CallError::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<(), CallError> {
        let sender = self.sender().await?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(CallError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body)
                    .chars()
                    .take(ERROR_BODY_CHARS)
                    .collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ApiTarget {
        ApiTarget {
            endpoint: Endpoint::parse("127.0.0.1:1", &["http"], false).expect("valid"),
            app: App {
                id: "app-id".into(),
                key: "k".into(),
                secret: "s".into(),
            },
            channels: Channels::new(4, false),
            pad: "xx".into(),
        }
    }

    #[test]
    fn single_and_batch_bodies() {
        let t = target();
        let (path, body) = t.body(2, &[BenchEvent { channel: 1, seq: 9 }]);
        assert_eq!(path, "/apps/app-id/events");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["channel"], "bench-1");
        assert_eq!(v["name"], "bench");
        let data: serde_json::Value =
            serde_json::from_str(v["data"].as_str().expect("string data")).expect("json data");
        assert_eq!(
            (data["run"].as_u64(), data["seq"].as_u64()),
            (Some(2), Some(9))
        );
        assert_eq!(data["pad"], "xx");

        let (path, body) = t.body(
            2,
            &[
                BenchEvent { channel: 0, seq: 0 },
                BenchEvent { channel: 3, seq: 0 },
            ],
        );
        assert_eq!(path, "/apps/app-id/batch_events");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["batch"][1]["channel"], "bench-3");
    }
}
