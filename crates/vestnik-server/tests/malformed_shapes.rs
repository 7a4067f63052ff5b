//! Frames of the wrong JSON shape over a real socket (issue 13, holes 2 and 4): an array is never a
//! message, never a message's `data`, never `channel_data` or `user_data`; data nested deeper than
//! the protocol's limit is refused at the door instead of reaching a roster as `{}`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use vestnik_protocol::limits::MAX_JSON_DEPTH;

/// How long a refused frame is given to (wrongly) produce its effect.
const QUIET: Duration = Duration::from_millis(300);

async fn client(b: &BrokerProcess) -> WsClient {
    WsClient::connect(&b.ws_url(KEY)).await
}

/// Sends `text` as it is and expects `pusher:error` 4300 with the socket left open: the next
/// frame after it is the error, and a real ping afterwards still gets its pong.
async fn expect_refused(c: &mut WsClient, text: &str) {
    c.send_raw(Message::text(text)).await;
    let error = c.expect_event("pusher:error").await;
    assert_eq!(error["data"]["code"], 4300, "{text}: {error}");
    c.send(&json!({"event": "pusher:ping", "data": {}})).await;
    match c.recv_within(WAIT).await {
        Some(Received::Json(v)) => assert_eq!(v["event"], "pusher:pong", "{text}: then {v}"),
        other => panic!("{text}: no pong after the refusal: {other:?}"),
    }
}

/// `user_info` made of `depth` nested arrays.
fn deep_info(depth: usize) -> Value {
    serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
        .unwrap_or(Value::Null)
}

fn deep_text(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

#[tokio::test]
async fn arrays_are_not_messages() {
    let b = spawn();
    let mut c = client(&b).await;
    for text in [
        r#"["pusher:ping"]"#,
        r#"["pusher:subscribe",null,{"channel":"x"}]"#,
        r#"{"event":"pusher:subscribe","data":["x"]}"#,
        r#"{"event":"pusher:subscribe","data":"[\"x\"]"}"#,
        r#"{"event":"pusher:unsubscribe","data":["x"]}"#,
    ] {
        expect_refused(&mut c, text).await;
    }
    // None of them subscribed: an event on "x" does not arrive, while one on a channel the
    // socket really joined does.
    let ok = c.subscribe(json!({"channel": "y"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let r = api(&b).trigger(&["x"], "on-x", "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(&b).trigger(&["y"], "on-y", "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = c.expect_event("on-y").await;
    assert_eq!(got["channel"], "y");
    c.expect_no_event("on-x", QUIET).await;
}

#[tokio::test]
async fn array_channel_data_is_refused_on_the_channel() {
    let b = spawn();
    let mut c = client(&b).await;
    for cd in [r#"["fred"]"#, r#"["fred",{"name":"F"}]"#] {
        let auth = channel_auth(KEY, SECRET, &c.socket_id, "presence-shapes", Some(cd));
        let r = c
            .subscribe(json!({"channel": "presence-shapes", "auth": auth, "channel_data": cd}))
            .await;
        assert_eq!(r["event"], "pusher:subscription_error", "{cd}: {r}");
        assert_eq!(r["data"]["type"], "InvalidChannel", "{cd}");
        assert_eq!(r["data"]["status"], 400, "{cd}");
    }
}

#[tokio::test]
async fn array_user_data_fails_the_signin() {
    let b = spawn();
    let mut c = client(&b).await;
    let user_data = r#"["7",{"name":"seven"}]"#;
    let auth = vestnik_protocol::auth::sign_user(KEY, SECRET, &c.socket_id, user_data);
    c.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    let (code, frames) = c.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "{frames:?}");
    assert!(
        frames.iter().all(|f| f["event"] != "pusher:signin_success"),
        "{frames:?}"
    );
}

/// Hole 4: the joiner used to see `{}` for its own deep `user_info` while the others got the real
/// value. Such channel data is refused at the door now, and nobody hears of a member.
#[tokio::test]
async fn deep_user_info_is_refused_not_replaced() {
    let b = spawn();
    let mut first = client(&b).await;
    let cd = json!({"user_id": "1", "user_info": {"name": "one"}}).to_string();
    let auth = channel_auth(KEY, SECRET, &first.socket_id, "presence-deep", Some(&cd));
    let ok = first
        .subscribe(json!({"channel": "presence-deep", "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    let mut deep = client(&b).await;
    // 200 levels in 400 bytes: under the 1 KB user_info limit, over serde_json's 127.
    let cd = format!(r#"{{"user_id":"2","user_info":{}}}"#, deep_text(200));
    let auth = channel_auth(KEY, SECRET, &deep.socket_id, "presence-deep", Some(&cd));
    let r = deep
        .subscribe(json!({"channel": "presence-deep", "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(r["event"], "pusher:subscription_error", "{r}");
    assert_eq!(r["data"]["type"], "InvalidChannel");
    assert_eq!(r["data"]["status"], 400);
    first
        .expect_no_event("pusher_internal:member_added", QUIET)
        .await;

    // Up to the limit, every member sees the same info, the joiner included.
    let mut fits = client(&b).await;
    let info = deep_info(MAX_JSON_DEPTH - 1);
    assert!(!info.is_null());
    let cd = json!({"user_id": "3", "user_info": info}).to_string();
    let auth = channel_auth(KEY, SECRET, &fits.socket_id, "presence-deep", Some(&cd));
    let r = fits
        .subscribe(json!({"channel": "presence-deep", "auth": auth, "channel_data": cd}))
        .await;
    assert_eq!(r["event"], "pusher_internal:subscription_succeeded", "{r}");
    assert_eq!(data(&r)["presence"]["hash"]["3"], info);
    let added = first.expect_event("pusher_internal:member_added").await;
    assert_eq!(data(&added)["user_info"], info);
}

/// The same door for a signed-in user's `user_info`, which a presence join without
/// `channel_data` would use.
#[tokio::test]
async fn deep_user_data_fails_the_signin() {
    let b = spawn();
    let mut c = client(&b).await;
    let user_data = format!(r#"{{"id":"9","user_info":{}}}"#, deep_text(200));
    let auth = vestnik_protocol::auth::sign_user(KEY, SECRET, &c.socket_id, &user_data);
    c.send(&json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    let (code, frames) = c.expect_close(WAIT).await;
    assert_eq!(code, Some(4009), "{frames:?}");
}
