//! Failures are counted too: API calls refused at the signature gate or over a size limit appear in
//! `vestnik_http_requests_total` with their status, and sockets refused after the upgrade in
//! `vestnik_sockets_refused_total` with their close code. Labels only ever carry a configured app's
//! id or `unknown`, never a value from the request.

mod common;

use common::*;

async fn scrape(port: u16) -> String {
    let m = raw_http(port, "GET", "/metrics", "").await;
    assert_eq!(m.status, 200);
    m.body
}

#[tokio::test]
async fn refused_api_calls_are_counted_with_their_status() {
    let b = spawn_with_server("metrics_port = 0");
    let port = metrics_port(&b).await;
    let forged = Api::new(b.port, "main", KEY, "not-the-secret");
    assert_eq!(forged.trigger(&["c"], "e", "1").await.status, 401);
    let unknown = Api::new(b.port, "attacker-chosen-app", KEY, SECRET);
    assert_eq!(unknown.trigger(&["c"], "e", "1").await.status, 404);
    let over = "x".repeat(10_241);
    assert_eq!(api(&b).trigger(&["c"], "e", &over).await.status, 413);
    assert_eq!(api(&b).trigger(&["c"], "e", "1").await.status, 200);

    let body = scrape(port).await;
    let count = |labels: &str| value(&body, &format!("vestnik_http_requests_total{{{labels}}}"));
    assert_eq!(count(r#"app_id="main",route="events",status="401""#), 1.0);
    assert_eq!(
        count(r#"app_id="unknown",route="events",status="404""#),
        1.0
    );
    assert_eq!(count(r#"app_id="main",route="events",status="413""#), 1.0);
    assert_eq!(count(r#"app_id="main",route="events",status="200""#), 1.0);
    assert!(!body.contains("attacker-chosen-app"), "{body}");
}

#[tokio::test]
async fn refused_sockets_are_counted_with_their_code() {
    let b = spawn_with_server("metrics_port = 0");
    let port = metrics_port(&b).await;
    // Refused at admission (the key names no app) and by the broker (the app is disabled).
    let mut unknown = WsClient::connect_raw(&b.ws_url("attacker-chosen-key")).await;
    assert_eq!(unknown.expect_close(WAIT).await.0, Some(4001));
    let mut disabled = WsClient::connect_raw(&b.ws_url("key-off")).await;
    assert_eq!(disabled.expect_close(WAIT).await.0, Some(4003));

    let body = scrape(port).await;
    assert_eq!(
        value(
            &body,
            r#"vestnik_sockets_refused_total{app_id="unknown",code="4001"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &body,
            r#"vestnik_sockets_refused_total{app_id="off",code="4003"}"#
        ),
        1.0
    );
    assert!(!body.contains("attacker-chosen-key"), "{body}");
    // Never admitted, so never opened nor closed.
    assert!(!body.contains("vestnik_sockets_opened_total"), "{body}");
}
