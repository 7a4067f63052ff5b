//! The Prometheus endpoint: every family of issue 7 moves after a scripted run of the real binary
//! (sockets, frames and bytes, close codes, rate-limit refusals, sign-ins, webhooks with retries and
//! dead letters, the cluster adapter between two processes, the process's own figures), and the
//! metrics listener cuts off slow request headers like the main one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn metrics_families_move_after_a_scripted_run() {
    let b = BrokerProcess::spawn(
        bin(),
        &format!("[server]\nmetrics_port = 0\n{APPS}{LIMITED_APPS}"),
    );
    let port = metrics_port(&b).await;
    // A socket of the app that requires sign-in within 1 s, closed by the server with 4009.
    let mut late = WsClient::connect(&b.ws_url("key-signin")).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let user_data = r#"{"id":"metrics-user"}"#;
    let signin = vestnik_protocol::auth::sign_user(KEY, SECRET, &c.socket_id, user_data);
    c.send(&json!({"event": "pusher:signin", "data": {"auth": signin, "user_data": user_data}}))
        .await;
    c.expect_event("pusher:signin_success").await;
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
    // A burst of signed calls over the limited app's 3 per second.
    let limited = Api::new(b.port, "limited", "key-limited", "secret-limited");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(limited.trigger(&["rate"], "e", "{}").await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let (code, _) = late.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "the sign-in timeout closes with 4009");
    wait_until("the 4009 close to be counted", WAIT, || async {
        sample(
            &scrape(port).await,
            "vestnik_sockets_closed_total",
            &[r#"app_id="signin""#, r#"code="4009""#],
        ) == Some(1.0)
    })
    .await;
    let body = scrape(port).await;
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
    // The sign-in, the subscription and 20 client events came in.
    assert!(value(&body, r#"vestnik_ws_bytes_received_total{app_id="main"}"#) > 100.0);
    assert_eq!(
        value(&body, r#"vestnik_signed_in_users{app_id="main"}"#),
        1.0
    );
    let refused = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert_eq!(
        sample(
            &body,
            "vestnik_rate_limited_total",
            &[r#"limit="api""#, r#"app_id="limited""#]
        ),
        Some(refused),
        "{statuses:?}"
    );
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
    // Sockets, listeners and the runtime hold descriptors; CPU seconds may still round to 0.
    assert!(value(&body, "vestnik_process_open_fds") > 0.0);
    assert!(value(&body, "vestnik_process_cpu_seconds_total") >= 0.0);
    drop(c);
    wait_until("the close to be counted", WAIT, || async {
        let body = scrape(port).await;
        body.contains(r#"vestnik_sockets_closed_total{app_id="main",code="client"} 1"#)
    })
    .await;
}

/// A webhook receiver on a free port that answers 500 to its first request and 200 afterwards, so
/// both the failure and the delivery counters move. Returns its port and a request count.
async fn flaky_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
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
    require_redis();
    let (hook_port, requests) = flaky_receiver().await;
    let data_dir = tempfile::tempdir().unwrap();
    let prefix = format!(
        "vestnik-metrics-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let cluster = format!(
        r#"
[cluster]
adapter = "redis"
redis_url = "{}"
prefix = "{prefix}"
"#,
        redis_url()
    );
    let config = format!(
        r#"
[server]
metrics_port = 0
{cluster}

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

    // A second process on the same prefix: node 1 sees one peer, and an event triggered on node 2
    // reaches node 1's socket over Redis, counted as received.
    let b2 = BrokerProcess::spawn(
        bin(),
        &format!("[server]\nmetrics_port = 0\n{cluster}\n{APPS}"),
    );
    wait_until("node 1 to see node 2 as its one peer", WAIT, || async {
        sample(
            &scrape(port).await,
            "vestnik_cluster_peers",
            &[r#"adapter="redis""#],
        ) == Some(1.0)
    })
    .await;
    let received_before = value(
        &scrape(port).await,
        r#"vestnik_adapter_received_total{adapter="redis"}"#,
    );
    assert_eq!(
        api(&b2).trigger(&["hooked"], "across", "2").await.status,
        200
    );
    c.expect_event("across").await;
    let body = scrape(port).await;
    let received = value(&body, r#"vestnik_adapter_received_total{adapter="redis"}"#);
    assert!(
        received > received_before && received > 0.0,
        "received {received_before} -> {received}"
    );
    // Interest routing: the event came as a channel relay for a channel node 1 serves.
    assert!(
        value(
            &body,
            r#"vestnik_cluster_relays_received_total{adapter="redis"}"#
        ) >= 1.0,
        "the trigger was counted as a relay received"
    );
    assert_eq!(
        value(
            &body,
            r#"vestnik_cluster_relays_unserved_total{adapter="redis"}"#
        ),
        0.0,
        "no relay for a channel node 1 does not serve"
    );
    assert!(
        value(
            &body,
            r#"vestnik_cluster_route_shards_listened{adapter="redis"}"#
        ) >= 1.0,
        "node 1 listens to the shard of its channel"
    );
    let port2 = metrics_port(&b2).await;
    assert_eq!(
        sample(
            &scrape(port2).await,
            "vestnik_cluster_peers",
            &[r#"adapter="redis""#]
        ),
        Some(1.0)
    );
}

/// Webhooks to a receiver that refuses connections: the batch is pending while it is retried, then
/// dead-lettered once the 1 s retry window is over.
#[tokio::test]
async fn undeliverable_webhooks_are_pending_retried_then_dead_lettered() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data_dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[server]
metrics_port = 0

[webhooks]
data_dir = "{}"
batch_ms = 10
hold_ms = 0
retry_initial_ms = 50
retry_max_ms = 100
retry_window_secs = 1

[[apps]]
id = "main"
key = "key-main"
secret = "secret-main"

[[apps.webhooks]]
url = "http://127.0.0.1:{closed_port}/hook"
"#,
        data_dir.path().display()
    );
    let b = BrokerProcess::spawn(bin(), &config);
    let port = metrics_port(&b).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    c.subscribe(json!({"channel": "nobody-listens"})).await;
    let pending = |body: &str| sample(body, "vestnik_webhooks_pending", &[r#"app_id="main""#]);
    wait_until("the occupied webhook to be pending", WAIT, || async {
        pending(&scrape(port).await).is_some_and(|v| v > 0.0)
    })
    .await;
    wait_until("the webhook to be dead-lettered", WAIT, || async {
        sample(
            &scrape(port).await,
            "vestnik_webhooks_dead_lettered",
            &[r#"app_id="main""#],
        )
        .is_some_and(|v| v > 0.0)
    })
    .await;
    let body = scrape(port).await;
    assert_eq!(
        pending(&body),
        Some(0.0),
        "a dead letter is no longer pending"
    );
    assert!(value(&body, r#"vestnik_webhooks_retried_total{app_id="main"}"#) > 0.0);
    assert!(value(&body, r#"vestnik_webhooks_failed_total{app_id="main"}"#) >= 2.0);
    assert_eq!(
        value(&body, r#"vestnik_webhooks_delivered_total{app_id="main"}"#),
        0.0
    );
}

/// The metrics listener bounds request headers by `handshake_timeout`, like the main listener.
#[tokio::test]
async fn the_metrics_listener_cuts_off_slow_request_headers() {
    let b = spawn_with_server("metrics_port = 0\nhandshake_timeout = 1");
    let port = metrics_port(&b).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the metrics listener kept a slowloris connection open"
    );
}
