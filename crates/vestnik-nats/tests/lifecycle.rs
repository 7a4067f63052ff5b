//! The adapter shell's lifecycle cases (`close` and drop, the counters, bounded buffering, a
//! silent server), run from `vestnik_testkit::conformance::lifecycle`, and what only NATS has: the
//! payload limit, refused configurations, and server lists. Ordinary cases use the shared NATS on
//! a random prefix.
//!
//! A test that cannot reach NATS fails and says how to start it; none is skipped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vestnik_broker::adapter::{Adapter, Destination, HoldLimits, NodeId};
use vestnik_nats::{Error, NatsAdapter, NatsOptions};
use vestnik_testkit::conformance::{self, unique_prefix, BackboneServer, DropAccounting};

fn shared_url() -> String {
    std::env::var("VESTNIK_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn connect_with(
    url: &str,
    prefix: &str,
    id: NodeId,
    options: NatsOptions,
) -> Arc<NatsAdapter> {
    // RUST_LOG=vestnik_nats=debug shows the adapter's transitions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    NatsAdapter::connect_with(url, prefix, id, options)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach NATS at {url}: {e}\n\
                 start one with `/usr/sbin/nats-server -a 127.0.0.1 -p 4222 &` \
                 (Debian package nats-server), or set VESTNIK_TEST_NATS_URL to another"
            )
        })
}

/// A factory of nodes on the shared server, all on `prefix`, with `options`.
fn shared(prefix: &str, options: NatsOptions) -> impl FnMut(NodeId) -> BoxedAdapter {
    let prefix = prefix.to_owned();
    move |id| {
        let (prefix, options) = (prefix.clone(), options.clone());
        Box::pin(async move { connect_with(&shared_url(), &prefix, id, options).await })
    }
}

type BoxedAdapter = std::pin::Pin<Box<dyn std::future::Future<Output = Arc<NatsAdapter>>>>;

#[tokio::test]
async fn close_publishes_what_is_queued_then_ends() {
    let prefix = unique_prefix("nats-close");
    conformance::close_publishes_what_is_queued_then_ends(shared(&prefix, NatsOptions::default()))
        .await;
}

#[tokio::test]
async fn drop_ends_the_tasks_and_the_stream() {
    let prefix = unique_prefix("nats-drop");
    conformance::drop_ends_the_tasks_and_the_stream(shared(&prefix, NatsOptions::default())).await;
}

#[tokio::test]
async fn stats_count_what_moved() {
    let prefix = unique_prefix("nats-stats");
    conformance::stats_count_what_moved(shared(&prefix, NatsOptions::default())).await;
}

#[tokio::test]
async fn a_slow_cluster_layer_costs_dropped_messages_not_memory() {
    let prefix = unique_prefix("nats-slow");
    let small = NatsOptions {
        event_queue: 4,
        ..NatsOptions::default()
    };
    conformance::a_slow_cluster_layer_costs_dropped_messages_not_memory(
        shared(&prefix, NatsOptions::default()),
        shared(&prefix, small),
        4,
        DropAccounting::BestEffort,
    )
    .await;
}

#[tokio::test]
async fn payloads_over_the_server_limit_are_refused() {
    let prefix = unique_prefix("nats-limit");
    let a = connect_with(&shared_url(), &prefix, 1, NatsOptions::default()).await;
    let limit = a.transport().max_payload();
    assert!(limit >= 64 * 1024, "server max_payload {limit}");
    assert!(!a.send(Destination::All, Bytes::from(vec![0u8; limit + 1])));
    assert!(a.send(Destination::All, Bytes::from(vec![0u8; limit - 1024])));
    assert_eq!(a.stats().dropped_sends, 1);
}

#[tokio::test]
async fn refuses_bad_configuration_and_unreachable_servers() {
    let prefix = unique_prefix("nats-bad");
    for bad in ["", "has space", "a.*", "a..b", "trailing."] {
        let err = NatsAdapter::connect(&shared_url(), bad, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidPrefix { .. }), "{bad:?}: {err}");
    }
    let err = NatsAdapter::connect("http://u:secret@127.0.0.1", &prefix, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidUrl { .. }) && !err.to_string().contains("secret"),
        "{err}"
    );

    let port = free_port();
    let started = Instant::now();
    let err = NatsAdapter::connect(&format!("nats://127.0.0.1:{port}"), &prefix, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused connection took {:?}",
        started.elapsed()
    );
}

/// A comma-separated list works when one of its servers is down.
#[tokio::test]
async fn a_server_list_survives_a_dead_entry() {
    let url = format!("nats://127.0.0.1:{},{}", free_port(), shared_url());
    let prefix = unique_prefix("nats-list");
    conformance::all_reaches_every_node(|id| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { connect_with(&url, &prefix, id, NatsOptions::default()).await }
    })
    .await;
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server that stops answering without closing anything (SIGSTOP, as in a partition) is noticed
/// A server that stops answering without closing anything (SIGSTOP, as in a partition) is noticed,
/// reported once, and recovered from when it answers again.
#[tokio::test]
async fn a_silent_backbone_is_noticed() {
    let server = BackboneServer::nats();
    let prefix = unique_prefix("nats-silent");
    let quick = NatsOptions {
        ping_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        confirm_timeout: Duration::from_millis(500),
        reconnect_max: Duration::from_millis(500),
        ..NatsOptions::default()
    };
    let url = server.url();
    let make = |id| {
        let (url, prefix, quick) = (url.clone(), prefix.clone(), quick.clone());
        async move { connect_with(&url, &prefix, id, quick).await }
    };
    conformance::a_silent_backbone_is_noticed(make, &server).await;
}

/// A Nats restart shorter than the relay hold loses nothing; one longer loses exactly what expired,
/// and counts it.
#[tokio::test]
async fn the_relay_hold_covers_a_restart_and_counts_what_outlives_it() {
    let mut server = BackboneServer::nats();
    let prefix = unique_prefix("nats-hold");
    let url = server.url();
    let quick = NatsOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..NatsOptions::default()
    };
    let make = |id| {
        let (url, prefix, quick) = (url.clone(), prefix.clone(), quick.clone());
        async move { connect_with(&url, &prefix, id, quick).await }
    };
    conformance::a_restart_within_the_relay_hold_loses_nothing(make, &mut server).await;
    let short = NatsOptions {
        relay_hold: HoldLimits {
            time: Duration::from_secs(2),
            ..HoldLimits::default()
        },
        ..quick.clone()
    };
    let make = |id| {
        let (url, prefix, short) = (url.clone(), prefix.clone(), short.clone());
        async move { connect_with(&url, &prefix, id, short).await }
    };
    conformance::a_restart_longer_than_the_relay_hold_counts_what_it_lost(make, &mut server).await;
}
