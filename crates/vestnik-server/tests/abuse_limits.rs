//! The abuse limits with the real binary: the per-IP connection rate (HTTP 429 with `Retry-After` on
//! the upgrade, with and without `trust_proxy`), the per-app API rate (429 with `Retry-After` and a
//! JSON error), the per-socket channel cap, and the request-header timeout against slowloris.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn refused_for_rate(r: &HttpResponse) {
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After in {:?}", r.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("Too many")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn per_ip_connection_rate_refuses_the_upgrade_with_429() {
    let b =
        spawn_with_server("ip_connection_rate = 3\nip_connection_window = 60\nmetrics_port = 0");
    let url = b.ws_url(KEY);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(WsClient::connect(&url).await);
    }
    // Without trust_proxy the header is ignored: the TCP peer is over its rate.
    let r = WsClient::try_connect(&url, &[("x-forwarded-for", "203.0.113.9")])
        .await
        .expect_err("a fourth socket from one IP is refused");
    refused_for_rate(&r);
    // The sockets already open are not touched.
    let mut first = open.remove(0);
    let ok = first.subscribe(json!({"channel": "still-open"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    // The refusal is counted.
    let scrape = raw_http(metrics_port(&b).await, "GET", "/metrics", "").await;
    assert_eq!(
        value(
            &scrape.body,
            r#"vestnik_rate_limited_total{limit="ip_connections"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn trust_proxy_takes_the_client_ip_from_x_forwarded_for() {
    let b = spawn_with_server("ip_connection_rate = 2\ntrust_proxy = true");
    let url = b.ws_url(KEY);
    // The left-most entry is what the client claims; the right-most is what the proxy saw.
    let from_a = [("x-forwarded-for", "6.6.6.6, 198.51.100.1")];
    let _a1 = WsClient::try_connect(&url, &from_a).await.unwrap();
    let _a2 = WsClient::try_connect(&url, &from_a).await.unwrap();
    let r = WsClient::try_connect(&url, &from_a)
        .await
        .expect_err("198.51.100.1 is over its rate");
    refused_for_rate(&r);
    assert!(r.body.contains("198.51.100.1"), "{}", r.body);
    // Another client behind the same proxy has its own budget, whatever it claims on the left.
    let from_b = [("x-forwarded-for", "198.51.100.1, 198.51.100.2")];
    let _b1 = WsClient::try_connect(&url, &from_b)
        .await
        .expect("another client IP is admitted");
}

#[tokio::test]
async fn per_app_api_rate_answers_429_with_retry_after_and_recovers() {
    let b = BrokerProcess::spawn(bin(), LIMITED_APPS);
    let api = Api::new(b.port, "limited", "key-limited", "secret-limited");
    let mut statuses = Vec::new();
    let mut refusal = None;
    // The bucket holds 3; a burst of 10 signed calls must hit the limit.
    for _ in 0..10 {
        let r = api.trigger(&["rate"], "e", "{}").await;
        statuses.push(r.status);
        if r.status == 429 && refusal.is_none() {
            refusal = Some(r);
        }
    }
    assert!(statuses.iter().take(3).all(|s| *s == 200), "{statuses:?}");
    let refusal = refusal.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    refused_for_rate(&refusal);
    // The budget comes back.
    wait_until(
        "the API to accept again",
        Duration::from_secs(5),
        || async { api.trigger(&["rate"], "e", "{}").await.status == 200 },
    )
    .await;
    // Unsigned calls do not spend the app's budget: they are refused at the signature.
    let bad = Api::new(b.port, "limited", "key-limited", "wrong-secret");
    for _ in 0..5 {
        assert_eq!(bad.trigger(&["rate"], "e", "{}").await.status, 401);
    }
}

#[tokio::test]
async fn a_socket_may_join_at_most_max_channels_per_socket() {
    let b = BrokerProcess::spawn(bin(), LIMITED_APPS);
    let mut c = WsClient::connect(&b.ws_url("key-limited")).await;
    for ch in ["one", "two"] {
        let ok = c.subscribe(json!({"channel": ch})).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    let err = c.subscribe(json!({"channel": "three"})).await;
    assert_eq!(err["event"], "pusher:subscription_error", "{err}");
    assert_eq!(err["data"]["type"], "LimitReached", "{err}");
    assert_eq!(err["data"]["status"], 403, "{err}");
    // The socket stays usable: after leaving one channel, another fits.
    c.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "one"}}))
        .await;
    let ok = c.subscribe(json!({"channel": "three"})).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

#[tokio::test]
async fn slow_request_headers_are_cut_off_at_the_handshake_timeout() {
    let b = spawn_with_server("handshake_timeout = 1");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    // Half a request line, then silence: the server must hang up, not wait forever.
    s.write_all(b"GET /app/key-main?protocol=7 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a slowloris connection open");
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_at_once() {
    // A long body timeout, so that only the declared length can explain a quick answer.
    let b = spawn_with_server("handshake_timeout = 30");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    let request = format!(
        "POST /apps/main/events?auth_key={KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{{"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .expect("answered and closed at once, not after the body timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("\"code\":413"), "{text}");
}
