//! Clients that stop reading or stop sending: a WebSocket client that never reads is dropped once a
//! write to it stalls past `write_timeout_ms` (and forgotten by the broker like any other
//! disconnect), and an HTTP request whose body never comes gets 408 after `handshake_timeout`.
//! Everyone else is served throughout.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The stalled client's receive buffer: as small as Linux allows, so the server's writes stall
/// after a few frames instead of after the kernel has buffered megabytes.
const SMALL_RECV_BUFFER: u32 = 4096;

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

/// A raw WebSocket over a socket with a tiny receive buffer.
struct StalledClient {
    ws: WebSocketStream<TcpStream>,
    socket_id: String,
}

impl StalledClient {
    async fn connect(b: &BrokerProcess) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(SMALL_RECV_BUFFER).unwrap();
        let stream = socket
            .connect(([127, 0, 0, 1], b.port).into())
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(b.ws_url(KEY), stream)
            .await
            .expect("handshake");
        let mut c = Self {
            ws,
            socket_id: String::new(),
        };
        let established = c.next_json().await;
        assert_eq!(established["event"], "pusher:connection_established");
        c.socket_id = data(&established)["socket_id"].as_str().unwrap().to_owned();
        c
    }

    async fn next_json(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the socket is open")
                .expect("a readable frame");
            if let Message::Text(t) = frame {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    /// Subscribes and reads until the answer; the last read this client ever does.
    async fn subscribe(&mut self, sub: Value) {
        let channel = sub["channel"].clone();
        let frame = json!({"event": "pusher:subscribe", "data": sub}).to_string();
        self.ws.send(Message::text(frame)).await.unwrap();
        loop {
            let v = self.next_json().await;
            if v["channel"] == channel {
                assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
                return;
            }
        }
    }
}

fn presence_auth(socket_id: &str, user: &str) -> Value {
    let cd = json!({"user_id": user}).to_string();
    let auth = channel_auth(KEY, SECRET, socket_id, "presence-room", Some(&cd));
    json!({"channel": "presence-room", "auth": auth, "channel_data": cd})
}

/// Sockets open on the broker, from `/usage` on its metrics listener.
async fn connections(metrics: u16) -> u64 {
    raw_http(metrics, "GET", "/usage", "").await.json["connections"]
        .as_u64()
        .expect("/usage has connections")
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_forgotten() {
    // Defaults: an outbox of 1024 frames, more than the 600 sent, so only the write timeout can
    // end the stalled socket.
    let b = spawn_with_server("metrics_port = 0");
    let metrics = metrics_port(&b).await;
    let mut reader = WsClient::connect(&b.ws_url(KEY)).await;
    reader.subscribe(json!({"channel": "firehose"})).await;
    reader
        .subscribe(presence_auth(&reader.socket_id, "reader"))
        .await;

    let mut stalled = StalledClient::connect(&b).await;
    stalled.subscribe(json!({"channel": "firehose"})).await;
    let sub = presence_auth(&stalled.socket_id, "stalled");
    stalled.subscribe(sub).await;
    let added = reader.expect_event("pusher_internal:member_added").await;
    assert_eq!(data(&added)["user_id"], "stalled");
    assert_eq!(connections(metrics).await, 2);

    // From here on the stalled client reads nothing.
    let payload = "y".repeat(9_000);
    let total = 600;
    let mut received = 0;
    let mut removed = false;
    let count = |v: &Value, received: &mut usize, removed: &mut bool| {
        if v["event"] == "e" && v["channel"] == "firehose" {
            *received += 1;
        } else if v["event"] == "pusher_internal:member_removed" {
            assert_eq!(data(v)["user_id"], "stalled");
            *removed = true;
        }
    };
    for i in 0..total {
        let r = api(&b).trigger(&["firehose"], "e", &payload).await;
        assert_eq!(r.status, 200, "trigger {i}");
        while let Some(Received::Json(v)) = reader.recv_within(Duration::from_millis(1)).await {
            count(&v, &mut received, &mut removed);
        }
    }
    // The reader gets every event, and sees the stalled user leave once its socket is dropped
    // (the default write timeout is 5 s; allow for a loaded machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received < total || !removed {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match reader.recv_within(left).await {
            Some(Received::Json(v)) => count(&v, &mut received, &mut removed),
            other => panic!(
                "reader at {received}/{total} events, member_removed seen: {removed}: {other:?}"
            ),
        }
    }
    wait_until("the stalled socket to be forgotten", WAIT, || async {
        connections(metrics).await == 1
    })
    .await;
    let body = raw_http(metrics, "GET", "/metrics", "").await.body;
    assert_eq!(
        value(
            &body,
            r#"vestnik_slow_consumer_disconnects_total{app_id="main"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &body,
            r#"vestnik_sockets_closed_total{app_id="main",code="4100"}"#
        ),
        1.0
    );
    // The reader is still served.
    api(&b).trigger(&["firehose"], "after", "1").await;
    reader.expect_event("after").await;
    drop(stalled);
}

#[tokio::test]
async fn a_request_body_that_never_comes_gets_408() {
    let b = spawn_with_server("handshake_timeout = 1");
    let target = format!("/apps/main/events?auth_key={KEY}");
    let mut slow = TcpStream::connect(("127.0.0.1", b.port)).await.unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Other requests are served while that body is missing.
    let r = api(&b).trigger(&["c"], "e", "1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within {WAIT:?}: {}",
        String::from_utf8_lossy(&answer)
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json: Value = serde_json::from_str(body).expect("a JSON body");
    assert!(json["error"].as_str().unwrap().contains("body"), "{json}");
    let r = api(&b).trigger(&["c"], "e", "2").await;
    assert_eq!(r.status, 200, "{}", r.body);
}
