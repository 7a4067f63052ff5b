//! The reconnect skew of a NATS restart (issue 13): three brokers on a private `nats-server`,
//! one reaching it through a proxy that holds it off after the restart, so it reconnects later
//! than the others. What the others relay meanwhile reaches its sockets once, in order:
//! `vestnik_testkit::conformance::skew`. The server is this test's own, on a free port, since the
//! test kills it; the shared NATS is never touched.

use std::sync::Arc;

use vestnik_broker::adapter::NodeId;
use vestnik_nats::NatsAdapter;
use vestnik_testkit::conformance::{self, unique_prefix, BackboneServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reconnect_after_a_nats_restart_misses_nothing() {
    // RUST_LOG=vestnik_broker=debug,vestnik_nats=debug shows the replay.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut server = BackboneServer::nats();
    let prefix = unique_prefix("nats-skew");
    conformance::skew::a_late_reconnect_after_a_restart_misses_nothing(
        |id: NodeId, url: String| {
            let prefix = prefix.clone();
            async move {
                let adapter: Arc<NatsAdapter> = NatsAdapter::connect(&url, &prefix, id)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach the private NATS at {url}: {e}"));
                adapter
            }
        },
        &mut server,
    )
    .await;
}
