//! Webhook verification against the real broker: a subscription makes `vestnik` POST a signed
//! `channel_occupied` webhook to a receiver in this test, and the SDK accepts it with the app's
//! credentials and refuses it with another secret, another key or a changed body.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vestnik_sdk::{webhook::verify_webhook, Client, Config, Error};
use vestnik_testkit::{broker_binary, BrokerProcess, WsClient};

/// One received request: lower-cased headers and the raw body.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver: answers 200 to every POST and reports it.
async fn receiver() -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let body = buf[head_end..head_end + len].to_vec();
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tx.send(Received { headers, body });
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn broker_webhooks_verify_with_the_app_credentials() {
    let (port, mut hooks) = receiver().await;
    let spool = tempfile::tempdir().unwrap();
    let data = spool.path().display();
    let config = format!(
        r#"
[webhooks]
data_dir = "{data}"
batch_ms = 20
hold_ms = 0

[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"

[[apps.webhooks]]
url = "http://127.0.0.1:{port}/pusher/webhooks"
event_types = ["channel_occupied"]
"#
    );
    let broker = BrokerProcess::spawn(&broker_binary(), &config);
    let mut cfg = Config::local("shop", "shop-key", "shop-secret");
    cfg.port = broker.port;
    let sdk = Client::new(cfg).unwrap();

    let mut ws = WsClient::connect(&broker.ws_url("shop-key")).await;
    let auth = sdk
        .authorize_channel(&ws.socket_id, "private-user-5", None)
        .unwrap();
    ws.subscribe(serde_json::json!({"channel": "private-user-5", "auth": auth.auth}))
        .await;

    let hook = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .expect("a webhook within 10 s")
        .expect("receiver running");
    let (key, sig) = (
        hook.header("x-pusher-key"),
        hook.header("x-pusher-signature"),
    );
    let body = sdk
        .verify_webhook(key, sig, &hook.body)
        .expect("the broker's webhook verifies");
    assert!(body.time_ms > 0);
    assert_eq!(body.events.len(), 1);
    assert_eq!(body.events[0].name, "channel_occupied");
    assert_eq!(body.events[0].channel.as_deref(), Some("private-user-5"));

    assert!(matches!(
        verify_webhook("shop-key", "other-secret", key, sig, &hook.body),
        Err(Error::WebhookSignature)
    ));
    assert!(matches!(
        verify_webhook("other-key", "shop-secret", key, sig, &hook.body),
        Err(Error::WebhookKey)
    ));
    let mut changed = hook.body.clone();
    let at = changed.len() - 3;
    changed[at] ^= 1;
    assert!(matches!(
        sdk.verify_webhook(key, sig, &changed),
        Err(Error::WebhookSignature)
    ));
}
