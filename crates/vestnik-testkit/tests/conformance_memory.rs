//! The adapter conformance suite against the in-process `MemoryHub` (the restart case does not
//! apply: it has no backbone to lose). Each test gets its own hub.

use std::sync::Arc;

use vestnik_broker::adapter::{MemoryAdapter, MemoryHub, NodeId};
use vestnik_testkit::conformance;

/// A factory over a fresh hub.
fn hub() -> impl FnMut(NodeId) -> std::future::Ready<Arc<MemoryAdapter>> {
    let hub = MemoryHub::new();
    move |id| std::future::ready(Arc::new(hub.adapter(id)))
}

#[tokio::test]
async fn all_reaches_every_node() {
    conformance::all_reaches_every_node(hub()).await;
}

#[tokio::test]
async fn node_reaches_only_that_node() {
    conformance::node_reaches_only_that_node(hub()).await;
}

#[tokio::test]
async fn order_is_kept() {
    conformance::order_is_kept(hub()).await;
}

#[tokio::test]
async fn payloads_pass_unchanged() {
    conformance::payloads_pass_unchanged(hub()).await;
}

#[tokio::test]
async fn events_is_taken_once() {
    conformance::events_is_taken_once(hub()).await;
}
