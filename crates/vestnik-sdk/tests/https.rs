//! The SDK over https: a TLS front (tokio-rustls with a test CA) relays to the real broker, and
//! a trigger signed and sent over TLS reaches a subscriber. A client that does not trust the CA is
//! refused with a typed transport error.

use serde_json::json;
use vestnik_sdk::{Client, Config, Error, Scheme};
use vestnik_testkit::{broker_binary, tls, BrokerProcess, WsClient};

const APPS: &str = r#"
[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"
"#;

#[tokio::test]
async fn trigger_over_https_reaches_the_subscriber() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let port = tls::front(broker.port).await;
    let mut cfg = Config::local("shop", "shop-key", "shop-secret");
    cfg.scheme = Scheme::Https;
    cfg.host = "localhost".into();
    cfg.port = port;
    let sdk = Client::with_tls_config(cfg.clone(), tls::client_config());

    let mut ws = WsClient::connect(&broker.ws_url("shop-key")).await;
    let auth = sdk
        .authorize_channel(&ws.socket_id, "private-user-1", None)
        .unwrap();
    let ok = ws
        .subscribe(json!({"channel": "private-user-1", "auth": auth.auth}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    sdk.trigger(
        &["private-user-1"],
        "order:status",
        &json!({"order_id": 7}),
        None,
    )
    .await
    .expect("trigger over TLS accepted");
    let ev = ws.expect_event("order:status").await;
    assert_eq!(ev["data"], r#"{"order_id":7}"#);

    // The default client trusts only the public roots: the test CA is refused.
    let public_roots = Client::new(cfg).unwrap();
    match public_roots
        .trigger(&["private-user-1"], "e", "x", None)
        .await
    {
        Err(Error::Transport(msg)) => assert!(msg.to_lowercase().contains("certificate"), "{msg}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}
