//! Usage recording and the daily message quota (issue 15), with the real PostgreSQL and two nodes
//! on Redis: the usage rows match what a scripted run sent (API messages received, deliveries,
//! bytes, peak sockets), a daily quota of N messages refuses message N+1 on either node, and, with
//! apps from the config file, usage kept in the data dir survives a restart.

mod apps_support;
mod common;

use std::time::Duration;

use apps_support::{admin, field, node, unique, TestDb, TOKEN};
use common::*;
use serde_json::{json, Value};

/// A `[cluster]` on the shared Redis with fast heartbeats, and a `[usage]` flushing every
/// `flush_ms`.
fn cluster_toml(prefix: &str, flush_ms: u64) -> String {
    format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{prefix}\"\nheartbeat_interval_ms = 100\n\n[usage]\nflush_interval_ms = {flush_ms}\n",
        redis_url()
    )
}

/// A socket of `key` on `b`, once the node serves the app (within 10 s: the change feed is
/// fast, but a loaded CI machine is not).
async fn socket(b: &BrokerProcess, key: &str) -> WsClient {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = WsClient::try_connect(&b.ws_url(key), &[]).await {
            if let Some(Received::Json(v)) = c.recv_within(Duration::from_secs(1)).await {
                if v["event"] == "pusher:connection_established" {
                    return c;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node on port {} did not serve {key}",
            b.port
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The usage route's answer on `port`.
async fn usage(port: u16, id: &str) -> Value {
    let r = admin(port, "GET", &format!("/admin/apps/{id}/usage"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json
}

/// A field summed over the hours of a usage answer (a run may straddle an hour).
fn total(v: &Value, name: &str) -> u64 {
    v["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .map(|h| h[name].as_u64().expect("a count"))
        .sum()
}

/// The largest value of a field over the hours.
fn max(v: &Value, name: &str) -> u64 {
    v["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .map(|h| h[name].as_u64().expect("a count"))
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_match_a_scripted_run_on_two_nodes() {
    require_redis();
    let db = TestDb::create().await;
    let cluster = cluster_toml(&unique("apps_usage"), 200);
    let a = node(&db.url, &cluster);
    let b = node(&db.url, &cluster);
    let created = admin(
        a.port,
        "POST",
        "/admin/apps",
        r#"{"id": "7001", "key": "usage-key"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = field(&created.json, "secret");

    // Two subscribers on node A, one on node B.
    let mut subs = vec![
        socket(&a, "usage-key").await,
        socket(&a, "usage-key").await,
        socket(&b, "usage-key").await,
    ];
    for c in &mut subs {
        let ok = c.subscribe(json!({"channel": "news"})).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    // Five triggers through node A, three through node B; every subscriber gets each.
    let (on_a, on_b) = (5u64, 3u64);
    for (port, n) in [(a.port, on_a), (b.port, on_b)] {
        let api = Api::new(port, "7001", "usage-key", &secret);
        for i in 0..n {
            let sent = api
                .trigger(&["news"], "tick", &format!("{{\"n\":{i}}}"))
                .await;
            assert_eq!(sent.status, 200, "{}", sent.body);
            for c in &mut subs {
                c.expect_event("tick").await;
            }
        }
    }
    let received = on_a + on_b;
    let delivered = received * subs.len() as u64;
    wait_until(
        "the run's usage flushed",
        Duration::from_secs(5),
        || async {
            let u = usage(b.port, "7001").await;
            total(&u, "messages_received") >= received
                && total(&u, "messages_delivered") >= delivered
        },
    )
    .await;
    let u = usage(a.port, "7001").await;
    assert_eq!(total(&u, "messages_received"), received, "{u}");
    assert_eq!(total(&u, "messages_delivered"), delivered, "{u}");
    assert_eq!(
        max(&u, "peak_connections"),
        2,
        "the busiest node's peak: {u}"
    );
    assert_eq!(total(&u, "webhooks_sent"), 0, "{u}");
    // Every frame is the same 99 bytes here: {"event":"tick","channel":"news","data":"{\"n\":0}"}
    // and the cluster-wide position (a 12-digit epoch, offsets 1 to 8).
    let frame = r#"{"event":"tick","channel":"news","data":"{\"n\":0}","position":{"epoch":"0123456789ab","offset":1}}"#
        .len() as u64;
    assert_eq!(frame, 99);
    assert_eq!(total(&u, "bytes_out"), delivered * frame, "{u}");
    // The day's count, as each node sees it, is the same cluster-wide figure.
    let today = received + delivered;
    for port in [a.port, b.port] {
        wait_until(
            "today's count on each node",
            Duration::from_secs(3),
            || async { usage(port, "7001").await["today"]["messages"] == today },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_refuses_message_n_plus_one_on_either_node() {
    require_redis();
    let db = TestDb::create().await;
    // No flush during the test: the count travels in the heartbeats alone.
    let cluster = cluster_toml(&unique("apps_msg_quota"), 600_000);
    let a = node(&db.url, &cluster);
    let b = node(&db.url, &cluster);
    let quota = 6u64;
    let created = admin(
        a.port,
        "POST",
        "/admin/apps",
        &json!({"id": "7002", "key": "mq-key", "quotas": {"max_messages_per_day": quota}})
            .to_string(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = field(&created.json, "secret");
    // Served by both nodes before counting: each learns of the app from the change feed, even
    // the one whose admin API created it.
    drop(socket(&a, "mq-key").await);
    drop(socket(&b, "mq-key").await);
    let api_a = Api::new(a.port, "7002", "mq-key", &secret);
    let api_b = Api::new(b.port, "7002", "mq-key", &secret);
    // No subscriber: each trigger is one message. Half through each node.
    for i in 0..quota {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        let sent = api.trigger(&["quiet"], "e", "{}").await;
        assert_eq!(
            sent.status,
            200,
            "message {} of {quota}: {}",
            i + 1,
            sent.body
        );
    }
    for port in [a.port, b.port] {
        wait_until(
            "both nodes count the quota",
            Duration::from_secs(3),
            || async {
                let today = &usage(port, "7002").await["today"];
                today["messages"] == quota && today["max_messages_per_day"] == quota
            },
        )
        .await;
    }
    for api in [&api_a, &api_b] {
        let refused = api.trigger(&["quiet"], "e", "{}").await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(
            refused.json["error"], "You have exceeded your daily message quota",
            "{}",
            refused.body
        );
    }
    // Raising the quota lets messages through again at once.
    let raised = admin(
        b.port,
        "PATCH",
        "/admin/apps/7002",
        r#"{"quotas": {"max_messages_per_day": 100}}"#,
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    wait_until(
        "the raised quota applied",
        Duration::from_secs(2),
        || async { api_a.trigger(&["quiet"], "e", "{}").await.status == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_usage_survives_a_restart() {
    let dir = std::env::temp_dir().join(unique("vestnik_usage_files"));
    let dir_s = dir.display().to_string();
    let config = "[[apps]]\nid = \"f1\"\nkey = \"f1-key\"\nsecret = \"f1-secret-123\"\nmax_messages_per_day = 1000\n\n[usage]\nflush_interval_ms = 100000\n";
    let env = [
        ("VESTNIK_ADMIN_TOKEN", TOKEN),
        ("VESTNIK_NO_METRICS", "true"),
        ("VESTNIK_USAGE_DIR", dir_s.as_str()),
    ];
    for run in 1..=2u64 {
        let mut b = BrokerProcess::spawn_with(bin(), config, &env);
        let api = Api::new(b.port, "f1", "f1-key", "f1-secret-123");
        for _ in 0..3 {
            assert_eq!(api.trigger(&["c"], "e", "{}").await.status, 200);
        }
        // The day's count includes what earlier runs flushed to the files.
        wait_until("today's count", Duration::from_secs(3), || async {
            usage(b.port, "f1").await["today"]["messages"] == 3 * run
        })
        .await;
        let u = usage(b.port, "f1").await;
        assert_eq!(total(&u, "messages_received"), 3 * (run - 1), "{u}");
        // Shutdown flushes the counts of this run.
        b.signal("TERM");
        assert_eq!(b.wait_exit(Duration::from_secs(20)), Some(0));
    }
    let b = BrokerProcess::spawn_with(bin(), config, &env);
    wait_until(
        "today's count after a restart",
        Duration::from_secs(3),
        || async { usage(b.port, "f1").await["today"]["messages"] == 6 },
    )
    .await;
    let u = usage(b.port, "f1").await;
    assert_eq!(total(&u, "messages_received"), 6, "{u}");
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Client events count their deliveries against the daily quota and, once it is used up, get the
/// documented WebSocket error (4301, the socket stays open) while the API gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_over_the_daily_quota_get_4301() {
    let config = "[[apps]]\nid = \"ce\"\nkey = \"ce-key\"\nsecret = \"ce-secret-123\"\nmax_messages_per_day = 3\n";
    let b = BrokerProcess::spawn_with(bin(), config, &[("VESTNIK_NO_METRICS", "true")]);
    let mut sender = WsClient::connect(&b.ws_url("ce-key")).await;
    let mut listener = WsClient::connect(&b.ws_url("ce-key")).await;
    for c in [&mut sender, &mut listener] {
        let auth = vestnik_protocol::auth::sign_channel(
            "ce-key",
            "ce-secret-123",
            &c.socket_id,
            "private-room",
            None,
        );
        let ok = c
            .subscribe(json!({"channel": "private-room", "auth": auth}))
            .await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    let client_event = json!({"event": "client-typing", "channel": "private-room", "data": "{}"});
    // Three deliveries use the quota of three.
    for _ in 0..3 {
        sender.send(&client_event).await;
        listener.expect_event("client-typing").await;
    }
    sender.send(&client_event).await;
    let refused = sender.expect_event("pusher:error").await;
    assert_eq!(refused["data"]["code"], 4301, "{refused}");
    let message = refused["data"]["message"].as_str().expect("a message");
    assert!(message.contains("daily message quota"), "{message}");
    // The socket stays open: it still answers a ping.
    sender
        .send(&json!({"event": "pusher:ping", "data": {}}))
        .await;
    sender.expect_event("pusher:pong").await;
    let api = Api::new(b.port, "ce", "ce-key", "ce-secret-123");
    assert_eq!(api.trigger(&["c"], "e", "{}").await.status, 403);
}
