//! A connection quota from the app database holds across the cluster (issue 15): with
//! `quotas.max_connections = 10`, ten sockets spread over two nodes are admitted and the eleventh,
//! on either node, gets 4004; when one closes, a new one is admitted again.

mod apps_support;
mod common;

use std::time::Duration;

use apps_support::{admin, node, unique, TestDb};
use common::*;

async fn open_or_code(b: &BrokerProcess, key: &str) -> Result<WsClient, Option<u16>> {
    let mut c = WsClient::connect_raw(&b.ws_url(key)).await;
    match c.recv_within(Duration::from_secs(2)).await {
        Some(Received::Json(v)) if v["event"] == "pusher:connection_established" => Ok(c),
        Some(Received::Json(v)) if v["event"] == "pusher:error" => {
            Err(v["data"]["code"].as_u64().map(|c| c as u16))
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_of_ten_refuses_the_eleventh_across_two_nodes() {
    require_redis();
    let db = TestDb::create().await;
    let cluster = format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{}\"\nheartbeat_interval_ms = 100\n",
        redis_url(),
        unique("apps_quota")
    );
    let a = node(&db.url, &cluster);
    let b = node(&db.url, &cluster);
    let created = admin(
        a.port,
        "POST",
        "/admin/apps",
        r#"{"key": "quota-key", "quotas": {"max_connections": 10}}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // Each node serves the app once its change feed brings it, the creating node too.
    for n in [&a, &b] {
        wait_until("the app on both nodes", Duration::from_secs(10), || async {
            open_or_code(n, "quota-key").await.is_ok()
        })
        .await;
    }
    let mut open = Vec::new();
    for i in 0..10 {
        let n = if i % 2 == 0 { &a } else { &b };
        open.push(
            open_or_code(n, "quota-key")
                .await
                .expect("within the quota"),
        );
    }
    // Each node learns the other's count from its heartbeats: wait until both refuse.
    for n in [&a, &b] {
        wait_until("the eleventh refused", Duration::from_secs(3), || async {
            open_or_code(n, "quota-key").await.err() == Some(Some(4004))
        })
        .await;
    }
    drop(open.pop());
    wait_until(
        "a place again after a close",
        Duration::from_secs(3),
        || async { open_or_code(&b, "quota-key").await.is_ok() },
    )
    .await;
}
