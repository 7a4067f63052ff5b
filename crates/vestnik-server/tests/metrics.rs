//! The Prometheus endpoint: families move after a scripted run.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn metrics_families_move_after_a_scripted_run() {
    let b = spawn_with_server("metrics_port = 0");
    let port = metrics_port(&b).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let auth = channel_auth(KEY, SECRET, &c.socket_id, "private-m", None);
    c.subscribe(json!({"channel": "private-m", "auth": auth}))
        .await;
    assert_eq!(api(&b).trigger(&["private-m"], "e", "1").await.status, 200);
    c.expect_event("e").await;
    for _ in 0..20 {
        c.send(&json!({"event": "client-x", "channel": "private-m", "data": {}}))
            .await;
    }
    c.expect_event("pusher:error").await;
    let m = raw_http(port, "GET", "/metrics", "").await;
    assert_eq!(m.status, 200);
    let body = m.body;
    assert_eq!(
        value(&body, r#"vestnik_sockets_opened_total{app_id="main"}"#),
        1.0
    );
    assert_eq!(
        value(&body, r#"vestnik_sockets_connected{app_id="main"}"#),
        1.0
    );
    assert_eq!(value(&body, r#"vestnik_channels{app_id="main"}"#), 1.0);
    assert_eq!(value(&body, r#"vestnik_subscriptions{app_id="main"}"#), 1.0);
    // The triggered event, the subscription reply and the errors went out in timed writes.
    assert!(
        value(
            &body,
            r#"vestnik_publish_to_write_seconds_count{app_id="main"}"#
        ) >= 2.0
    );
    assert!(body.contains(r#"vestnik_publish_to_write_seconds_bucket{app_id="main",le="0.001"}"#));
    assert!(
        value(
            &body,
            r#"vestnik_ws_messages_received_total{app_id="main"}"#
        ) >= 21.0
    );
    assert!(value(&body, r#"vestnik_ws_messages_sent_total{app_id="main"}"#) >= 3.0);
    assert!(value(&body, r#"vestnik_ws_bytes_sent_total{app_id="main"}"#) > 100.0);
    assert_eq!(
        value(
            &body,
            r#"vestnik_http_requests_total{app_id="main",route="events",status="200"}"#
        ),
        1.0
    );
    assert!(
        value(
            &body,
            r#"vestnik_client_events_rejected_total{app_id="main",reason="rate_limit"}"#
        ) >= 1.0
    );
    assert!(value(&body, "vestnik_process_resident_memory_bytes") > 1e6);
    drop(c);
    wait_until("the close to be counted", WAIT, || async {
        let body = raw_http(port, "GET", "/metrics", "").await.body;
        body.contains(r#"vestnik_sockets_closed_total{app_id="main",code="client"} 1"#)
    })
    .await;
}

/// A webhook receiver on a free port that answers 500 to its first request and 200 afterwards, so
/// both the failure and the delivery counters move. Returns its port and a request count.
async fn flaky_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // Read the head and the announced body, then answer; one request per connection.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let status = if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn webhook_and_adapter_families_move() {
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        panic!(
            "this test needs Redis on 127.0.0.1:6379: start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`"
        );
    }
    let (hook_port, requests) = flaky_receiver().await;
    let data_dir = tempfile::tempdir().unwrap();
    let prefix = format!("vestnik-metrics-{}", std::process::id());
    let config = format!(
        r#"
[server]
metrics_port = 0

[cluster]
adapter = "redis"
redis_url = "redis://127.0.0.1:6379"
prefix = "{prefix}"

[webhooks]
data_dir = "{}"
batch_ms = 10
hold_ms = 0
retry_initial_ms = 50

[[apps]]
id = "main"
key = "key-main"
secret = "secret-main"

[[apps.webhooks]]
url = "http://127.0.0.1:{hook_port}/hook"
"#,
        data_dir.path().display()
    );
    let b = BrokerProcess::spawn(bin(), &config);
    let port = metrics_port(&b).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    c.subscribe(json!({"channel": "hooked"})).await;
    assert_eq!(api(&b).trigger(&["hooked"], "e", "1").await.status, 200);
    c.expect_event("e").await;
    // The occupied webhook fails once, then is delivered on its retry.
    wait_until("the webhook to be retried and delivered", WAIT, || async {
        let body = raw_http(port, "GET", "/metrics", "").await.body;
        body.contains(r#"vestnik_webhooks_failed_total{app_id="main"} 1"#)
            && body.contains(r#"vestnik_webhooks_delivered_total{app_id="main"} 1"#)
    })
    .await;
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let body = raw_http(port, "GET", "/metrics", "").await.body;
    assert!(body.contains("# TYPE vestnik_webhooks_delivered_total counter"));
    assert_eq!(
        value(&body, r#"vestnik_webhooks_pending{app_id="main"}"#),
        0.0
    );
    assert_eq!(
        value(&body, r#"vestnik_webhooks_dead_lettered{app_id="main"}"#),
        0.0
    );
    // Joining the cluster, subscribing and triggering each relay a message over Redis.
    assert!(value(&body, r#"vestnik_adapter_published_total{adapter="redis"}"#) >= 1.0);
    assert_eq!(
        value(&body, r#"vestnik_adapter_connected{adapter="redis"}"#),
        1.0
    );
    assert_eq!(
        value(&body, r#"vestnik_adapter_lost_total{adapter="redis"}"#),
        0.0
    );
    assert!(body.contains("# TYPE vestnik_adapter_received_total counter"));
}
