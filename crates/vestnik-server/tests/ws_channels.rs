//! Channels over raw frames: auth, presence rules, client events, cache, server-to-user, bad input.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

async fn client(b: &BrokerProcess) -> WsClient {
    WsClient::connect(&b.ws_url(KEY)).await
}

async fn join_presence(c: &mut WsClient, channel: &str, user: &str) -> Value {
    let cd = json!({"user_id": user, "user_info": {"name": format!("U{user}")}}).to_string();
    let auth = channel_auth(KEY, SECRET, &c.socket_id, channel, Some(&cd));
    c.subscribe(json!({"channel": channel, "auth": auth, "channel_data": cd}))
        .await
}

#[tokio::test]
async fn private_channel_needs_a_valid_signature() {
    let b = spawn();
    let mut c = client(&b).await;
    let bad = c
        .subscribe(json!({"channel": "private-a", "auth": format!("{KEY}:{}", "0".repeat(64))}))
        .await;
    assert_eq!(bad["event"], "pusher:subscription_error");
    assert_eq!(bad["data"]["type"], "AuthError");
    assert_eq!(bad["data"]["status"], 401);
    let missing = c
        .subscribe(json!({"channel": "private-b", "auth": ""}))
        .await;
    assert_eq!(missing["event"], "pusher:subscription_error");
    let auth = channel_auth(KEY, SECRET, &c.socket_id, "private-a", None);
    let ok = c
        .subscribe(json!({"channel": "private-a", "auth": auth}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    // A signature for another socket is refused.
    let mut other = client(&b).await;
    let stolen = other
        .subscribe(json!({"channel": "private-a", "auth": auth}))
        .await;
    assert_eq!(stolen["event"], "pusher:subscription_error");
}

#[tokio::test]
async fn invalid_channel_names_are_refused_on_the_channel() {
    let b = spawn();
    let mut c = client(&b).await;
    for name in ["has space", "#server-to-user-", &"x".repeat(201), "#other"] {
        let r = c.subscribe(json!({"channel": name})).await;
        assert_eq!(r["event"], "pusher:subscription_error", "{name}");
        assert_eq!(r["data"]["status"], 400, "{name}");
    }
}

#[tokio::test]
async fn presence_members_follow_first_and_last_socket() {
    let b = spawn();
    let mut a = client(&b).await;
    let ok = join_presence(&mut a, "presence-room", "1").await;
    let p = data(&ok);
    assert_eq!(p["presence"]["count"], 1);
    assert_eq!(p["presence"]["ids"], json!(["1"]));
    assert_eq!(p["presence"]["hash"]["1"]["name"], "U1");

    let mut b1 = client(&b).await;
    join_presence(&mut b1, "presence-room", "2").await;
    let added = a.expect_event("pusher_internal:member_added").await;
    assert_eq!(data(&added)["user_id"], "2");
    assert_eq!(data(&added)["user_info"]["name"], "U2");

    // Second socket of user 2: no member_added.
    let mut b2 = client(&b).await;
    let roster = join_presence(&mut b2, "presence-room", "2").await;
    assert_eq!(data(&roster)["presence"]["count"], 2);
    a.expect_no_event("pusher_internal:member_added", Duration::from_millis(300))
        .await;

    // First socket of user 2 leaves: no member_removed yet.
    drop(b1);
    a.expect_no_event("pusher_internal:member_removed", Duration::from_millis(500))
        .await;
    // Last socket leaves (by unsubscribing): member_removed.
    b2.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    let removed = a.expect_event("pusher_internal:member_removed").await;
    assert_eq!(data(&removed)["user_id"], "2");
}

#[tokio::test]
async fn presence_limits_and_bad_channel_data() {
    let b = spawn();
    let url = b.ws_url("key-small");
    let join = |user: &'static str, info: Value| {
        let url = url.clone();
        async move {
            let mut c = WsClient::connect(&url).await;
            let cd = json!({"user_id": user, "user_info": info}).to_string();
            let auth = channel_auth(
                "key-small",
                "secret-small",
                &c.socket_id,
                "presence-x",
                Some(&cd),
            );
            let r = c
                .subscribe(json!({"channel": "presence-x", "auth": auth, "channel_data": cd}))
                .await;
            (c, r)
        }
    };
    let (_c1, r1) = join("1", json!({})).await;
    let (_c2, r2) = join("2", json!({})).await;
    assert_eq!(r1["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(r2["event"], "pusher_internal:subscription_succeeded");
    let (_c3, r3) = join("3", json!({})).await;
    assert_eq!(r3["data"]["type"], "LimitReached");
    // An existing member's second socket still fits.
    let (_c4, r4) = join("2", json!({})).await;
    assert_eq!(r4["event"], "pusher_internal:subscription_succeeded");
    let (_c5, r5) = join("1", json!({"name": "x".repeat(64)})).await;
    assert_eq!(r5["data"]["type"], "LimitReached");

    let mut c = WsClient::connect(&url).await;
    let cd = r#"{"no_user_id":1}"#;
    let auth = channel_auth(
        "key-small",
        "secret-small",
        &c.socket_id,
        "presence-y",
        Some(cd),
    );
    let r = c
        .subscribe(json!({"channel": "presence-y", "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(r["data"]["status"], 400);
}

#[tokio::test]
async fn client_events_reach_others_not_the_sender() {
    let b = spawn();
    let mut a = client(&b).await;
    let mut c = client(&b).await;
    join_presence(&mut a, "presence-chat", "1").await;
    join_presence(&mut c, "presence-chat", "2").await;
    a.send(
        &json!({"event": "client-typing", "channel": "presence-chat", "data": {"typing": true}}),
    )
    .await;
    let got = c.expect_event("client-typing").await;
    assert_eq!(got["user_id"], "1");
    assert_eq!(data(&got)["typing"], true);
    a.expect_no_event("client-typing", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn client_event_refusals_use_4301_and_keep_the_socket() {
    let b = spawn();
    let mut a = client(&b).await;
    a.subscribe(json!({"channel": "public-x"})).await;
    let send = |ch: &str, ev: &str, d: Value| json!({"event": ev, "channel": ch, "data": d});
    // Public channel, unsubscribed channel, encrypted channel, oversize, non client- name.
    let auth = channel_auth(KEY, SECRET, &a.socket_id, "private-encrypted-x", None);
    a.subscribe(json!({"channel": "private-encrypted-x", "auth": auth}))
        .await;
    for frame in [
        send("public-x", "client-a", json!({})),
        send("private-never", "client-a", json!({})),
        send("private-encrypted-x", "client-a", json!({})),
        send("public-x", "bogus", json!({})),
    ] {
        a.send(&frame).await;
        let e = a.expect_event("pusher:error").await;
        assert_eq!(e["data"]["code"], 4301, "{frame}");
    }
    let auth = channel_auth(KEY, SECRET, &a.socket_id, "private-y", None);
    a.subscribe(json!({"channel": "private-y", "auth": auth}))
        .await;
    a.send(&send("private-y", "client-big", json!("x".repeat(11_000))))
        .await;
    assert_eq!(a.expect_event("pusher:error").await["data"]["code"], 4301);
    // Rate limit (5/s for this app): a burst of 20 gets refusals.
    for _ in 0..20 {
        a.send(&send("private-y", "client-fast", json!({}))).await;
    }
    assert_eq!(a.expect_event("pusher:error").await["data"]["code"], 4301);
    a.send(&json!({"event": "pusher:ping", "data": {}})).await;
    a.expect_event("pusher:pong").await;

    let mut n = WsClient::connect(&b.ws_url("key-noclient")).await;
    let auth = channel_auth(
        "key-noclient",
        "secret-noclient",
        &n.socket_id,
        "private-z",
        None,
    );
    n.subscribe(json!({"channel": "private-z", "auth": auth}))
        .await;
    n.send(&send("private-z", "client-a", json!({}))).await;
    assert_eq!(n.expect_event("pusher:error").await["data"]["code"], 4301);
}

#[tokio::test]
async fn encrypted_channel_relays_data_untouched() {
    let b = spawn();
    let mut a = client(&b).await;
    let auth = channel_auth(KEY, SECRET, &a.socket_id, "private-encrypted-s", None);
    a.subscribe(json!({"channel": "private-encrypted-s", "auth": auth}))
        .await;
    let payload = r#"{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}"#;
    assert_eq!(
        api(&b)
            .trigger(&["private-encrypted-s"], "secret", payload)
            .await
            .status,
        200
    );
    let got = a.expect_event("secret").await;
    assert_eq!(got["data"], payload);
}

#[tokio::test]
async fn cache_channel_replays_the_last_event_or_sends_a_miss() {
    let b = spawn();
    let mut a = client(&b).await;
    a.subscribe(json!({"channel": "cache-prices"})).await;
    a.expect_event("pusher:cache_miss").await;
    api(&b).trigger(&["cache-prices"], "price", "1").await;
    api(&b).trigger(&["cache-prices"], "price", "2").await;
    let mut late = client(&b).await;
    late.subscribe(json!({"channel": "cache-prices"})).await;
    let replay = late.expect_event("price").await;
    assert_eq!(replay["data"], "2");
    let info = api(&b)
        .call("GET", "/channels/cache-prices", &[("info", "cache")], "")
        .await;
    assert_eq!(info.json["cache"]["data"], "2");
    assert!(info.json["cache"]["ttl"].as_u64().unwrap() > 1700);
}

#[tokio::test]
async fn server_to_user_channel_is_only_for_that_user() {
    let b = spawn();
    let mut a = client(&b).await;
    let r = a.subscribe(json!({"channel": "#server-to-user-7"})).await;
    assert_eq!(r["event"], "pusher:subscription_error");
    let user_data = r#"{"id":"7"}"#;
    let auth = vestnik_protocol::auth::sign_user(KEY, SECRET, &a.socket_id, user_data);
    a.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    let ok = a.expect_event("pusher:signin_success").await;
    assert_eq!(ok["data"]["user_data"], user_data);
    let r = a.subscribe(json!({"channel": "#server-to-user-7"})).await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded");
    let r = a.subscribe(json!({"channel": "#server-to-user-8"})).await;
    assert_eq!(r["event"], "pusher:subscription_error");
    api(&b).trigger(&["#server-to-user-7"], "hello", "{}").await;
    a.expect_event("hello").await;
}

#[tokio::test]
async fn terminate_finds_a_user_whose_id_is_percent_encoded_in_the_path() {
    let b = spawn();
    let mut a = client(&b).await;
    let user_data = r#"{"id":"user@x y"}"#;
    let auth = vestnik_protocol::auth::sign_user(KEY, SECRET, &a.socket_id, user_data);
    a.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    a.expect_event("pusher:signin_success").await;
    let r = api(&b)
        .call(
            "POST",
            "/users/user%40x%20y/terminate_connections",
            &[],
            "{}",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (code, _) = a.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "the decoded id named the signed-in user");
}

#[tokio::test]
async fn bad_signin_closes_with_4009() {
    let b = spawn();
    let mut a = client(&b).await;
    a.send(&json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:00"), "user_data": "{\"id\":\"1\"}"}})).await;
    let (code, frames) = a.expect_close(WAIT).await;
    assert_eq!(code, Some(4009));
    assert_eq!(frames.last().unwrap()["data"]["code"], 4009);
}

#[tokio::test]
async fn watchlist_reports_online_and_offline() {
    let b = spawn();
    let signin = |c: &mut WsClient, id: &str, watch: &[&str]| {
        let ud = json!({"id": id, "watchlist": watch}).to_string();
        let auth = vestnik_protocol::auth::sign_user(KEY, SECRET, &c.socket_id, &ud);
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": ud}})
    };
    let mut watcher = client(&b).await;
    let f = signin(&mut watcher, "1", &["2"]);
    watcher.send(&f).await;
    let initial = watcher
        .expect_event("pusher_internal:watchlist_events")
        .await;
    assert_eq!(data(&initial)["events"][0]["name"], "offline");
    let mut two = client(&b).await;
    let f = signin(&mut two, "2", &[]);
    two.send(&f).await;
    let online = watcher
        .expect_event("pusher_internal:watchlist_events")
        .await;
    assert_eq!(
        data(&online)["events"],
        json!([{"name": "online", "user_ids": ["2"]}])
    );
    drop(two);
    let offline = watcher
        .expect_event("pusher_internal:watchlist_events")
        .await;
    assert_eq!(
        data(&offline)["events"],
        json!([{"name": "offline", "user_ids": ["2"]}])
    );
}

#[tokio::test]
async fn malformed_frames_get_4300_and_the_socket_keeps_working() {
    let b = spawn();
    let mut a = client(&b).await;
    for bad in [
        "not json",
        "[]",
        "{\"event\":42}",
        "{\"event\":\"pusher:nope\"}",
        "{\"event\":\"pusher:subscribe\",\"data\":7}",
    ] {
        a.send_raw(Message::text(bad)).await;
        let e = a.expect_event("pusher:error").await;
        assert_eq!(e["data"]["code"], 4300, "{bad}");
    }
    a.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(a.expect_event("pusher:error").await["data"]["code"], 4300);
    let r = a.subscribe(json!({"channel": "still-fine"})).await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn oversized_message_gets_an_error_and_a_close_without_touching_others() {
    let b = spawn_with_server("max_message_bytes = 4096");
    let mut other = client(&b).await;
    other.subscribe(json!({"channel": "c"})).await;
    let mut a = client(&b).await;
    a.send_raw(Message::text("x".repeat(10_000))).await;
    let (code, frames) = a.expect_close(WAIT).await;
    assert_eq!(code, Some(4300));
    assert_eq!(frames[0]["data"]["code"], 4300);
    api(&b).trigger(&["c"], "still", "1").await;
    other.expect_event("still").await;
}

#[tokio::test]
async fn slow_consumer_is_closed_with_4100_and_others_get_everything() {
    // A long write timeout, so that only the full outbox can end the socket (a stalled write is
    // tested in slow_clients.rs).
    let b = spawn_with_server("outbox_capacity = 16\nwrite_timeout_ms = 60000");
    // A socket that never reads: the kernel buffers fill, then its outbox, then it is closed.
    let mut slow = WsClient::connect(&b.ws_url(KEY)).await;
    slow.subscribe(json!({"channel": "firehose"})).await;
    let mut fast = client(&b).await;
    fast.subscribe(json!({"channel": "firehose"})).await;
    let payload = "y".repeat(9_000);
    let total = 600;
    let mut received = 0;
    for i in 0..total {
        let r = api(&b).trigger(&["firehose"], "e", &payload).await;
        assert_eq!(r.status, 200, "trigger {i}");
        // Keep the fast socket drained so only the slow one backs up.
        while let Some(Received::Json(v)) = fast.recv_within(Duration::from_millis(1)).await {
            if v["event"] == "e" {
                received += 1;
            }
        }
    }
    while received < total {
        match fast.recv_within(WAIT).await {
            Some(Received::Json(v)) if v["event"] == "e" => received += 1,
            Some(Received::Json(_)) => {}
            other => panic!("fast socket lost events at {received}: {other:?}"),
        }
    }
    let (code, _) = slow.expect_close(Duration::from_secs(20)).await;
    assert_eq!(code, Some(4100));
}
