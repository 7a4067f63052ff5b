//! The adapter conformance suite against real NATS: the shared server for the ordinary cases
//! (each test on its own random prefix, so runs never see each other), and a private
//! `nats-server` on a free port for the restart case, which kills and restarts it.
//!
//! A test that cannot reach NATS fails and says how to start it; none is skipped.

use std::sync::Arc;

use vestnik_broker::adapter::NodeId;
use vestnik_nats::NatsAdapter;
use vestnik_testkit::conformance::{self, unique_prefix, BackboneServer};

/// The shared NATS the ordinary cases use; `VESTNIK_TEST_NATS_URL` overrides it.
fn shared_url() -> String {
    std::env::var("VESTNIK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Connects node `id`, or fails the test with how to get a NATS server.
async fn connect(url: String, prefix: String, id: NodeId) -> Arc<NatsAdapter> {
    // RUST_LOG=vestnik_nats=debug shows the adapter's transitions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    NatsAdapter::connect(&url, &prefix, id)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach NATS at {url}: {e}\n\
                 start one with `/usr/sbin/nats-server -a 127.0.0.1 -p 4222 &` \
                 (Debian package nats-server), or set VESTNIK_TEST_NATS_URL to another"
            )
        })
}

#[tokio::test]
async fn all_reaches_every_node() {
    let prefix = unique_prefix("nats");
    conformance::all_reaches_every_node(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn node_reaches_only_that_node() {
    let prefix = unique_prefix("nats");
    conformance::node_reaches_only_that_node(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn order_is_kept() {
    let prefix = unique_prefix("nats");
    conformance::order_is_kept(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn payloads_pass_unchanged() {
    let prefix = unique_prefix("nats");
    conformance::payloads_pass_unchanged(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn events_is_taken_once() {
    let prefix = unique_prefix("nats");
    conformance::events_is_taken_once(|id| connect(shared_url(), prefix.clone(), id)).await;
}

#[tokio::test]
async fn restart_recovers() {
    let mut server = BackboneServer::nats();
    let (url, prefix) = (server.url(), unique_prefix("nats"));
    conformance::restart_recovers(|id| connect(url.clone(), prefix.clone(), id), &mut server).await;
}
