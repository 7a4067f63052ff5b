//! Apps in PostgreSQL, live on every node (issue 15): two nodes on Redis share one app database. An
//! app created through one node's admin API accepts sockets and triggers on both within a second;
//! a rotated secret keeps working for its grace and is refused after it, for API signatures and
//! channel auth alike; disabling closes the app's sockets on both nodes with 4003 (API: 403);
//! deleting closes them with 4001. Also: the admin API's refusals (no token: 404; wrong token: 401,
//! then 429; file store: 409; bad input: 4xx with a JSON `error`).

mod apps_support;
mod common;

use std::time::{Duration, Instant};

use apps_support::{admin, admin_as, field, node, TestDb, TOKEN};
use common::*;
use serde_json::{json, Value};

/// Connects to `node` with `key` once the node serves the app: `None` until then.
async fn try_socket(b: &BrokerProcess, key: &str) -> Option<WsClient> {
    let mut c = WsClient::try_connect(&b.ws_url(key), &[]).await.ok()?;
    match c.recv_within(Duration::from_secs(2)).await {
        Some(Received::Json(v)) if v["event"] == "pusher:connection_established" => {
            let data: Value = serde_json::from_str(v["data"].as_str()?).ok()?;
            c.socket_id = data["socket_id"].as_str()?.to_owned();
            Some(c)
        }
        _ => None,
    }
}

/// Waits until `node` serves `key`, within `limit`, and returns the socket and how long it took.
async fn socket_within(b: &BrokerProcess, key: &str, limit: Duration) -> (WsClient, Duration) {
    let start = Instant::now();
    loop {
        if let Some(c) = try_socket(b, key).await {
            return (c, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "node on port {} did not serve {key} within {limit:?}",
            b.port
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cluster_toml(prefix: &str) -> String {
    format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{prefix}\"\n",
        redis_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_created_rotated_disabled_and_deleted_live_on_two_nodes() {
    require_redis();
    let db = TestDb::create().await;
    let cluster = cluster_toml(&apps_support::unique("apps_live"));
    let a = node(&db.url, &cluster);
    let b = node(&db.url, &cluster);

    // Create through node A; both nodes serve it within a second.
    let created = admin(
        a.port,
        "POST",
        "/admin/apps",
        r#"{"id": "4242", "key": "live-key", "limits": {"max_event_bytes": 2000}}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = field(&created.json, "secret");
    assert_eq!(created.json["limits"]["max_event_bytes"], 2000);
    assert_eq!(
        created.json["limits"]["max_batch_events"], 10,
        "defaults kept"
    );
    let (mut on_a, took_a) = socket_within(&a, "live-key", Duration::from_secs(1)).await;
    let (mut on_b, took_b) = socket_within(&b, "live-key", Duration::from_secs(1)).await;
    eprintln!("new app served: node A after {took_a:?}, node B after {took_b:?}");
    for c in [&mut on_a, &mut on_b] {
        let ok = c.subscribe(json!({"channel": "orders"})).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    // A trigger on either node reaches the sockets of both.
    for port in [a.port, b.port] {
        let api = Api::new(port, "4242", "live-key", &secret);
        let sent = api.trigger(&["orders"], "placed", "{\"n\":1}").await;
        assert_eq!(sent.status, 200, "{}", sent.body);
        for c in [&mut on_a, &mut on_b] {
            let ev = c.expect_event("placed").await;
            assert_eq!(ev["channel"], "orders");
        }
    }

    // Rotate with a 3 s grace: the new secret works on both nodes, and so does the old one.
    let rotated = admin(
        b.port,
        "POST",
        "/admin/apps/4242/rotate-secret",
        r#"{"grace_seconds": 3}"#,
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = field(&rotated.json, "secret");
    assert_ne!(new_secret, secret);
    for port in [a.port, b.port] {
        let fresh = Api::new(port, "4242", "live-key", &new_secret);
        wait_until(
            "the new secret on every node",
            Duration::from_secs(1),
            || {
                let fresh = fresh.clone();
                async move { fresh.trigger(&["orders"], "rotated", "{}").await.status == 200 }
            },
        )
        .await;
        let old = Api::new(port, "4242", "live-key", &secret);
        let during = old.trigger(&["orders"], "old-during-grace", "{}").await;
        assert_eq!(
            during.status, 200,
            "old secret during the grace: {}",
            during.body
        );
    }
    // Channel auth signed with the old secret, on a socket that connected before the rotation.
    let auth = channel_auth("live-key", &secret, &on_b.socket_id, "private-a", None);
    let ok = on_b
        .subscribe(json!({"channel": "private-a", "auth": auth}))
        .await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    // After the grace the old secret is refused everywhere; the new one still works.
    for port in [a.port, b.port] {
        let old = Api::new(port, "4242", "live-key", &secret);
        wait_until(
            "the old secret refused after the grace",
            Duration::from_secs(8),
            || {
                let old = old.clone();
                async move { old.trigger(&["orders"], "late", "{}").await.status == 401 }
            },
        )
        .await;
        let fresh = Api::new(port, "4242", "live-key", &new_secret);
        assert_eq!(fresh.trigger(&["orders"], "ok", "{}").await.status, 200);
    }
    let late = channel_auth("live-key", &secret, &on_a.socket_id, "private-b", None);
    let refused = on_a
        .subscribe(json!({"channel": "private-b", "auth": late}))
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    let good = channel_auth("live-key", &new_secret, &on_a.socket_id, "private-b", None);
    let ok = on_a
        .subscribe(json!({"channel": "private-b", "auth": good}))
        .await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    // Disable: the sockets on both nodes close with 4003, the API answers 403, new sockets 4003.
    let disabled = admin(a.port, "POST", "/admin/apps/4242/disable", "").await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert_eq!(disabled.json["enabled"], false);
    for c in [&mut on_a, &mut on_b] {
        let (code, _) = c.expect_close(Duration::from_secs(1)).await;
        assert_eq!(code, Some(4003));
    }
    let off = Api::new(b.port, "4242", "live-key", &new_secret);
    assert_eq!(off.trigger(&["orders"], "x", "{}").await.status, 403);
    let mut refused = WsClient::connect_raw(&b.ws_url("live-key")).await;
    let (code, _) = refused.expect_close(Duration::from_secs(2)).await;
    assert_eq!(code, Some(4003));

    // Enable, reconnect, delete: the sockets close with 4001 and the API answers 404.
    let enabled = admin(b.port, "POST", "/admin/apps/4242/enable", "").await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let (mut again_a, _) = socket_within(&a, "live-key", Duration::from_secs(1)).await;
    let (mut again_b, _) = socket_within(&b, "live-key", Duration::from_secs(1)).await;
    let deleted = admin(a.port, "DELETE", "/admin/apps/4242", "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    for c in [&mut again_a, &mut again_b] {
        let (code, _) = c.expect_close(Duration::from_secs(1)).await;
        assert_eq!(code, Some(4001));
    }
    let gone = Api::new(a.port, "4242", "live-key", &new_secret);
    assert_eq!(gone.trigger(&["orders"], "x", "{}").await.status, 404);
    let shown = admin(a.port, "GET", "/admin/apps/4242", "").await;
    assert_eq!(shown.status, 404);
    assert!(shown.json["error"].is_string(), "{}", shown.body);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_clearly() {
    let db = TestDb::create().await;
    let n = node(&db.url, "[admin]\nfailed_attempts = 3\n");
    // Bad input: 4xx with a JSON error naming the field.
    for (method, path, body, status) in [
        ("POST", "/admin/apps", r#"{"id": "a/b"}"#, 422),
        ("POST", "/admin/apps", r#"{"limits": {"nope": 1}}"#, 422),
        ("POST", "/admin/apps", r#"{"colour": "red"}"#, 400),
        ("POST", "/admin/apps", "{not json", 400),
        ("GET", "/admin/apps/missing", "", 404),
        ("PUT", "/admin/apps/x", "", 404),
    ] {
        let r = admin(n.port, method, path, body).await;
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.body);
        assert!(r.json["error"].is_string(), "{method} {path}: {}", r.body);
    }
    // Created with a chosen key twice: a conflict.
    let first = admin(n.port, "POST", "/admin/apps", r#"{"key": "dup-key"}"#).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = admin(n.port, "POST", "/admin/apps", r#"{"key": "dup-key"}"#).await;
    assert_eq!(second.status, 409, "{}", second.body);
    // A patch merges into the stored group.
    let id = field(&first.json, "id");
    let patched = admin(
        n.port,
        "PATCH",
        &format!("/admin/apps/{id}"),
        r#"{"limits": {"api_rate_limit": 7}, "options": {"client_events": false}}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json["limits"]["api_rate_limit"], 7);
    assert_eq!(patched.json["limits"]["max_batch_events"], 10);
    assert_eq!(patched.json["options"]["client_events"], false);
    assert!(
        patched.json.get("secret").is_none(),
        "no secret in an update"
    );
    let too_long = admin(
        n.port,
        "POST",
        &format!("/admin/apps/{id}/rotate-secret"),
        r#"{"grace_seconds": 99999999}"#,
    )
    .await;
    assert_eq!(too_long.status, 422, "{}", too_long.body);
    let list = admin(n.port, "GET", "/admin/apps", "").await;
    assert_eq!(list.json["apps"].as_array().map(Vec::len), Some(1));
    assert!(
        !list.body.contains(&field(&first.json, "secret")),
        "list has no secret"
    );
    let usage = admin(n.port, "GET", &format!("/admin/apps/{id}/usage"), "").await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert!(usage.json["hours"].is_array());
    // Wrong tokens: 401 three times, then 429 even with the right one, until the window ends.
    for _ in 0..3 {
        let r = admin_as(n.port, "wrong", "GET", "/admin/apps", "").await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let limited = admin_as(n.port, TOKEN, "GET", "/admin/apps", "").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    assert!(
        !n.drain_logs().iter().any(|l| l.contains(TOKEN)),
        "the token never logs"
    );
}

#[tokio::test]
async fn without_a_token_or_a_database_the_admin_api_says_so() {
    // No token: the routes do not exist.
    let plain = spawn();
    let r = admin(plain.port, "GET", "/admin/apps", "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    // A token but apps from the file: 409 with what to do instead.
    let file = BrokerProcess::spawn_with(bin(), APPS, &[("VESTNIK_ADMIN_TOKEN", TOKEN)]);
    let r = admin(file.port, "GET", "/admin/apps", "").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(field(&r.json, "error").contains("--apps-url"), "{}", r.body);
}
