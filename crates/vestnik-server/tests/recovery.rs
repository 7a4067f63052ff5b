//! Positions and recovery over real sockets: events from the HTTP API (trigger and batch) and client
//! events carry `position`; a socket that comes back with `recover` gets what it missed, in order
//! and once, or `recovered:false` with the reason; private channels recover only after their auth;
//! in a cluster on Redis or on NATS JetStream, positions are cluster-wide and a socket recovers on
//! another node than the one it left; with JetStream down, events go out unnumbered, recoveries
//! are answered at once, and the channel starts over under a new epoch once it is back.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vestnik_testkit::conformance::{unique_prefix, Backbone, BackboneServer};

const APPS_WITH_HISTORY: &str = r#"
[[apps]]
id = "main"
key = "key-main"
secret = "secret-main"

[apps.history]
size = 5

[[apps.history.channels]]
prefix = "quiet-"
enabled = false

[[apps]]
id = "off"
key = "key-nohistory"
secret = "secret-nohistory"

[apps.history]
enabled = false
"#;

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

fn position(v: &Value) -> (String, u64) {
    (
        v["position"]["epoch"]
            .as_str()
            .expect("an epoch")
            .to_owned(),
        v["position"]["offset"].as_u64().expect("an offset"),
    )
}

/// The next `n` frames that are not `pusher:ping`/`pong`.
async fn next_frames(c: &mut WsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        match c.recv_within(Duration::from_secs(5)).await {
            Some(Received::Json(v)) if v["event"] != "pusher:ping" => out.push(v),
            Some(Received::Json(_)) => {}
            other => panic!("wanted {n} frames, got {out:?} then {other:?}"),
        }
    }
    out
}

#[tokio::test]
async fn a_returning_socket_gets_the_missed_events_once_in_order_then_live_ones() {
    let b = BrokerProcess::spawn(bin(), APPS_WITH_HISTORY);
    let api = api(&b);
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = c.subscribe(json!({"channel": "orders"})).await;
    assert_eq!(ok["data"], "{}", "without recover the data is as before");
    let (epoch, start) = position(&ok);
    assert_eq!(start, 0);
    assert_eq!(
        api.trigger(&["orders"], "status", "packed").await.status,
        200
    );
    let got = c.expect_event("status").await;
    assert_eq!(position(&got), (epoch.clone(), 1));
    assert_eq!(got["data"], "packed");
    drop(c);

    // Away: a trigger and a batch of two.
    assert_eq!(
        api.trigger(&["orders"], "status", "shipped").await.status,
        200
    );
    let batch = json!({"batch": [
        {"channel": "orders", "name": "status", "data": "out"},
        {"channel": "orders", "name": "status", "data": "delivered"},
    ]})
    .to_string();
    assert_eq!(
        api.call("POST", "/batch_events", &[], &batch).await.status,
        200
    );

    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = c
        .subscribe(json!({"channel": "orders", "recover": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": true, "missed": 3})
    );
    assert_eq!(position(&ok), (epoch.clone(), 4));
    let missed = next_frames(&mut c, 3).await;
    assert_eq!(
        missed.iter().map(|f| f["data"].clone()).collect::<Vec<_>>(),
        ["shipped", "out", "delivered"]
    );
    assert_eq!(
        missed.iter().map(position).map(|p| p.1).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(
        api.trigger(&["orders"], "status", "rated").await.status,
        200
    );
    let live = c.expect_event("status").await;
    assert_eq!(
        (live["data"].clone(), position(&live).1),
        (json!("rated"), 5)
    );
}

#[tokio::test]
async fn refusals_carry_their_reason_and_private_channels_need_their_auth() {
    let b = BrokerProcess::spawn(bin(), APPS_WITH_HISTORY);
    let api = api(&b);
    for i in 0..7 {
        api.trigger(&["private-a", "quiet-a"], "e", &i.to_string())
            .await;
    }
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let epoch = {
        let auth = channel_auth(KEY, SECRET, &c.socket_id, "private-a", None);
        let ok = c
            .subscribe(json!({"channel": "private-a", "auth": auth}))
            .await;
        position(&ok).0
    };
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    // A bad signature is refused before anything of the history is sent.
    let bad = c
        .subscribe(
            json!({"channel": "private-a", "auth": format!("{KEY}:{}", "0".repeat(64)),
                          "recover": {"epoch": epoch, "offset": 5}}),
        )
        .await;
    assert_eq!(bad["event"], "pusher:subscription_error");
    c.expect_no_event("e", Duration::from_millis(200)).await;
    let auth = channel_auth(KEY, SECRET, &c.socket_id, "private-a", None);
    let too_old = c
        .subscribe(
            json!({"channel": "private-a", "auth": auth, "recover": {"epoch": epoch, "offset": 1}}),
        )
        .await;
    assert_eq!(
        data(&too_old)["recovery"],
        json!({"recovered": false, "reason": "too_old"})
    );
    let other_epoch = c
        .subscribe(json!({"channel": "orders", "recover": {"epoch": "0000", "offset": 1}}))
        .await;
    assert_eq!(
        data(&other_epoch)["recovery"],
        json!({"recovered": false, "reason": "epoch_changed"})
    );
    let off = c
        .subscribe(json!({"channel": "quiet-a", "recover": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(
        data(&off)["recovery"],
        json!({"recovered": false, "reason": "history_off"})
    );
    assert!(off.get("position").is_none());
    c.expect_no_event("e", Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_events_take_positions_and_an_app_without_history_sends_none() {
    let b = BrokerProcess::spawn(bin(), APPS_WITH_HISTORY);
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    let mut z = WsClient::connect(&b.ws_url(KEY)).await;
    let mut epochs = Vec::new();
    for c in [&mut a, &mut z] {
        let auth = channel_auth(KEY, SECRET, &c.socket_id, "private-chat", None);
        let ok = c
            .subscribe(json!({"channel": "private-chat", "auth": auth}))
            .await;
        epochs.push(position(&ok));
    }
    assert_eq!(epochs[0], epochs[1]);
    a.send(&json!({"event": "client-typing", "channel": "private-chat", "data": {}}))
        .await;
    let got = z.expect_event("client-typing").await;
    assert_eq!(position(&got), (epochs[0].0.clone(), 1));

    let plain = Api::new(b.port, "off", "key-nohistory", "secret-nohistory");
    let mut c = WsClient::connect(&b.ws_url("key-nohistory")).await;
    let ok = c
        .subscribe(json!({"channel": "c", "recover": {"epoch": "x", "offset": 0}}))
        .await;
    assert!(ok.get("position").is_none());
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": false, "reason": "history_off"})
    );
    assert_eq!(plain.trigger(&["c"], "e", "x").await.status, 200);
    let got = c.expect_event("e").await;
    assert_eq!(got, json!({"event": "e", "channel": "c", "data": "x"}));
}

#[tokio::test]
async fn on_redis_positions_are_cluster_wide_and_a_socket_recovers_on_the_other_node() {
    require_redis();
    let prefix = format!("vestnik-recovery-{}", std::process::id());
    let config = format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{prefix}\"\n{APPS_WITH_HISTORY}",
        redis_url()
    );
    two_nodes_share_positions_and_a_socket_recovers_on_the_other(&config).await;
}

#[tokio::test]
async fn on_nats_jetstream_positions_are_cluster_wide_and_a_socket_recovers_on_the_other_node() {
    // A NATS of its own, with JetStream: the nodes keep the cluster's history there.
    let nats = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("recovery");
    let config = format!(
        "[cluster]\nadapter = \"nats\"\nnats_url = \"{}\"\nprefix = \"{prefix}\"\n{APPS_WITH_HISTORY}",
        nats.url()
    );
    two_nodes_share_positions_and_a_socket_recovers_on_the_other(&config).await;
    assert!(
        vestnik_nats::delete_history_at(&nats.url(), &prefix)
            .await
            .expect("delete the test's history stream"),
        "the nodes kept the history in JetStream"
    );
}

/// Two nodes of one cluster (`config`): a socket on node A sees one sequence of offsets for
/// events published through either node; it goes, misses two events, comes back on node B with
/// `recover`, and gets the missed ones once and in order, then the live ones; the history API
/// answers the same on either node.
async fn two_nodes_share_positions_and_a_socket_recovers_on_the_other(config: &str) {
    let a = BrokerProcess::spawn(bin(), config);
    let b = BrokerProcess::spawn(bin(), config);
    // A position from nowhere is refused with its reason; the channel's position comes along.
    let mut on_a = WsClient::connect(&a.ws_url(KEY)).await;
    let ok = on_a
        .subscribe(json!({"channel": "orders", "recover": {"epoch": "x", "offset": 3}}))
        .await;
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": false, "reason": "epoch_changed"})
    );
    let (epoch, offset) = position(&ok);
    assert_eq!(offset, 0);
    // Events published on either node carry one sequence of offsets.
    for (i, node) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(
            api(node)
                .trigger(&["orders"], "e", &i.to_string())
                .await
                .status,
            200
        );
        let got = on_a.expect_event("e").await;
        assert_eq!(position(&got), (epoch.clone(), i as u64 + 1), "{got}");
    }
    // The socket goes; two more events are published through node A; it comes back on node B.
    drop(on_a);
    for i in 3..5 {
        assert_eq!(
            api(&a)
                .trigger(&["orders"], "e", &i.to_string())
                .await
                .status,
            200
        );
    }
    // A trigger is answered once its event is queued for numbering; wait until Redis has both.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = api(&b)
            .call("GET", "/channels/orders/history", &[], "")
            .await;
        let page: Value = serde_json::from_str(&page.body).unwrap();
        if page["last_offset"] == 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not numbered: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut on_b = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = on_b
        .subscribe(json!({"channel": "orders", "recover": {"epoch": epoch, "offset": 3}}))
        .await;
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": true, "missed": 2})
    );
    let missed = next_frames(&mut on_b, 2).await;
    let got: Vec<(String, u64, &str)> = missed
        .iter()
        .map(|f| {
            let (e, o) = position(f);
            (e, o, f["data"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [(epoch.clone(), 4, "3"), (epoch.clone(), 5, "4")],
        "the missed events, in order"
    );
    // Then the live ones, with no duplicate of the missed ones in between.
    assert_eq!(api(&a).trigger(&["orders"], "e", "5").await.status, 200);
    let live = next_frames(&mut on_b, 1).await;
    assert_eq!(
        (position(&live[0]), live[0]["data"].as_str()),
        ((epoch.clone(), 6), Some("5")),
        "the next live event"
    );
    // The history API answers on either node from the same history.
    let page = api(&b)
        .call(
            "GET",
            "/channels/orders/history",
            &[("epoch", &epoch), ("after", "2")],
            "",
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page: Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(page["last_offset"], 6);
    let offsets: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
}

#[tokio::test]
async fn with_nats_jetstream_down_events_go_out_unnumbered_and_the_channel_starts_over_after() {
    let mut nats = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("recovery-down");
    let config = format!(
        "[cluster]\nadapter = \"nats\"\nnats_url = \"{}\"\nprefix = \"{prefix}\"\n{APPS_WITH_HISTORY}",
        nats.url()
    );
    let a = BrokerProcess::spawn(bin(), &config);
    let b = BrokerProcess::spawn(bin(), &config);
    let mut on_a = WsClient::connect(&a.ws_url(KEY)).await;
    let ok = on_a.subscribe(json!({"channel": "orders"})).await;
    let (epoch, _) = position(&ok);
    assert_eq!(api(&a).trigger(&["orders"], "e", "1").await.status, 200);
    let got = on_a.expect_event("e").await;
    assert_eq!(position(&got), (epoch.clone(), 1));

    nats.stop();
    // Published meanwhile, an event still goes out here, without a position: nobody could
    // number it.
    assert_eq!(api(&a).trigger(&["orders"], "e", "2").await.status, 200);
    let got = on_a.expect_event("e").await;
    assert_eq!(got["data"], "2");
    assert!(got.get("position").is_none(), "unnumbered: {got}");
    // A recovery that needs the store is answered (not left hanging) with the reason to retry.
    let mut on_b = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = on_b
        .subscribe(json!({"channel": "orders", "recover": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": false, "reason": "backbone_unavailable"})
    );
    drop(on_b);

    nats.start();
    // Back (JetStream kept its store): the history API reads it again on both nodes.
    for node in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = api(node)
                .call("GET", "/channels/orders/history", &[], "")
                .await;
            if page.status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the history is not read again: {} {}",
                page.status,
                page.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The channel was sent unnumbered, so no position from before tells everything after it:
    // it starts over under a new epoch, and the old position is refused on any node.
    assert_eq!(api(&a).trigger(&["orders"], "e", "3").await.status, 200);
    let got = on_a.expect_event("e").await;
    let (new_epoch, offset) = position(&got);
    assert_ne!(new_epoch, epoch, "a new epoch");
    assert_eq!((offset, got["data"].as_str()), (1, Some("3")));
    let mut on_b = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = on_b
        .subscribe(json!({"channel": "orders", "recover": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(
        data(&ok)["recovery"],
        json!({"recovered": false, "reason": "epoch_changed"})
    );
    drop((a, b));
    assert!(
        vestnik_nats::delete_history_at(&nats.url(), &prefix)
            .await
            .expect("delete the test's history stream"),
        "the nodes kept the history in JetStream"
    );
}
