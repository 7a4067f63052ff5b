//! The adapter conformance suite against real Redis: the shared server for the ordinary cases
//! (each test on its own random prefix, so runs never see each other), and a private
//! `redis-server` on a free port for the restart case, which kills and restarts it.
//!
//! A test that cannot reach Redis fails and says how to start it; none is skipped.

use std::sync::Arc;

use vestnik_broker::adapter::NodeId;
use vestnik_redis::RedisAdapter;
use vestnik_testkit::conformance::{self, unique_prefix, BackboneServer};

/// The shared Redis the ordinary cases use; `VESTNIK_TEST_REDIS_URL` overrides it.
fn shared_url() -> String {
    std::env::var("VESTNIK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Connects node `id`, or fails the test with how to get a Redis.
async fn connect(url: String, prefix: String, id: NodeId) -> Arc<RedisAdapter> {
    // RUST_LOG=vestnik_redis=debug shows the adapter's transitions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    RedisAdapter::connect(&url, &prefix, id)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Redis at {url}: {e}\n\
                 start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, \
                 or set VESTNIK_TEST_REDIS_URL to another"
            )
        })
}

#[tokio::test]
async fn all_reaches_every_node() {
    let prefix = unique_prefix("redis");
    conformance::all_reaches_every_node(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn node_reaches_only_that_node() {
    let prefix = unique_prefix("redis");
    conformance::node_reaches_only_that_node(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn order_is_kept() {
    let prefix = unique_prefix("redis");
    conformance::order_is_kept(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn payloads_pass_unchanged() {
    let prefix = unique_prefix("redis");
    conformance::payloads_pass_unchanged(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn events_is_taken_once() {
    let prefix = unique_prefix("redis");
    conformance::events_is_taken_once(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn restart_recovers() {
    let mut server = BackboneServer::redis();
    let (url, prefix) = (server.url(), unique_prefix("redis"));
    conformance::restart_recovers(|id| connect(url.clone(), prefix.clone(), id), &mut server).await;
}
