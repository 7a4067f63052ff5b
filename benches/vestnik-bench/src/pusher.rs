//! The Pusher protocol v7 client side, just enough for load: connect, wait for
//! `pusher:connection_established`, subscribe and wait for `pusher_internal:subscription_succeeded`,
//! then read bench events and answer `pusher:ping`.
//!
//! It speaks only the wire protocol, so it can load any Pusher-compatible broker. tungstenite is
//! sized small, because thousands of sockets live in this one process.

use std::borrow::Cow;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::fdlimit;
use crate::target::{App, Endpoint};
use crate::tracker::Tracker;

/// Name of the events the generator triggers.
pub const BENCH_EVENT: &str = "bench";
/// Largest message accepted from the broker.
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Time allowed for connect, handshake and subscription of one socket.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the close handshake when the run ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pusher close codes that mean the broker is at a capacity limit (node over capacity, app over
/// quota).
const CAPACITY_CODES: [u16; 2] = [4100, 4004];

/// A subscribed socket.
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how sockets connect.
#[derive(Debug)]
pub struct WsTarget {
    /// The broker's WebSocket address.
    pub endpoint: Endpoint,
    /// The app sockets connect to.
    pub app: App,
    /// Per-socket read buffer, bytes.
    pub read_buffer: usize,
    /// Loopback source addresses to spread over (1 = kernel's choice).
    pub sources: u8,
}

impl WsTarget {
    /// The connect URL, as pusher-js builds it.
    pub fn url(&self) -> String {
        format!(
            "ws://{}/app/{}?protocol=7&client=bench&version=1.0",
            self.endpoint.authority, self.app.key
        )
    }

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_MESSAGE_BYTES)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES))
    }
}

/// Why a socket could not be opened and subscribed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A socket call failed.
    #[error("{stage}: {source}")]
    Io {
        /// What was being done.
        stage: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The WebSocket handshake failed.
    #[error("websocket handshake: {0}")]
    Handshake(tungstenite::Error),
    /// The broker answered `pusher:error` (and will close with that code).
    #[error("refused with pusher:error {code}: {message}")]
    Refused {
        /// The Pusher error code.
        code: u16,
        /// The broker's message.
        message: String,
    },
    /// The broker refused the subscription.
    #[error("subscription refused: {0}")]
    SubscriptionError(String),
    /// The socket closed before it was subscribed.
    #[error("closed while {0}")]
    Closed(&'static str),
    /// A step took longer than [`OPEN_TIMEOUT`].
    #[error("timed out after {}s (the broker may be out of descriptors or its accept backlog full)", OPEN_TIMEOUT.as_secs())]
    Timeout,
}

impl OpenError {
    /// If a limit (descriptors, ports, broker capacity) rather than a fault stopped this socket, a
    /// message that says which.
    pub fn limit(&self, sources: u8) -> Option<String> {
        match self {
            OpenError::Io { source, .. } => fdlimit::explain_io(source, sources),
            OpenError::Handshake(tungstenite::Error::Io(source)) => {
                fdlimit::explain_io(source, sources)
            }
            OpenError::Refused { code, message } if CAPACITY_CODES.contains(code) => Some(format!(
                "the broker refused more sockets with {code} ({message}): raise its max_connections"
            )),
            OpenError::Handshake(_)
            | OpenError::Refused { .. }
            | OpenError::SubscriptionError(_)
            | OpenError::Closed(_)
            | OpenError::Timeout => None,
        }
    }
}

/// A frame from the broker: only the fields the generator looks at, borrowed where possible.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    /// Event name.
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// Channel, for channel events.
    #[serde(default, borrow)]
    pub channel: Option<Cow<'a, str>>,
    /// Data: a JSON string (events) or an object (`pusher:error` from some brokers).
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

impl Frame<'_> {
    /// The data as text: the decoded string, or the raw JSON of a non-string value.
    pub fn data_text(&self) -> Option<Cow<'_, str>> {
        let raw = self.data?.get();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(raw))
        }
    }
}

/// The data of a bench event, as the trigger side writes it.
#[derive(Debug, Deserialize)]
pub struct Payload {
    /// Run number (0: warm-up, never counted).
    pub run: u32,
    /// Sequence number within the channel and run.
    pub seq: u64,
    /// Send time, µs since the shared time base.
    pub ts: u64,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
}

async fn next_frame_text(ws: &mut Ws, stage: &'static str) -> Result<String, OpenError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(OpenError::Closed(stage)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(OpenError::Handshake(e)),
        }
    }
}

fn refusal(frame: &Frame<'_>) -> OpenError {
    let text = frame.data_text().unwrap_or_default();
    let data: Option<ErrorData> = serde_json::from_str(&text).ok();
    OpenError::Refused {
        code: data.as_ref().and_then(|d| d.code).unwrap_or(0),
        message: data
            .and_then(|d| d.message)
            .unwrap_or_else(|| text.into_owned()),
    }
}

async fn connect_tcp(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream, OpenError> {
    let io = |stage| move |source| OpenError::Io { stage, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io("socket"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))
            .map_err(io("bind source address"))?;
    }
    let stream = socket.connect(addr).await.map_err(io("connect"))?;
    stream.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
    Ok(stream)
}

/// Opens socket `index`, waits for the connection, subscribes to `channel` and waits for the
/// subscription to succeed. Private channels are signed with the app secret.
pub async fn open(
    target: &WsTarget,
    index: usize,
    channel: &str,
) -> Result<(Ws, String), OpenError> {
    let source = crate::target::source_for(index, target.sources, &target.endpoint.addr);
    tokio::time::timeout(OPEN_TIMEOUT, async {
        let stream = connect_tcp(target.endpoint.addr, source).await?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            target.url(),
            stream,
            Some(target.config()),
        )
        .await
        .map_err(OpenError::Handshake)?;
        let socket_id = loop {
            let text = next_frame_text(&mut ws, "waiting for connection_established").await?;
            let frame: Frame<'_> = match serde_json::from_str(&text) {
                Ok(f) => f,
                Err(_) => continue,
            };
            match frame.event.as_ref() {
                "pusher:connection_established" => {
                    #[derive(Deserialize)]
                    struct Established {
                        socket_id: String,
                    }
                    let data = frame.data_text().unwrap_or_default();
                    let est: Established = serde_json::from_str(&data).map_err(|e| {
                        OpenError::SubscriptionError(format!("bad connection_established: {e}"))
                    })?;
                    break est.socket_id;
                }
                "pusher:error" => return Err(refusal(&frame)),
                _ => {}
            }
        };
        let auth = if channel.starts_with("private-") {
            vestnik_protocol::auth::sign_channel(
                &target.app.key,
                &target.app.secret,
                &socket_id,
                channel,
                None,
            )
        } else {
            String::new()
        };
        let sub = serde_json::json!({
            "event": "pusher:subscribe",
            "data": {"auth": auth, "channel": channel},
        });
        ws.send(Message::text(sub.to_string()))
            .await
            .map_err(OpenError::Handshake)?;
        loop {
            let text = next_frame_text(&mut ws, "waiting for subscription_succeeded").await?;
            let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
                continue;
            };
            match frame.event.as_ref() {
                "pusher_internal:subscription_succeeded"
                    if frame.channel.as_deref() == Some(channel) =>
                {
                    break;
                }
                "pusher:subscription_error" => {
                    return Err(OpenError::SubscriptionError(
                        frame.data_text().unwrap_or_default().into_owned(),
                    ))
                }
                "pusher:error" => return Err(refusal(&frame)),
                _ => {}
            }
        }
        Ok((ws, socket_id))
    })
    .await
    .unwrap_or(Err(OpenError::Timeout))
}

/// What one text frame asked of the reader.
enum Action {
    Nothing,
    Pong,
}

fn handle_text(text: &str, slot: usize, tracker: &Tracker) -> Action {
    let now = clock::now_us();
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        return Action::Nothing;
    };
    match frame.event.as_ref() {
        BENCH_EVENT => {
            if let Some(p) = frame
                .data_text()
                .and_then(|d| serde_json::from_str::<Payload>(&d).ok())
            {
                tracker.record(slot, p.run, p.seq, p.ts, now);
            }
            Action::Nothing
        }
        "pusher:ping" => Action::Pong,
        _ => Action::Nothing,
    }
}

/// Reads socket `slot` until `cancel` fires or the broker closes it, recording bench events in
/// `tracker` and answering pings. On cancel it sends a close frame (bounded wait) and returns.
pub async fn receive(mut ws: Ws, slot: usize, tracker: Arc<Tracker>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => match handle_text(t.as_str(), slot, &tracker) {
                    Action::Nothing => {}
                    Action::Pong => {
                        let pong = Message::text(r#"{"event":"pusher:pong","data":{}}"#);
                        if let Err(e) = ws.send(pong).await {
                            tracker.mark_closed(slot, format!("sending pong: {e}"));
                            return;
                        }
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map_or_else(
                        || "closed by the broker".to_owned(),
                        |f| format!("closed by the broker: {} {}", u16::from(f.code), f.reason),
                    );
                    tracker.mark_closed(slot, reason);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracker.mark_closed(slot, format!("read error: {e}"));
                    return;
                }
                None => {
                    tracker.mark_closed(slot, "connection ended".to_owned());
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_events_with_escaped_data() {
        let t = Tracker::new(1);
        t.mark_live(0);
        t.begin_run(3);
        let text = r#"{"event":"bench","channel":"bench-0","data":"{\"run\":3,\"seq\":7,\"ts\":5,\"pad\":\"\"}"}"#;
        assert!(matches!(handle_text(text, 0, &t), Action::Nothing));
        assert_eq!(t.delivered(), 1);
        assert!(matches!(
            handle_text(r#"{"event":"pusher:ping","data":{}}"#, 0, &t),
            Action::Pong
        ));
    }

    #[test]
    fn reads_error_codes_from_object_or_string_data() {
        for text in [
            r#"{"event":"pusher:error","data":{"code":4100,"message":"full"}}"#,
            r#"{"event":"pusher:error","data":"{\"code\":4100,\"message\":\"full\"}"}"#,
        ] {
            let f: Frame<'_> = serde_json::from_str(text).expect("valid frame");
            let e = refusal(&f);
            assert!(e.limit(1).is_some(), "{e}");
        }
    }
}
