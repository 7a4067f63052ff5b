//! `/ready` follows the node's cluster backbone, with a private `redis-server` on a free port that
//! the tests start late, kill and restart (never the shared Redis on 6379): 503 while the node waits
//! to join (with sockets and API calls refused, `/up` still 200), 200 once joined, 503 while the
//! backbone is down, 200 again after it is back.

mod common;

use std::time::Duration;

use common::*;
use vestnik_testkit::conformance::{unique_prefix, Backbone, BackboneServer};

/// How long a test waits for the node to notice the backbone coming or going: the Redis adapter
/// reconnects with a backoff capped at 5 s, and the join retries every second at most.
const BACKBONE_WAIT: Duration = Duration::from_secs(20);

fn config(redis_url: &str, join_timeout_ms: u64) -> String {
    format!(
        "{APPS}\n[cluster]\nadapter = \"redis\"\nredis_url = \"{redis_url}\"\nprefix = \"{}\"\n\
         join_timeout_ms = {join_timeout_ms}\n",
        unique_prefix("ready")
    )
}

async fn ready(b: &BrokerProcess) -> HttpResponse {
    raw_http(b.port, "GET", "/ready", "").await
}

#[tokio::test]
async fn ready_is_503_while_the_node_waits_for_its_backbone_then_200() {
    // The port is reserved by starting Redis once; it is started again only after the broker.
    let mut redis = BackboneServer::redis();
    redis.stop();
    let b = BrokerProcess::spawn_starting(bin(), &config(&redis.url(), 60_000), &[]);

    // Starting: alive, not ready, and nothing is served that would need the cluster.
    assert_eq!(raw_http(b.port, "GET", "/up", "").await.status, 200);
    let r = ready(&b).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json["status"], "starting", "{}", r.body);
    assert!(
        r.json["error"].as_str().unwrap().contains("starting"),
        "{}",
        r.body
    );
    let refused = WsClient::try_connect(&b.ws_url(KEY), &[])
        .await
        .expect_err("an upgrade is refused while starting");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.json["error"].as_str().unwrap().contains("starting"),
        "{}",
        refused.body
    );
    let t = api(&b).trigger(&["c"], "e", "1").await;
    assert_eq!(t.status, 503, "{}", t.body);
    assert!(
        t.json["error"].as_str().unwrap().contains("starting"),
        "{}",
        t.body
    );
    assert_eq!(t.header("retry-after"), Some("1"));
    // Still starting after those answers: the node waits for the backbone, it did not give up.
    assert_eq!(ready(&b).await.status, 503);

    redis.start();
    wait_until(
        "/ready to answer 200 once joined",
        BACKBONE_WAIT,
        || async { ready(&b).await.status == 200 },
    )
    .await;
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    c.subscribe(serde_json::json!({"channel": "c"})).await;
    assert_eq!(api(&b).trigger(&["c"], "e", "2").await.status, 200);
    c.expect_event("e").await;
}

#[tokio::test]
async fn ready_is_503_while_the_backbone_is_down_and_200_once_it_is_back() {
    let mut redis = BackboneServer::redis();
    let b = BrokerProcess::spawn(bin(), &config(&redis.url(), 5_000));
    let r = ready(&b).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ready")));

    redis.stop();
    wait_until(
        "/ready to answer 503 without Redis",
        BACKBONE_WAIT,
        || async {
            let r = ready(&b).await;
            r.status == 503 && r.json["status"] == "backbone_down"
        },
    )
    .await;
    // The node itself is alive and serves its own sockets meanwhile.
    assert_eq!(raw_http(b.port, "GET", "/up", "").await.status, 200);

    redis.start();
    wait_until(
        "/ready to answer 200 with Redis back",
        BACKBONE_WAIT,
        || async { ready(&b).await.status == 200 },
    )
    .await;
}
