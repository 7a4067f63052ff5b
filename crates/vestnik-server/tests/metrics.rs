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
