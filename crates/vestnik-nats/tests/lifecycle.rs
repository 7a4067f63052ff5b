//! What the conformance suite does not cover: `close` and drop, the counters, bounded buffering,
//! the payload limit, refused configurations, and server lists. Ordinary cases use the shared NATS
//! on a random prefix.
//!
//! A test that cannot reach NATS fails and says how to start it; none is skipped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId};
use vestnik_nats::{Error, NatsAdapter, NatsOptions};
use vestnik_testkit::conformance::{self, unique_prefix, BackboneServer, EVENT_WAIT};
use vestnik_testkit::wait_until;

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

/// Connects to the shared NATS and takes the events, past the first `Connected`.
async fn node(prefix: &str, id: NodeId) -> (Arc<NatsAdapter>, mpsc::Receiver<AdapterEvent>) {
    node_with(prefix, id, NatsOptions::default()).await
}

async fn node_with(
    prefix: &str,
    id: NodeId,
    options: NatsOptions,
) -> (Arc<NatsAdapter>, mpsc::Receiver<AdapterEvent>) {
    let adapter = connect_with(&shared_url(), prefix, id, options).await;
    let mut events = adapter.events().expect("first call");
    assert_eq!(next(&mut events).await, Some(AdapterEvent::Connected));
    (adapter, events)
}

/// The next event, `None` when the stream ended; panics after [`EVENT_WAIT`].
async fn next(events: &mut mpsc::Receiver<AdapterEvent>) -> Option<AdapterEvent> {
    tokio::time::timeout(EVENT_WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within {EVENT_WAIT:?}"))
}

#[tokio::test]
async fn close_publishes_what_is_queued_then_ends() {
    let prefix = unique_prefix("nats-close");
    let (a, mut a_events) = node(&prefix, 1).await;
    let (_b, mut b_events) = node(&prefix, 2).await;
    for i in 0..500u32 {
        assert!(a.send(Destination::Node(2), Bytes::from(i.to_string())));
    }
    a.close().await;
    for i in 0..500u32 {
        assert_eq!(
            next(&mut b_events).await,
            Some(AdapterEvent::Message(Bytes::from(i.to_string()))),
            "message {i} of those queued before close"
        );
    }
    assert!(!a.is_connected(), "closed adapter reports connected");
    assert!(!a.send(Destination::All, Bytes::from_static(b"late")));
    assert_eq!(
        next(&mut a_events).await,
        None,
        "the event stream ends after close"
    );
    let stats = a.stats();
    assert_eq!((stats.sent, stats.dropped_sends), (500, 1), "{stats:?}");
}

#[tokio::test]
async fn drop_ends_the_tasks_and_the_stream() {
    let prefix = unique_prefix("nats-drop");
    let (a, mut events) = node(&prefix, 1).await;
    drop(a);
    assert_eq!(
        next(&mut events).await,
        None,
        "the event stream ends after drop"
    );
}

#[tokio::test]
async fn stats_count_what_moved() {
    let prefix = unique_prefix("nats-stats");
    let (a, mut a_events) = node(&prefix, 1).await;
    let (b, mut b_events) = node(&prefix, 2).await;
    for _ in 0..10 {
        assert!(a.send(Destination::Node(2), Bytes::from_static(b"n")));
    }
    assert!(a.send(Destination::All, Bytes::from_static(b"all")));
    for _ in 0..11 {
        assert!(matches!(
            next(&mut b_events).await,
            Some(AdapterEvent::Message(_))
        ));
    }
    assert!(matches!(
        next(&mut a_events).await,
        Some(AdapterEvent::Message(_))
    ));
    wait_until("a's sent counter", EVENT_WAIT, || async {
        a.stats().sent == 11
    })
    .await;
    assert_eq!(b.stats().received, 11);
    assert_eq!(
        a.stats().received,
        1,
        "the sender hears its own All message"
    );
    assert_eq!(a.stats().dropped(), 0);
}

#[tokio::test]
async fn a_slow_cluster_layer_costs_dropped_messages_not_memory() {
    let prefix = unique_prefix("nats-slow");
    let (a, _a_events) = node(&prefix, 1).await;
    let small = NatsOptions {
        event_queue: 4,
        ..NatsOptions::default()
    };
    let (b, mut b_events) = node_with(&prefix, 2, small).await;
    for i in 0..100u32 {
        assert!(a.send(Destination::Node(2), Bytes::from(i.to_string())));
    }
    // Slow-consumer reports reach the counter best-effort, so wait for the first drop only.
    wait_until("b to drop what does not fit", EVENT_WAIT, || async {
        b.stats().dropped_receives > 0
    })
    .await;
    assert!(b.stats().received <= 8, "{:?}", b.stats());
    for i in 0..4u32 {
        assert_eq!(
            next(&mut b_events).await,
            Some(AdapterEvent::Message(Bytes::from(i.to_string())))
        );
    }
}

#[tokio::test]
async fn payloads_over_the_server_limit_are_refused() {
    let prefix = unique_prefix("nats-limit");
    let (a, _events) = node(&prefix, 1).await;
    let limit = a.max_payload();
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
/// by the client's PINGs, reported once, and recovered from when it answers again.
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
    let a = connect_with(&server.url(), &prefix, 1, quick).await;
    let mut events = a.events().expect("first call");
    assert_eq!(next(&mut events).await, Some(AdapterEvent::Connected));

    server.freeze();
    assert_eq!(next(&mut events).await, Some(AdapterEvent::Disconnected));
    assert!(!a.is_connected());
    server.thaw();
    assert_eq!(next(&mut events).await, Some(AdapterEvent::Connected));
    assert!(a.send(Destination::All, Bytes::from_static(b"back")));
    assert_eq!(
        next(&mut events).await,
        Some(AdapterEvent::Message(Bytes::from_static(b"back")))
    );
    assert_eq!(a.stats().disconnects, 1);
}
