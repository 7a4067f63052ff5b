//! Interest routing over the shared NATS (issue 16), each test on its own random prefix:
//! `vestnik_testkit::conformance::routing`. A node receives the event relays of the channels it
//! serves and none other, and a first subscriber misses nothing published right after its
//! subscribe (many trials, 0 lost).

use std::sync::Arc;

use vestnik_broker::adapter::NodeId;
use vestnik_nats::NatsAdapter;
use vestnik_testkit::conformance::{routing, unique_prefix};

/// Trials of subscribe-then-publish-at-once.
const TRIALS: usize = 200;

fn shared_url() -> String {
    std::env::var("VESTNIK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn connect(prefix: String, id: NodeId) -> Arc<NatsAdapter> {
    let url = shared_url();
    NatsAdapter::connect(&url, &prefix, id)
        .await
        .unwrap_or_else(|e| panic!("cannot reach NATS at {url}: {e}"))
}

/// Removes the history stream the nodes kept in the shared NATS's JetStream, if it has JetStream
/// (without it there is none, and the delete fails: nothing to clean).
async fn clean_up(prefix: &str) {
    let _ = vestnik_nats::delete_history_at(&shared_url(), prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gets_only_the_relays_of_the_channels_it_serves() {
    let prefix = unique_prefix("nats-routing");
    routing::a_node_gets_only_the_relays_of_the_channels_it_serves(|id| {
        connect(prefix.clone(), id)
    })
    .await;
    clean_up(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_subscriber_misses_nothing_published_right_after() {
    let prefix = unique_prefix("nats-first");
    routing::a_first_subscriber_misses_nothing_published_right_after(
        |id| connect(prefix.clone(), id),
        TRIALS,
    )
    .await;
    clean_up(&prefix).await;
}
