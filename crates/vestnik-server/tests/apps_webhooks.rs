//! Webhooks of apps from the database follow the live catalogue (issue 15): over two nodes on Redis
//! and one PostgreSQL, an app created through the admin API with a webhook target gets its
//! `channel_occupied` at a test receiver, signed with its secret; after a rotation the next
//! webhook is signed with the new secret; a target set later by a `PATCH` is used from then on.

mod apps_support;
mod common;

use std::time::Duration;

use apps_support::{admin, field, node, unique, TestDb};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vestnik_protocol::webhook::sign_webhook;

/// One webhook request as the receiver got it.
#[derive(Debug)]
struct Hook {
    /// The `X-Pusher-Key` header.
    key: String,
    /// The `X-Pusher-Signature` header.
    signature: String,
    /// The raw body.
    body: Vec<u8>,
}

impl Hook {
    /// The body as JSON.
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on a free port that answers 200 to every request and hands each to the channel.
async fn receiver() -> (u16, mpsc::UnboundedReceiver<Hook>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = header(&text[..end], "content-length")
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break (end, length);
                        }
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let hook = Hook {
                    key: header(&head, "x-pusher-key").unwrap_or_default(),
                    signature: header(&head, "x-pusher-signature").unwrap_or_default(),
                    body: buf[head_end + 4..head_end + 4 + length].to_vec(),
                };
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tx.send(hook);
            });
        }
    });
    (port, rx)
}

/// A header's value in a request head, by case-insensitive name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The next webhook whose events include `name` on `channel`, within 5 s.
async fn next_hook(rx: &mut mpsc::UnboundedReceiver<Hook>, name: &str, channel: &str) -> Hook {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let hook = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {name} webhook for {channel} within 5 s"))
            .expect("the receiver runs");
        let events = hook.json()["events"].clone();
        let found = events.as_array().is_some_and(|es| {
            es.iter()
                .any(|e| e["name"] == name && e["channel"] == channel)
        });
        if found {
            return hook;
        }
    }
}

/// A socket of `key` on `b`, once the node serves the app (within 10 s: the change feed is fast,
/// but a loaded CI machine is not).
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
        assert!(tokio::time::Instant::now() < deadline, "{key} not served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_of_a_live_created_app_arrive_signed_with_its_current_secret() {
    require_redis();
    let (port, mut hooks) = receiver().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let db = TestDb::create().await;
    let cluster = format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{}\"\nheartbeat_interval_ms = 100\n",
        redis_url(),
        unique("apps_webhooks")
    );
    let a = node(&db.url, &cluster);
    let b = node(&db.url, &cluster);

    // Created through node A with a target; its first subscriber is on node B.
    let body = json!({"id": "8001", "key": "hooked-key",
                      "webhooks": [{"url": url, "event_types": ["channel_occupied"]}]});
    let created = admin(a.port, "POST", "/admin/apps", &body.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = field(&created.json, "secret");
    let mut c = socket(&b, "hooked-key").await;
    let ok = c.subscribe(json!({"channel": "orders"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let hook = next_hook(&mut hooks, "channel_occupied", "orders").await;
    assert_eq!(hook.key, "hooked-key");
    assert_eq!(hook.signature, sign_webhook(&secret, &hook.body));

    // Rotated (the old secret still valid for API calls): webhooks are signed with the new one.
    let rotated = admin(
        a.port,
        "POST",
        "/admin/apps/8001/rotate-secret",
        r#"{"grace_seconds": 60}"#,
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = field(&rotated.json, "secret");
    assert_ne!(new_secret, secret);
    // Each node applies the rotation from its feed; a channel occupied after that is signed anew.
    let mut n = 0;
    let signed_new = loop {
        n += 1;
        let channel = format!("after-rotation-{n}");
        let ok = c.subscribe(json!({"channel": channel})).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let hook = next_hook(&mut hooks, "channel_occupied", &channel).await;
        if hook.signature == sign_webhook(&new_secret, &hook.body) {
            break n;
        }
        assert_eq!(hook.signature, sign_webhook(&secret, &hook.body));
        assert!(n < 250, "webhooks still signed with the old secret");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("signed with the new secret from subscription {signed_new}");

    // An app created without targets gets them from a PATCH, live.
    let plain = admin(
        a.port,
        "POST",
        "/admin/apps",
        r#"{"id": "8002", "key": "later-key"}"#,
    )
    .await;
    assert_eq!(plain.status, 201, "{}", plain.body);
    let later_secret = field(&plain.json, "secret");
    let patch = json!({"webhooks": [{"url": url, "event_types": ["channel_occupied"]}]});
    let patched = admin(b.port, "PATCH", "/admin/apps/8002", &patch.to_string()).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let mut d = socket(&b, "later-key").await;
    let mut n = 0;
    let hook = loop {
        n += 1;
        let channel = format!("later-{n}");
        let ok = d.subscribe(json!({"channel": channel})).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let wait = tokio::time::timeout(
            Duration::from_millis(1_500),
            next_hook(&mut hooks, "channel_occupied", &channel),
        )
        .await;
        if let Ok(hook) = wait {
            break hook;
        }
        assert!(n < 5, "no webhook after the PATCH");
    };
    assert_eq!(hook.key, "later-key");
    assert_eq!(hook.signature, sign_webhook(&later_secret, &hook.body));
}
