//! `SIGHUP` reloads the config file's apps with the live semantics (issue 15): a new app is live at
//! once, a removed app's sockets close with 4001, a disabled app's with 4003, and an app left as it
//! was keeps its sockets. A file that cannot be served is refused whole and the old apps stay.

mod common;

use std::time::Duration;

use common::*;

const BEFORE: &str = r#"
[[apps]]
id = "stay"
key = "key-stay"
secret = "secret-stay"

[[apps]]
id = "gone"
key = "key-gone"
secret = "secret-gone"

[[apps]]
id = "off"
key = "key-off"
secret = "secret-off"
"#;

const AFTER: &str = r#"
[[apps]]
id = "stay"
key = "key-stay"
secret = "secret-stay"

[[apps]]
id = "off"
key = "key-off"
secret = "secret-off"
enabled = false

[[apps]]
id = "new"
key = "key-new"
secret = "secret-new"
"#;

/// The config file the testkit wrote for the broker: its temp file of this test process holding
/// `text` (this file starts one broker).
fn config_path(text: &str) -> std::path::PathBuf {
    let prefix = format!("vestnik-test-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".toml"))
                && std::fs::read_to_string(p).is_ok_and(|t| t == text)
        })
        .expect("the broker's config file")
}

#[tokio::test]
async fn sighup_reloads_the_apps_live() {
    let b = BrokerProcess::spawn(bin(), BEFORE);
    let mut stay = WsClient::connect(&b.ws_url("key-stay")).await;
    let mut gone = WsClient::connect(&b.ws_url("key-gone")).await;
    let mut off = WsClient::connect(&b.ws_url("key-off")).await;

    // A file that cannot be served (two apps with one key) changes nothing.
    let path = config_path(BEFORE);
    std::fs::write(
        &path,
        format!("{BEFORE}\n[[apps]]\nid = \"x\"\nkey = \"key-stay\"\nsecret = \"s\"\n"),
    )
    .expect("write");
    b.signal("HUP");
    wait_until("the refusal logged", Duration::from_secs(5), || {
        let lines = b.drain_logs();
        async move { lines.iter().any(|l| l.contains("not reloaded")) }
    })
    .await;
    gone.expect_no_event("pusher:error", Duration::from_millis(200))
        .await;

    std::fs::write(&path, AFTER).expect("write");
    b.signal("HUP");
    let (code, _) = gone.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001), "removed app");
    let (code, _) = off.expect_close(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4003), "disabled app");
    let _new = WsClient::connect(&b.ws_url("key-new")).await;
    let api = Api::new(b.port, "new", "key-new", "secret-new");
    assert_eq!(api.trigger(&["c"], "e", "{}").await.status, 200);
    let old = Api::new(b.port, "gone", "key-gone", "secret-gone");
    assert_eq!(old.trigger(&["c"], "e", "{}").await.status, 404);
    // The unchanged app's socket is still open and served.
    let ok = stay.subscribe(serde_json::json!({"channel": "c"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}
