//! Delivery against a real HTTP receiver: event shapes and headers, batching, the vacate hold,
//! target filters, the in-flight limit, and the non-blocking submit.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{app, ch, init_logs, settings, wait_for, Receiver, APP_ID, KEY};
use tokio_util::sync::CancellationToken;
use vestnik_protocol::SocketId;
use vestnik_webhooks::{EventType, WebhookEvent, WebhookTarget, Webhooks};

const WAIT: Duration = Duration::from_secs(10);

fn without_id(mut event: Value) -> Value {
    event.as_object_mut().expect("object").remove("id");
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_arrives_in_pushers_shape_signed_with_ids() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) =
        Webhooks::start(app(targets), settings(dir.path()), shutdown.clone()).expect("start");

    let events = [
        WebhookEvent::ChannelOccupied {
            channel: ch("room"),
        },
        WebhookEvent::ChannelVacated {
            channel: ch("hall"),
        },
        WebhookEvent::MemberAdded {
            channel: ch("presence-a"),
            user_id: "u1".into(),
        },
        WebhookEvent::MemberRemoved {
            channel: ch("presence-b"),
            user_id: "u2".into(),
        },
        WebhookEvent::ClientEvent {
            channel: ch("private-c"),
            event: "client-typing".into(),
            data: r#"{"who":"me"}"#.into(),
            socket_id: SocketId::new(123, 456),
            user_id: None,
        },
        WebhookEvent::ClientEvent {
            channel: ch("presence-c"),
            event: "client-wave".into(),
            data: "hi".into(),
            socket_id: SocketId::new(1, 2),
            user_id: Some("u3".into()),
        },
        WebhookEvent::CacheMiss {
            channel: ch("cache-d"),
        },
        WebhookEvent::SubscriptionCount {
            channel: ch("room"),
            count: 42,
        },
    ];
    let before_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    for event in events.iter().cloned() {
        hooks.submit(APP_ID, event);
    }
    wait_for("8 events", WAIT, || receiver.accepted_events().len() == 8).await;

    let got: HashSet<String> = receiver
        .accepted_events()
        .into_iter()
        .map(|e| without_id(e).to_string())
        .collect();
    let expected = [
        json!({"name":"channel_occupied","channel":"room"}),
        json!({"name":"channel_vacated","channel":"hall"}),
        json!({"name":"member_added","channel":"presence-a","user_id":"u1"}),
        json!({"name":"member_removed","channel":"presence-b","user_id":"u2"}),
        json!({"name":"client_event","channel":"private-c","event":"client-typing","data":"{\"who\":\"me\"}","socket_id":"123.456"}),
        json!({"name":"client_event","channel":"presence-c","event":"client-wave","data":"hi","socket_id":"1.2","user_id":"u3"}),
        json!({"name":"cache_miss","channel":"cache-d"}),
        json!({"name":"subscription_count","channel":"room","subscription_count":42}),
    ];
    let expected: HashSet<String> = expected.iter().map(Value::to_string).collect();
    assert_eq!(got, expected);

    let mut ids = HashSet::new();
    for request in receiver.requests() {
        assert_eq!(request.path, "/hooks");
        assert!(request.signed, "signature and key verify");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["x-pusher-key"], KEY);
        let time_ms = request.body["time_ms"].as_u64().expect("time_ms");
        assert!(time_ms >= before_ms && time_ms < before_ms + 10_000);
        let body_ids: Vec<String> = request
            .events()
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(
            request.id_header(),
            body_ids.join(","),
            "header lists the body's ids"
        );
        for id in body_ids {
            assert_eq!(id.len(), 36, "a UUID: {id}");
            assert!(ids.insert(id), "ids are unique");
        }
    }
    shutdown.cancel();
    task.await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_flush_at_batch_max_or_after_batch_ms() {
    init_logs();
    let receiver = Receiver::start().await;
    let target = || vec![WebhookTarget::every_event(receiver.url("/hooks"))];

    // A window far longer than the test: only the size can flush.
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let by_size = vestnik_webhooks::WebhookSettings {
        batch_ms: 600_000,
        batch_max: 20,
        ..settings(dir.path())
    };
    let (hooks, task) = Webhooks::start(app(target()), by_size, shutdown.clone()).expect("start");
    for i in 0..20 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    wait_for("one POST", WAIT, || !receiver.requests().is_empty()).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].events().len(), 20, "20 events, one POST");
    shutdown.cancel();
    task.await.expect("stop");

    // One event waits for the 250 ms window.
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let by_time = vestnik_webhooks::WebhookSettings {
        batch_ms: 250,
        ..settings(dir.path())
    };
    let (hooks, task) = Webhooks::start(app(target()), by_time, shutdown.clone()).expect("start");
    let start = Instant::now();
    hooks.submit(
        APP_ID,
        WebhookEvent::CacheMiss {
            channel: ch("cache-late"),
        },
    );
    wait_for("the lone event", WAIT, || receiver.requests().len() == 2).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(245),
        "flushed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "flushed after {waited:?}");
    assert_eq!(receiver.requests()[1].events().len(), 1);
    shutdown.cancel();
    task.await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacates_are_held_and_a_quick_return_cancels_both() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let hold = Duration::from_millis(300);
    let s = vestnik_webhooks::WebhookSettings {
        hold_ms: 300,
        ..settings(dir.path())
    };
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) = Webhooks::start(app(targets), s, shutdown.clone()).expect("start");

    // Nobody comes back: the vacate arrives after the hold.
    let start = Instant::now();
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelVacated {
            channel: ch("quiet"),
        },
    );
    wait_for("the held vacate", WAIT, || {
        receiver.accepted_events().len() == 1
    })
    .await;
    assert!(start.elapsed() >= hold, "sent after {:?}", start.elapsed());
    assert_eq!(receiver.accepted_events()[0]["name"], "channel_vacated");

    // A page reload: leave and come back within the hold. Nothing is sent for either.
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelVacated {
            channel: ch("busy"),
        },
    );
    let user = |u: &str| (ch("presence-busy"), u.to_owned());
    let (channel, user_id) = user("u1");
    hooks.submit(APP_ID, WebhookEvent::MemberRemoved { channel, user_id });
    tokio::time::sleep(Duration::from_millis(50)).await; // the reload's gap, well inside the hold
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelOccupied {
            channel: ch("busy"),
        },
    );
    let (channel, user_id) = user("u1");
    hooks.submit(APP_ID, WebhookEvent::MemberAdded { channel, user_id });
    // A marker held after them: holds end in order, so once it arrives theirs have ended too.
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelVacated {
            channel: ch("marker"),
        },
    );
    wait_for("the marker", WAIT, || receiver.accepted_events().len() >= 2).await;
    let names: Vec<Value> = receiver
        .accepted_events()
        .iter()
        .map(|e| e["channel"].clone())
        .collect();
    assert_eq!(names, vec![json!("quiet"), json!("marker")]);
    let stats = &hooks.stats()[0];
    assert_eq!(stats.suppressed, 4);
    assert_eq!(stats.queued, 0);
    shutdown.cancel();
    task.await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_filter_by_kind_prefix_and_suffix_and_send_extra_headers() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let targets = vec![
        WebhookTarget {
            event_types: vec![EventType::MemberAdded],
            headers: BTreeMap::from([("Authorization".into(), "Bearer t0k".into())]),
            ..WebhookTarget::every_event(receiver.url("/kinds"))
        },
        WebhookTarget {
            channel_prefix: Some("presence-".into()),
            ..WebhookTarget::every_event(receiver.url("/prefix"))
        },
        WebhookTarget {
            channel_suffix: Some("-admin".into()),
            ..WebhookTarget::every_event(receiver.url("/suffix"))
        },
        WebhookTarget::every_event(receiver.url("/all")),
    ];
    let (hooks, task) =
        Webhooks::start(app(targets), settings(dir.path()), shutdown.clone()).expect("start");
    hooks.submit(
        APP_ID,
        WebhookEvent::MemberAdded {
            channel: ch("presence-room"),
            user_id: "7".into(),
        },
    );
    hooks.submit(
        APP_ID,
        WebhookEvent::CacheMiss {
            channel: ch("cache-x-admin"),
        },
    );
    hooks.submit(
        APP_ID,
        WebhookEvent::SubscriptionCount {
            channel: ch("plain"),
            count: 1,
        },
    );
    // 2 (kinds, prefix) + 1 (suffix) + 3 (all) deliveries, and nothing else.
    wait_for("6 deliveries", WAIT, || hooks.stats()[0].delivered == 6).await;

    let by_path = |path: &str| -> Vec<String> {
        receiver
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .flat_map(|r| r.events())
            .map(|e| {
                format!(
                    "{} {}",
                    e["name"].as_str().expect("name"),
                    e["channel"].as_str().expect("channel")
                )
            })
            .collect()
    };
    assert_eq!(by_path("/kinds"), vec!["member_added presence-room"]);
    assert_eq!(by_path("/prefix"), vec!["member_added presence-room"]);
    assert_eq!(by_path("/suffix"), vec!["cache_miss cache-x-admin"]);
    assert_eq!(by_path("/all").len(), 3);
    for request in receiver.requests() {
        let auth = request.headers.get("authorization");
        if request.path == "/kinds" {
            assert_eq!(auth.expect("extra header"), "Bearer t0k");
        } else {
            assert!(auth.is_none());
        }
    }
    let stats = &hooks.stats()[0];
    assert_eq!((stats.pending, stats.queued, stats.failed), (0, 0, 0));
    assert!(hooks.wants(APP_ID, EventType::ClientEvent));
    assert!(!hooks.wants("other-app", EventType::ClientEvent));
    shutdown.cancel();
    task.await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_at_most_max_in_flight_requests() {
    init_logs();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(150));
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let s = vestnik_webhooks::WebhookSettings {
        max_in_flight: 2,
        batch_max: 1,
        ..settings(dir.path())
    };
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) = Webhooks::start(app(targets), s, shutdown.clone()).expect("start");
    for i in 0..10 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    wait_for("10 deliveries", WAIT, || hooks.stats()[0].delivered == 10).await;
    assert_eq!(receiver.requests().len(), 10);
    assert_eq!(receiver.max_concurrent(), 2, "two at a time, and no more");
    shutdown.cancel();
    task.await.expect("stop");
}

/// A current-thread runtime: the intake task cannot run while this test submits, so the queue
/// fills deterministically.
#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let s = vestnik_webhooks::WebhookSettings {
        queue_capacity: 8,
        ..settings(dir.path())
    };
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) = Webhooks::start(app(targets), s, shutdown.clone()).expect("start");
    for i in 0..13 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    let stats = &hooks.stats()[0];
    assert_eq!((stats.dropped, stats.queued), (5, 8));
    wait_for("the queued 8", WAIT, || hooks.stats()[0].delivered == 8).await;
    assert_eq!(receiver.accepted_events().len(), 8);
    shutdown.cancel();
    task.await.expect("stop");
    hooks.submit(
        APP_ID,
        WebhookEvent::CacheMiss {
            channel: ch("cache-late"),
        },
    );
    assert_eq!(
        hooks.stats()[0].dropped,
        6,
        "after shutdown, submits are dropped and counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_works_from_a_plain_thread_and_ignores_what_nobody_wants() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let targets = vec![WebhookTarget {
        event_types: vec![EventType::ChannelOccupied],
        ..WebhookTarget::every_event(receiver.url("/hooks"))
    }];
    let (hooks, task) =
        Webhooks::start(app(targets), settings(dir.path()), shutdown.clone()).expect("start");
    let from_thread = hooks.clone();
    std::thread::spawn(move || {
        // No runtime context here, as in the broker's synchronous code.
        from_thread.submit(
            "no-such-app",
            WebhookEvent::ChannelOccupied { channel: ch("a") },
        );
        from_thread.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch("cache-a"),
            },
        );
        from_thread.submit(APP_ID, WebhookEvent::ChannelOccupied { channel: ch("a") });
    })
    .join()
    .expect("thread");
    wait_for("the occupied event", WAIT, || {
        hooks.stats()[0].delivered == 1
    })
    .await;
    let stats = &hooks.stats()[0];
    assert_eq!((stats.dropped, stats.queued, stats.pending), (0, 0, 0));
    assert_eq!(receiver.accepted_events()[0]["name"], "channel_occupied");
    assert!(
        hooks.wants(APP_ID, EventType::ChannelVacated),
        "the hold partner is accepted"
    );
    assert!(!hooks.wants(APP_ID, EventType::CacheMiss));
    shutdown.cancel();
    task.await.expect("stop");
}

/// Apps set and removed while the service runs (apps from a database): a service started with no
/// app sends nothing, an app set later gets its events delivered, a change of its secret signs the
/// next request with the new one, and a removed app's undelivered batch becomes a dead letter
/// while its new events are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_set_and_removed_while_running() {
    init_logs();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let (hooks, task) =
        Webhooks::start(Vec::new(), settings(dir.path()), shutdown.clone()).expect("start");
    assert!(!hooks.wants(APP_ID, EventType::ChannelOccupied));
    let app = |secret: &str| vestnik_webhooks::AppHooks {
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: secret.into(),
        targets: vec![WebhookTarget::every_event(receiver.url("/live"))],
    };
    hooks.set_app(&app(support::SECRET)).expect("valid");
    assert!(hooks.wants(APP_ID, EventType::ChannelOccupied));
    let occupied = |name: &str| WebhookEvent::ChannelOccupied { channel: ch(name) };
    hooks.submit(APP_ID, occupied("first"));
    wait_for("the first webhook", WAIT, || receiver.requests().len() == 1).await;
    assert!(
        receiver.requests()[0].signed,
        "signed with the app's secret"
    );

    hooks.set_app(&app("a-rotated-secret")).expect("valid");
    hooks.submit(APP_ID, occupied("second"));
    wait_for("the second webhook", WAIT, || {
        receiver.requests().len() == 2
    })
    .await;
    let second = &receiver.requests()[1];
    assert_eq!(second.events()[0]["channel"], "second");
    assert!(
        !second.signed,
        "signed with the new secret, not the old one"
    );
    assert_eq!(second.headers["x-pusher-key"], KEY);

    // The receiver fails; the app is removed while its batch waits for a retry.
    receiver.set_status(500);
    hooks.submit(APP_ID, occupied("third"));
    wait_for("the third attempt", WAIT, || receiver.requests().len() >= 3).await;
    assert!(hooks.remove_app(APP_ID));
    assert!(!hooks.remove_app(APP_ID), "already removed");
    assert!(!hooks.wants(APP_ID, EventType::ChannelOccupied));
    wait_for("the batch dead-lettered", WAIT, || {
        hooks.dead_letters(APP_ID).is_ok_and(|d| d.len() == 1)
    })
    .await;
    hooks.submit(APP_ID, occupied("ignored"));
    receiver.set_status(200);
    let before = receiver.requests().len();
    // Back with targets: its later events go out again (the ignored one never does).
    hooks.set_app(&app(support::SECRET)).expect("valid");
    hooks.submit(APP_ID, occupied("back"));
    wait_for("the webhook after the return", WAIT, || {
        receiver.requests().len() > before
    })
    .await;
    let channels: Vec<Value> = receiver.requests()[before..]
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["channel"].clone())
        .collect();
    assert_eq!(channels, vec![json!("back")]);
    shutdown.cancel();
    task.await.expect("stopped");
}
