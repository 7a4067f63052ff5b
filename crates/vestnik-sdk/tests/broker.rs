//! The SDK against the real `vestnik` binary: triggers reach subscribed sockets, socket_id
//! exclusion leaves the sender out, batches fan out per channel, the broker accepts the SDK's
//! private, presence and sign-in signatures, and refusals come back typed.

use std::time::Duration;

use serde_json::{json, Value};
use vestnik_sdk::{BatchEvent, Client, Config, Error, PresenceMember, Scheme};
use vestnik_testkit::{broker_binary, BrokerProcess, WsClient};

const APPS: &str = r#"
[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"
"#;

fn client(broker: &BrokerProcess, secret: &str) -> Client {
    let mut cfg = Config::local("shop", "shop-key", secret);
    cfg.port = broker.port;
    Client::new(cfg).expect("client builds")
}

async fn subscribed(broker: &BrokerProcess, sdk: &Client, channel: &str) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url("shop-key")).await;
    let auth = sdk.authorize_channel(&ws.socket_id, channel, None).unwrap();
    let answer = ws
        .subscribe(json!({"channel": channel, "auth": auth.auth}))
        .await;
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    ws
}

fn data(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("data is JSON")
}

#[tokio::test]
async fn trigger_reaches_private_subscribers_and_excludes_the_sender() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let sdk = client(&broker, "shop-secret");
    let mut a = subscribed(&broker, &sdk, "private-user-1").await;
    let mut b = subscribed(&broker, &sdk, "private-user-1").await;
    let mut c = subscribed(&broker, &sdk, "private-user-2").await;

    let answer = sdk
        .trigger(
            &["private-user-1", "private-user-2"],
            "order:status",
            &json!({"order_id": 1001, "status": "confirmed"}),
            None,
        )
        .await
        .expect("trigger accepted");
    assert!(answer.is_object());
    for ws in [&mut a, &mut b, &mut c] {
        let ev = ws.expect_event("order:status").await;
        assert_eq!(data(&ev)["order_id"], 1001);
    }

    let sender = a.socket_id.clone();
    sdk.trigger(
        &["private-user-1"],
        "order:note",
        "plain text",
        Some(&sender),
    )
    .await
    .unwrap();
    let ev = b.expect_event("order:note").await;
    assert_eq!(ev["data"], "plain text", "a string is sent as is");
    a.expect_no_event("order:note", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn batch_fans_out_per_channel() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let sdk = client(&broker, "shop-secret");
    let mut one = subscribed(&broker, &sdk, "private-user-1").await;
    let mut two = subscribed(&broker, &sdk, "private-user-2").await;
    let events = vec![
        BatchEvent::new("private-user-1", "order:status", &json!({"order_id": 1})).unwrap(),
        BatchEvent::new("private-user-2", "order:status", &json!({"order_id": 2})).unwrap(),
    ];
    sdk.trigger_batch(&events).await.expect("batch accepted");
    assert_eq!(data(&one.expect_event("order:status").await)["order_id"], 1);
    assert_eq!(data(&two.expect_event("order:status").await)["order_id"], 2);
    one.expect_no_event("order:status", Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn broker_accepts_presence_and_sign_in_signatures() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let sdk = client(&broker, "shop-secret");
    let mut ws = WsClient::connect(&broker.ws_url("shop-key")).await;
    let member = PresenceMember {
        user_id: "courier-7".into(),
        user_info: Some(json!({"name": "Ivan"})),
    };
    let auth = sdk
        .authorize_channel(&ws.socket_id, "presence-couriers", Some(&member))
        .unwrap();
    let answer = ws
        .subscribe(json!({"channel": "presence-couriers", "auth": auth.auth, "channel_data": auth.channel_data}))
        .await;
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    assert_eq!(data(&answer)["presence"]["ids"], json!(["courier-7"]));

    let user = sdk
        .authenticate_user(
            &ws.socket_id,
            &json!({"id": "42", "user_info": {"name": "Alice"}}),
        )
        .unwrap();
    ws.send(&json!({"event": "pusher:signin", "data": {"auth": user.auth, "user_data": user.user_data}}))
        .await;
    ws.expect_event("pusher:signin_success").await;
}

#[tokio::test]
async fn refusals_are_typed() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let wrong = client(&broker, "not-the-secret");
    match wrong.trigger(&["private-a"], "e", "x", None).await {
        Err(Error::Status { status: 401, body }) => assert!(body.contains("error"), "{body}"),
        other => panic!("expected a 401, got {other:?}"),
    }
    let sdk = client(&broker, "shop-secret");
    assert!(matches!(
        sdk.trigger(&[], "e", "x", None).await,
        Err(Error::ChannelCount { given: 0, .. })
    ));
    assert!(matches!(
        sdk.trigger(&["bad channel"], "e", "x", None).await,
        Err(Error::Channel(_))
    ));
    assert!(matches!(
        sdk.trigger(&["a"], "e", &"x".repeat(20_000), None).await,
        Err(Error::DataTooLarge { .. })
    ));
    assert!(matches!(
        sdk.trigger(&["a"], "e", "x", Some("not-a-socket")).await,
        Err(Error::SocketId(_))
    ));
    assert!(matches!(
        sdk.trigger_batch(&[]).await,
        Err(Error::BatchSize { given: 0, .. })
    ));

    // https against the plain-http port: the TLS handshake is attempted and fails, typed.
    let mut tls = sdk.config().clone();
    tls.scheme = Scheme::Https;
    let tls = Client::new(tls).unwrap();
    assert!(matches!(
        tls.trigger(&["a"], "e", "x", None).await,
        Err(Error::Transport(_))
    ));

    // Nothing listening: a transport error, not a hang.
    let port = broker.port;
    drop(broker);
    let mut gone = Config::local("shop", "shop-key", "shop-secret");
    gone.port = port;
    gone.timeout = Duration::from_secs(2);
    let gone = Client::new(gone).unwrap();
    assert!(matches!(
        gone.trigger(&["a"], "e", "x", None).await,
        Err(Error::Transport(_) | Error::Timeout(_))
    ));
}

/// The history API through the SDK: pages oldest first, the cursor goes on, and a lost position
/// comes back typed with where to go on from.
#[tokio::test]
async fn channel_history_pages_and_refusals() {
    use vestnik_sdk::HistoryCursor;

    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let sdk = client(&broker, "shop-secret");
    for step in 1..=3 {
        sdk.trigger(&["orders-7"], "status", &json!({ "step": step }), None)
            .await
            .expect("trigger accepted");
    }
    let first = sdk
        .channel_history("orders-7", None, Some(2))
        .await
        .expect("history page");
    let epoch = first
        .epoch
        .clone()
        .expect("a channel with events has an epoch");
    assert_eq!((first.first_offset, first.last_offset), (1, 3));
    let steps: Vec<(u64, String, Value)> = first
        .events
        .iter()
        .map(|e| {
            (
                e.offset,
                e.event.clone(),
                serde_json::from_str(&e.data).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, "status".into(), json!({"step": 1})),
            (2, "status".into(), json!({"step": 2}))
        ]
    );
    assert!(first.has_more);
    assert!(first.events.iter().all(|e| e.published_at_ms > 0));

    let cursor = HistoryCursor {
        epoch: &epoch,
        offset: first.next_after,
    };
    let rest = sdk
        .channel_history("orders-7", Some(cursor), None)
        .await
        .expect("next page");
    assert_eq!(
        rest.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [3]
    );
    assert!(!rest.has_more);

    let lost = HistoryCursor {
        epoch: "000000000000",
        offset: 1,
    };
    match sdk.channel_history("orders-7", Some(lost), None).await {
        Err(Error::HistoryRefused {
            status,
            reason,
            epoch: now,
            last_offset,
            ..
        }) => {
            assert_eq!(
                (status, reason.as_str(), last_offset),
                (409, "epoch_changed", 3)
            );
            assert_eq!(now.as_deref(), Some(epoch.as_str()));
        }
        other => panic!("expected HistoryRefused, got {other:?}"),
    }
    assert!(matches!(
        sdk.channel_history("bad name", None, None).await,
        Err(Error::Channel(_))
    ));
}
