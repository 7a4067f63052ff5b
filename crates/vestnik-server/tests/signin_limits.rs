//! What a signed-in user may carry, over a real socket (issue 13, holes 1 and 5): its `user_info` is
//! bounded like presence `channel_data`'s, since a presence join without `channel_data` makes it a
//! member's; and its watchlist counts each user once.

mod common;

use common::*;
use serde_json::{json, Value};

/// The app with a 32-byte `user_info` limit (see `common::APPS`).
const SMALL_KEY: &str = "key-small";
const SMALL_SECRET: &str = "secret-small";

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

/// Sends a validly signed `pusher:signin` for `user_data` on `c`.
async fn send_signin(c: &mut WsClient, key: &str, secret: &str, user_data: &str) {
    let auth = vestnik_protocol::auth::sign_user(key, secret, &c.socket_id, user_data);
    c.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
}

/// Sends a presence subscribe without `channel_data`, as a signed-in pusher-js socket does.
async fn send_presence_join_as_signed_in(c: &mut WsClient, key: &str, secret: &str, channel: &str) {
    let auth = channel_auth(key, secret, &c.socket_id, channel, None);
    c.send(&json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
        .await;
}

/// Joins `channel` with `channel_data` for `user`.
async fn join_presence(c: &mut WsClient, key: &str, secret: &str, channel: &str, user: &str) {
    let cd = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let auth = channel_auth(key, secret, &c.socket_id, channel, Some(&cd));
    let r = c
        .subscribe(json!({"channel": channel, "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded", "{r}");
}

/// Reads `c`'s frames up to its next `member_added` and asserts that it is `user`'s: no other
/// member was added before it.
async fn expect_next_member_added(c: &mut WsClient, user: &str) {
    let added = c.expect_event("pusher_internal:member_added").await;
    assert_eq!(
        data(&added)["user_id"],
        user,
        "another member was added first ({} bytes of data)",
        added["data"].as_str().map_or(0, str::len)
    );
}

/// The next frame on `c`, which must be a `watchlist_events`; returns its `events`.
async fn next_watchlist(c: &mut WsClient) -> Value {
    match c.recv_within(WAIT).await {
        Some(Received::Json(v)) => {
            assert_eq!(v["event"], "pusher_internal:watchlist_events", "{v}");
            data(&v)["events"].clone()
        }
        other => panic!("no watchlist_events within {WAIT:?}: {other:?}"),
    }
}

/// Pings and asserts that the very next frame is the pong: nothing queued for `c` before the ping
/// (such as a second copy of the last watchlist event) is still on its way, and `c` is connected.
async fn expect_nothing_queued(c: &mut WsClient, what: &str) {
    c.send(&json!({"event": "pusher:ping", "data": {}})).await;
    match c.recv_within(WAIT).await {
        Some(Received::Json(v)) => assert_eq!(v["event"], "pusher:pong", "{what}: then {v}"),
        other => panic!("{what}: no pong: {other:?}"),
    }
}

/// The ids of `channel`'s members, sorted, through the HTTP API.
async fn member_ids(api: &Api, channel: &str) -> Vec<String> {
    let r = api
        .call("GET", &format!("/channels/{channel}/users"), &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ids: Vec<String> = r.json["users"]
        .as_array()
        .expect("users is an array")
        .iter()
        .map(|u| u["id"].as_str().expect("id is a string").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Hole 1: a validly signed sign-in carrying 50 KB of `user_info`, then a presence join without
/// `channel_data`, joined with the 50 KB member and sent every member a 50 KB `member_added`. The
/// sign-in is refused now (`pusher:error` 4009 and close 4009, as for other bad user data), and
/// the members hear of nobody but the next real joiner.
#[tokio::test]
async fn oversize_user_info_fails_the_signin_and_never_reaches_a_member() {
    let b = spawn();
    let channel = "presence-room";
    let mut member = WsClient::connect(&b.ws_url(KEY)).await;
    join_presence(&mut member, KEY, SECRET, channel, "member").await;

    let mut attacker = WsClient::connect(&b.ws_url(KEY)).await;
    let user_data = json!({"id": "big", "user_info": {"bio": "x".repeat(50 * 1024)}}).to_string();
    send_signin(&mut attacker, KEY, SECRET, &user_data).await;
    // Sent before the sign-in's answer, as an impatient client would: the session reads frames in
    // order, so this join is only ever looked at after the sign-in was decided.
    send_presence_join_as_signed_in(&mut attacker, KEY, SECRET, channel).await;
    let (code, frames) = attacker.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "{frames:?}");
    let error = frames.last().expect("a pusher:error before the close");
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4009, "{error}");
    let message = error["data"]["message"].as_str().expect("a message");
    assert!(message.contains("user_info"), "{message}");
    assert!(
        frames.iter().all(|f| f["event"] != "pusher:signin_success"
            && f["event"] != "pusher_internal:subscription_succeeded"),
        "{frames:?}"
    );

    // The next member added is the next real joiner: nothing of the attacker came before it.
    let mut next = WsClient::connect(&b.ws_url(KEY)).await;
    join_presence(&mut next, KEY, SECRET, channel, "next").await;
    expect_next_member_added(&mut member, "next").await;
    assert_eq!(member_ids(&api(&b), channel).await, ["member", "next"]);
}

/// Hole 1, both doors at the app's own limit (32 bytes on the small app): a sign-in's
/// `user_info` of exactly the limit joins presence with it, one byte more is refused with 4009;
/// `channel_data`'s one byte more is a `LimitReached` 403 subscription error, as documented.
#[tokio::test]
async fn user_info_is_bounded_by_the_apps_limit_on_every_door() {
    let b = spawn();
    let url = b.ws_url(SMALL_KEY);
    let channel = "presence-limit";
    // `"` + 30 × x + `"`: 32 bytes of raw JSON.
    let fits = json!("x".repeat(30));
    assert_eq!(fits.to_string().len(), 32);
    let over = json!("x".repeat(31));

    let mut ok = WsClient::connect(&url).await;
    let user_data = json!({"id": "fits", "user_info": fits}).to_string();
    send_signin(&mut ok, SMALL_KEY, SMALL_SECRET, &user_data).await;
    ok.expect_event("pusher:signin_success").await;
    send_presence_join_as_signed_in(&mut ok, SMALL_KEY, SMALL_SECRET, channel).await;
    let joined = ok
        .expect_event("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(data(&joined)["presence"]["hash"]["fits"], fits);

    let mut refused = WsClient::connect(&url).await;
    let user_data = json!({"id": "over", "user_info": over}).to_string();
    send_signin(&mut refused, SMALL_KEY, SMALL_SECRET, &user_data).await;
    let (code, frames) = refused.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "{frames:?}");
    assert_eq!(frames.last().expect("an error")["data"]["code"], 4009);

    let mut by_channel_data = WsClient::connect(&url).await;
    let cd = json!({"user_id": "over", "user_info": over}).to_string();
    let auth = channel_auth(
        SMALL_KEY,
        SMALL_SECRET,
        &by_channel_data.socket_id,
        channel,
        Some(&cd),
    );
    let r = by_channel_data
        .subscribe(json!({"channel": channel, "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(r["event"], "pusher:subscription_error", "{r}");
    assert_eq!(r["data"]["type"], "LimitReached", "{r}");
    assert_eq!(r["data"]["status"], 403, "{r}");

    let small = Api::new(b.port, "small", SMALL_KEY, SMALL_SECRET);
    assert_eq!(member_ids(&small, channel).await, ["fits"]);
}

/// Hole 5: a watchlist repeating one id 100 times got 100 identical `watchlist_events` per sign-in,
/// listed the id 100 times, and about ten changes of the watched user cut the watcher off as a slow
/// consumer. The id is watched once now: one event listing it once, and each of ten online/offline
/// changes arrives exactly once to a watcher that stays connected.
#[tokio::test]
async fn a_repeated_watchlist_id_is_watched_once() {
    let b = spawn();
    let mut watcher = WsClient::connect(&b.ws_url(KEY)).await;
    let user_data = json!({"id": "watcher", "watchlist": vec!["watched"; 100]}).to_string();
    send_signin(&mut watcher, KEY, SECRET, &user_data).await;
    watcher.expect_event("pusher:signin_success").await;
    assert_eq!(
        next_watchlist(&mut watcher).await,
        json!([{"name": "offline", "user_ids": ["watched"]}])
    );
    expect_nothing_queued(&mut watcher, "after the sign-in's watchlist state").await;

    for change in 0..10 {
        let mut watched = WsClient::connect(&b.ws_url(KEY)).await;
        send_signin(&mut watched, KEY, SECRET, r#"{"id":"watched"}"#).await;
        watched.expect_event("pusher:signin_success").await;
        assert_eq!(
            next_watchlist(&mut watcher).await,
            json!([{"name": "online", "user_ids": ["watched"]}]),
            "change {change}"
        );
        expect_nothing_queued(&mut watcher, &format!("after online {change}")).await;
        drop(watched);
        assert_eq!(
            next_watchlist(&mut watcher).await,
            json!([{"name": "offline", "user_ids": ["watched"]}]),
            "change {change}"
        );
        expect_nothing_queued(&mut watcher, &format!("after offline {change}")).await;
    }
}
