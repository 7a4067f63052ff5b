//! The signed HTTP API: every endpoint, every refusal, and the SDK quirks (Python's body_md5 on GET and
//! bare terminate path, trigger by key).

mod common;

use common::*;
use serde_json::json;
use vestnik_protocol::auth;

#[tokio::test]
async fn trigger_delivers_and_excludes_socket_id() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    a.subscribe(json!({"channel": "orders"})).await;
    c.subscribe(json!({"channel": "orders"})).await;
    let body = json!({"name": "order:status", "channel": "orders", "data": "{\"id\":1}", "socket_id": a.socket_id}).to_string();
    let r = api(&b).call("POST", "/events", &[], &body).await;
    assert_eq!((r.status, r.json.clone()), (200, json!({})));
    let got = c.expect_event("order:status").await;
    assert_eq!(got["data"], "{\"id\":1}");
    assert_eq!(got["channel"], "orders");
    a.expect_no_event("order:status", std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn trigger_info_reports_counts() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    a.subscribe(json!({"channel": "news"})).await;
    let cd = r#"{"user_id":"u1"}"#;
    let auth = channel_auth(KEY, SECRET, &a.socket_id, "presence-p", Some(cd));
    a.subscribe(json!({"channel": "presence-p", "auth": auth, "channel_data": cd}))
        .await;
    let body = json!({"name": "x", "channels": ["news", "presence-p"], "data": "1", "info": "user_count,subscription_count"}).to_string();
    let r = api(&b).call("POST", "/events", &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["channels"]["news"], json!({"subscription_count": 1}));
    assert_eq!(
        r.json["channels"]["presence-p"],
        json!({"user_count": 1, "subscription_count": 1})
    );
}

#[tokio::test]
async fn batch_events_publish_all_or_nothing() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    a.subscribe(json!({"channel": "b1"})).await;
    let body = json!({"batch": [
        {"name": "one", "channel": "b1", "data": "1"},
        {"name": "two", "channel": "b1", "data": "2", "info": "subscription_count"},
    ]})
    .to_string();
    let r = api(&b).call("POST", "/batch_events", &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, json!({"batch": [{}, {"subscription_count": 1}]}));
    assert_eq!(a.expect_event("one").await["data"], "1");
    assert_eq!(a.expect_event("two").await["data"], "2");
    let bad = json!({"batch": [{"name": "three", "channel": "b1", "data": "3"}, {"name": "four", "channel": "bad name", "data": "4"}]}).to_string();
    let r = api(&b).call("POST", "/batch_events", &[], &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.json["error"].as_str().unwrap().contains("batch[1]"));
    a.expect_no_event("three", std::time::Duration::from_millis(300))
        .await;
    let many: Vec<_> = (0..11)
        .map(|i| json!({"name": "n", "channel": "b1", "data": i.to_string()}))
        .collect();
    let r = api(&b)
        .call(
            "POST",
            "/batch_events",
            &[],
            &json!({"batch": many}).to_string(),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn refusals_have_statuses_and_json_errors() {
    let b = spawn();
    let good = api(&b);
    let cases: Vec<(HttpResponse, u16)> = vec![
        (
            Api {
                secret: "wrong".into(),
                ..good.clone()
            }
            .trigger(&["a"], "e", "1")
            .await,
            401,
        ),
        (
            Api {
                app_id: "ghost".into(),
                ..good.clone()
            }
            .trigger(&["a"], "e", "1")
            .await,
            404,
        ),
        (
            Api::new(b.port, "off", "key-off", "secret-off")
                .trigger(&["a"], "e", "1")
                .await,
            403,
        ),
        (good.trigger(&["a"], "e", &"x".repeat(10_241)).await, 413),
        (good.trigger(&["bad name"], "e", "1").await, 400),
        (good.trigger(&[], "e", "1").await, 400),
        (good.call("POST", "/events", &[], "{not json").await, 400),
        (
            good.call("POST", "/events", &[], r#"{"channels":["a"],"data":"1"}"#)
                .await,
            400,
        ),
        (
            good.call("POST", "/events", &[], r#"{"name":"e","channels":["a"]}"#)
                .await,
            400,
        ),
        (
            good.call(
                "POST",
                "/events",
                &[],
                r#"{"name":"e","channel":"a","data":"1","socket_id":"x"}"#,
            )
            .await,
            400,
        ),
        (
            good.call("GET", "/channels/orders/users", &[], "").await,
            400,
        ),
        (
            good.call("GET", "/channels", &[("info", "user_count")], "")
                .await,
            400,
        ),
        (good.call("GET", "/nothing", &[], "").await, 404),
    ];
    let too_many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let mut cases = cases;
    cases.push((good.trigger(&refs, "e", "1").await, 400));
    for (i, (r, status)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {}", r.body);
        assert_eq!(r.json["code"], *status, "case {i}: {}", r.body);
        assert!(
            r.json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {i}: {}",
            r.body
        );
    }
    // Unsigned and expired requests.
    let r = raw_http(
        b.port,
        "POST",
        "/apps/main/events",
        r#"{"name":"e","channel":"a","data":"1"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    let body = r#"{"name":"e","channel":"a","data":"1"}"#;
    let q = auth::sign_request(
        KEY,
        SECRET,
        "POST",
        "/apps/main/events",
        &[],
        body.as_bytes(),
        1_000_000,
    );
    let r = raw_http(b.port, "POST", &format!("/apps/main/events?{q}"), body).await;
    assert_eq!(r.status, 401);
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("Timestamp expired"));
}

#[tokio::test]
async fn small_app_limits_apply() {
    let b = spawn();
    let small = Api::new(b.port, "small", "key-small", "secret-small");
    assert_eq!(
        small.trigger(&["a"], "e", &"x".repeat(101)).await.status,
        413
    );
    assert_eq!(
        small.trigger(&["a", "b", "c", "d"], "e", "1").await.status,
        400
    );
    assert_eq!(small.trigger(&["a", "b", "c"], "e", "1").await.status, 200);
}

#[tokio::test]
async fn channel_listing_and_info() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    a.subscribe(json!({"channel": "news"})).await;
    c.subscribe(json!({"channel": "news"})).await;
    for (client, user) in [(&mut a, "1"), (&mut c, "2")] {
        let cd = json!({"user_id": user}).to_string();
        let auth = channel_auth(KEY, SECRET, &client.socket_id, "presence-lobby", Some(&cd));
        client
            .subscribe(json!({"channel": "presence-lobby", "auth": auth, "channel_data": cd}))
            .await;
    }
    let all = api(&b).call("GET", "/channels", &[], "").await;
    assert_eq!(
        all.json,
        json!({"channels": {"news": {}, "presence-lobby": {}}})
    );
    let pres = api(&b)
        .call(
            "GET",
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            "",
        )
        .await;
    assert_eq!(
        pres.json,
        json!({"channels": {"presence-lobby": {"user_count": 2}}})
    );
    let news = api(&b)
        .call(
            "GET",
            "/channels/news",
            &[("info", "subscription_count")],
            "",
        )
        .await;
    assert_eq!(
        news.json,
        json!({"occupied": true, "subscription_count": 2})
    );
    let lobby = api(&b)
        .call(
            "GET",
            "/channels/presence-lobby",
            &[("info", "user_count,subscription_count")],
            "",
        )
        .await;
    assert_eq!(
        lobby.json,
        json!({"occupied": true, "user_count": 2, "subscription_count": 2})
    );
    let empty = api(&b).call("GET", "/channels/nobody", &[], "").await;
    assert_eq!(empty.json, json!({"occupied": false}));
    let users = api(&b)
        .call("GET", "/channels/presence-lobby/users", &[], "")
        .await;
    let mut ids: Vec<String> = users.json["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(
        api(&b)
            .call("GET", "/channels/news", &[("info", "user_count")], "")
            .await
            .status,
        400
    );
    assert_eq!(
        api(&b)
            .call("GET", "/channels/news", &[("info", "cache")], "")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn python_style_get_with_body_md5_and_bare_terminate_path() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    let ud = r#"{"id":"42"}"#;
    let sig = auth::sign_user(KEY, SECRET, &a.socket_id, ud);
    a.send(&json!({"event": "pusher:signin", "data": {"auth": sig, "user_data": ud}}))
        .await;
    a.expect_event("pusher:signin_success").await;
    // GET with body_md5 of the empty body, as the Python SDK signs it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let q = auth::sign_request(
        KEY,
        SECRET,
        "GET",
        "/apps/main/channels",
        &[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")],
        b"",
        now,
    );
    assert_eq!(
        raw_http(b.port, "GET", &format!("/apps/main/channels?{q}"), "")
            .await
            .status,
        200
    );
    // POST /users/{id}/terminate_connections without /apps, found by auth_key.
    let r = api(&b)
        .call_path("POST", "/users/42/terminate_connections", &[], "{}")
        .await;
    assert_eq!((r.status, r.json.clone()), (200, json!({})));
    let (code, frames) = a.expect_close(WAIT).await;
    assert_eq!(code, Some(4009));
    assert_eq!(frames.last().unwrap()["event"], "pusher:error");
}

#[tokio::test]
async fn terminate_under_apps_and_trigger_by_key() {
    let b = spawn();
    let mut a = WsClient::connect(&b.ws_url(KEY)).await;
    a.subscribe(json!({"channel": "k"})).await;
    let by_key = Api::new(b.port, KEY, KEY, SECRET);
    assert_eq!(by_key.trigger(&["k"], "via-key", "1").await.status, 200);
    a.expect_event("via-key").await;
    let ud = r#"{"id":"9"}"#;
    let sig = auth::sign_user(KEY, SECRET, &a.socket_id, ud);
    a.send(&json!({"event": "pusher:signin", "data": {"auth": sig, "user_data": ud}}))
        .await;
    a.expect_event("pusher:signin_success").await;
    let r = api(&b)
        .call("POST", "/users/9/terminate_connections", &[], "{}")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.expect_close(WAIT).await.0, Some(4009));
}
