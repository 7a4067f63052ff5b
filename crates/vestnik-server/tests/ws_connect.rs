//! Connecting: the handshake, every refusal code, liveness and shutdown, over raw frames.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn handshake_has_a_numeric_socket_id_and_activity_timeout() {
    let b = spawn();
    let mut c = WsClient::connect_raw(&b.ws_url(KEY)).await;
    let ev = c.expect_event("pusher:connection_established").await;
    let data: Value = serde_json::from_str(ev["data"].as_str().unwrap()).unwrap();
    let id = data["socket_id"].as_str().unwrap();
    let (a, z) = id.split_once('.').unwrap();
    assert!(
        a.bytes().all(|c| c.is_ascii_digit()) && z.bytes().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(data["activity_timeout"], 120);
}

async fn refused(b: &BrokerProcess, path_and_query: &str) -> (Option<u16>, Vec<Value>) {
    let mut c = WsClient::connect_raw(&format!("ws://127.0.0.1:{}{path_and_query}", b.port)).await;
    c.expect_close(WAIT).await
}

#[tokio::test]
async fn refusals_send_pusher_error_then_close_with_the_same_code() {
    let b = spawn();
    let cases = [
        ("/app/nope?protocol=7", 4001),
        ("/app/key-off?protocol=7", 4003),
        ("/nothing/here?protocol=7", 4005),
        ("/app/key-main", 4008),
        ("/app/key-main?protocol=seven", 4006),
        ("/app/key-main?protocol=3", 4007),
        ("/app/key-origins?protocol=7", 4009),
    ];
    for (path, code) in cases {
        let (close, frames) = refused(&b, path).await;
        assert_eq!(close, Some(code), "{path}");
        assert_eq!(frames.len(), 1, "{path}: {frames:?}");
        assert_eq!(frames[0]["event"], "pusher:error");
        assert_eq!(frames[0]["data"]["code"], code, "{path}");
        assert!(frames[0]["data"]["message"].as_str().unwrap().len() > 5);
    }
}

#[tokio::test]
async fn app_quota_gives_4004_and_frees_on_disconnect() {
    let b = spawn();
    let url = b.ws_url("key-quota");
    let first = WsClient::connect(&url).await;
    let (code, _) = WsClient::connect_raw(&url).await.expect_close(WAIT).await;
    assert_eq!(code, Some(4004));
    drop(first);
    // The slot frees once the server has seen the close.
    wait_until("the quota slot to free", WAIT, || {
        let url = url.clone();
        async move {
            let mut c = WsClient::connect_raw(&url).await;
            matches!(c.recv_within(WAIT).await, Some(Received::Json(v)) if v["event"] == "pusher:connection_established")
        }
    })
    .await;
}

#[tokio::test]
async fn node_capacity_gives_4100() {
    let b = spawn_with_server("max_connections = 1");
    let _first = WsClient::connect(&b.ws_url(KEY)).await;
    let (code, _) = WsClient::connect_raw(&b.ws_url(KEY))
        .await
        .expect_close(WAIT)
        .await;
    assert_eq!(code, Some(4100));
}

#[tokio::test]
async fn allowed_origin_is_admitted() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let b = spawn();
    let mut req = b.ws_url("key-origins").into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://shop.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(msg
        .to_text()
        .unwrap()
        .contains("pusher:connection_established"));
}

#[tokio::test]
async fn silent_client_is_pinged_then_closed_with_4201() {
    let b = spawn_with_server("activity_timeout = 1\npong_timeout = 1");
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    c.expect_event("pusher:ping").await;
    let (code, _) = c.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4201));
}

#[tokio::test]
async fn answering_pings_keeps_the_socket_open() {
    let b = spawn_with_server("activity_timeout = 1\npong_timeout = 1");
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    for _ in 0..3 {
        c.expect_event("pusher:ping").await;
        c.send(&json!({"event": "pusher:pong", "data": {}})).await;
    }
    c.send(&json!({"event": "pusher:ping", "data": {}})).await;
    c.expect_event("pusher:pong").await;
}

#[tokio::test]
async fn signin_timeout_closes_with_4009() {
    let b = spawn();
    let mut c = WsClient::connect(&b.ws_url("key-signin")).await;
    let (code, frames) = c.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4009));
    assert!(
        frames
            .iter()
            .any(|f| f["event"] == "pusher:error" && f["data"]["code"] == 4009),
        "{frames:?}"
    );
}

#[tokio::test]
async fn signed_in_socket_survives_the_signin_timeout() {
    let b = spawn();
    let mut c = WsClient::connect(&b.ws_url("key-signin")).await;
    let user_data = r#"{"id":"7"}"#;
    let auth =
        vestnik_protocol::auth::sign_user("key-signin", "secret-signin", &c.socket_id, user_data);
    c.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    c.expect_event("pusher:signin_success").await;
    c.expect_no_event("pusher:error", Duration::from_millis(1500))
        .await;
}

#[tokio::test]
async fn sigterm_closes_sockets_with_4200_and_exits_cleanly() {
    // A short drain: the spread itself is tested in tests/drain.rs.
    let mut b = spawn_with_server("drain_grace_ms = 100\ndrain_window_ms = 500");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(WsClient::connect(&b.ws_url(KEY)).await);
    }
    b.signal("TERM");
    for c in &mut clients {
        let (code, _) = c.expect_close(WAIT).await;
        assert_eq!(code, Some(4200));
    }
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn up_answers_200() {
    let b = spawn();
    let r = raw_http(b.port, "GET", "/up", "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn ready_and_usage_report_the_node() {
    let b = spawn_with_server("metrics_port = 0");
    let r = raw_http(b.port, "GET", "/ready", "").await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ready")));
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    c.subscribe(json!({"channel": "usage-test"})).await;
    // The figures name every app: the public port does not serve them, the metrics listener does.
    assert_eq!(raw_http(b.port, "GET", "/usage", "").await.status, 404);
    let u = raw_http(metrics_port(&b).await, "GET", "/usage", "").await;
    assert_eq!(u.status, 200);
    assert_eq!(u.json["connections"], 1, "{}", u.body);
    assert_eq!(u.json["channels"], 1, "{}", u.body);
    assert!(
        u.json["memory"]["rss_bytes"].as_u64().unwrap() > 1_000_000,
        "{}",
        u.body
    );
    let main = u.json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "main")
        .unwrap();
    assert_eq!(main["connections"], 1);
    assert!(u.json["cluster"].is_null());
}

/// Sends `request` as is and returns the answer's status line, read within two seconds.
async fn status_line(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(2), async {
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer within 2 s");
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_upgrade_that_is_not_a_get_over_http_1_1_is_refused_before_upgrading() {
    let b = spawn();
    let headers = "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let path = format!("/app/{KEY}?protocol=7");
    for request in [
        format!("POST {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\n\r\n"),
        format!("PUT {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\n\r\n"),
        format!("GET {path} HTTP/1.0\r\n{headers}\r\n"),
    ] {
        let status = status_line(b.port, &request).await;
        assert!(status.contains(" 400 "), "{request:?} got {status:?}");
    }
    // A GET over HTTP/1.1 still upgrades.
    let ok = format!("GET {path} HTTP/1.1\r\n{headers}\r\n");
    assert!(status_line(b.port, &ok).await.contains(" 101 "));
}
