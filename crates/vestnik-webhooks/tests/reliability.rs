//! Reliability against a real HTTP receiver: retries with fresh signatures, restarts while the
//! receiver is down, dead letters and their replay, and a prompt shutdown with a request in flight.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{app, ch, free_addr, init_logs, settings, wait_for, Receiver, APP_ID};
use tokio_util::sync::CancellationToken;
use vestnik_webhooks::{Spool, WebhookEvent, WebhookSettings, WebhookTarget, Webhooks};

const WAIT: Duration = Duration::from_secs(15);

/// Shutdown must be prompt: it only spools what is in memory.
async fn stop(shutdown: CancellationToken, task: tokio::task::JoinHandle<()>) {
    let start = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("shutdown within 3 s")
        .expect("clean stop");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_retried_with_a_fresh_time_and_signature() {
    init_logs();
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500]);
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let s = WebhookSettings {
        batch_max: 3,
        retry_initial_ms: 50,
        ..settings(dir.path())
    };
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) = Webhooks::start(app(targets), s, shutdown.clone()).expect("start");
    for i in 0..3 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    wait_for("delivery after two 500s", WAIT, || {
        hooks.stats()[0].delivered == 3
    })
    .await;

    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    assert!(requests.iter().all(|r| r.signed), "every attempt is signed");
    let times: Vec<u64> = requests
        .iter()
        .map(|r| r.body["time_ms"].as_u64().expect("time"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "fresh time_ms on each attempt: {times:?}"
    );
    let signatures: Vec<_> = requests
        .iter()
        .map(|r| r.headers["x-pusher-signature"].clone())
        .collect();
    assert!(signatures[0] != signatures[1] && signatures[1] != signatures[2]);
    assert!(
        requests
            .iter()
            .all(|r| r.id_header() == requests[0].id_header()),
        "same ids"
    );
    let attempts: Vec<_> = requests
        .iter()
        .map(|r| r.headers["x-vestnik-webhook-attempt"].clone())
        .collect();
    assert_eq!(attempts, vec!["1", "2", "3"]);
    let stats = &hooks.stats()[0];
    assert_eq!((stats.retried, stats.failed, stats.pending), (2, 2, 0));
    stop(shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_receiver_is_down_loses_nothing() {
    init_logs();
    let addr = free_addr(); // nothing listens: connection refused
    let url = format!("http://{addr}/hooks");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = WebhookSettings {
        hold_ms: 3_000, // the vacate below is still held when we stop
        ..settings(dir.path())
    };
    let targets = || vec![WebhookTarget::every_event(url.clone())];

    let shutdown = CancellationToken::new();
    let (hooks, task) =
        Webhooks::start(app(targets()), s.clone(), shutdown.clone()).expect("start");
    for i in 0..25 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelVacated {
            channel: ch("last-room"),
        },
    );
    wait_for("25 spooled and tried", WAIT, || {
        let s = &hooks.stats()[0];
        s.pending == 25 && s.failed >= 1
    })
    .await;
    stop(shutdown, task).await;
    drop(hooks);

    let spool = Spool::open(dir.path()).expect("the spool is closed after shutdown");
    assert_eq!(
        spool.pending_events(APP_ID).expect("count"),
        26,
        "the held vacate was spooled too"
    );
    drop(spool);

    let shutdown = CancellationToken::new();
    let (hooks, task) = Webhooks::start(app(targets()), s, shutdown.clone()).expect("restart");
    wait_for("pending resumed", WAIT, || {
        let s = &hooks.stats()[0];
        s.pending == 26 && s.failed >= 1
    })
    .await;
    let receiver = Receiver::start_on(addr).await;
    wait_for("everything delivered", WAIT, || {
        hooks.stats()[0].pending == 0
    })
    .await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for event in receiver.accepted_events() {
        *seen
            .entry(event["id"].as_str().expect("id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 26, "every event arrived");
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    let vacates = receiver
        .accepted_events()
        .iter()
        .filter(|e| e["name"] == "channel_vacated" && e["channel"] == "last-room")
        .count();
    assert_eq!(vacates, 1);
    assert!(receiver.requests().iter().all(|r| r.signed));
    assert_eq!(hooks.stats()[0].delivered, 26);
    stop(shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retry_window_events_are_dead_letters_that_replay() {
    init_logs();
    let receiver = Receiver::start().await;
    receiver.set_status(500);
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let s = WebhookSettings {
        batch_max: 3,
        retry_window_secs: 1,
        retry_initial_ms: 50,
        ..settings(dir.path())
    };
    let targets = vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let (hooks, task) = Webhooks::start(app(targets), s, shutdown.clone()).expect("start");
    for i in 0..3 {
        hooks.submit(
            APP_ID,
            WebhookEvent::CacheMiss {
                channel: ch(&format!("cache-{i}")),
            },
        );
    }
    wait_for("3 dead letters", WAIT, || {
        hooks.dead_letters(APP_ID).expect("list").len() == 3
    })
    .await;
    let dead = hooks.dead_letters(APP_ID).expect("list");
    assert!(
        dead.iter()
            .all(|d| d.last_error == "HTTP 500" && d.attempts >= 2),
        "{dead:?}"
    );
    assert!(dead
        .iter()
        .all(|d| d.url == receiver.url("/hooks") && d.event["name"] == "cache_miss"));
    assert!(dead.iter().all(|d| d.event["id"] == d.id.as_str()));
    let stats = &hooks.stats()[0];
    assert_eq!((stats.dead_lettered, stats.pending), (3, 0));

    receiver.set_status(200);
    let chosen = vec![dead[0].id.clone(), dead[2].id.clone()];
    assert_eq!(
        hooks
            .replay(APP_ID, &["no-such-id".to_owned()])
            .expect("replay"),
        0
    );
    assert_eq!(hooks.replay(APP_ID, &chosen).expect("replay"), 2);
    wait_for("the replayed 2", WAIT, || hooks.stats()[0].delivered == 2).await;
    let mut delivered: Vec<String> = receiver
        .accepted_events()
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    delivered.sort();
    let mut expected = chosen.clone();
    expected.sort();
    assert_eq!(delivered, expected, "replays keep their original ids");
    let left = hooks.dead_letters(APP_ID).expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, dead[1].id);
    assert_eq!(hooks.stats()[0].replayed, 2);

    assert_eq!(
        hooks
            .purge(APP_ID, &["no-such-id".to_owned()])
            .expect("purge"),
        0
    );
    assert_eq!(hooks.purge_all(APP_ID).expect("purge"), 1);
    assert!(hooks.dead_letters(APP_ID).expect("list").is_empty());
    stop(shutdown, task).await;
    assert!(
        hooks.dead_letters(APP_ID).is_err(),
        "the spool is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_survive_a_restart_and_replay_offline() {
    init_logs();
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = WebhookSettings {
        retry_window_secs: 0, // the first failure is final
        ..settings(dir.path())
    };
    let targets = || vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let shutdown = CancellationToken::new();
    let (hooks, task) =
        Webhooks::start(app(targets()), s.clone(), shutdown.clone()).expect("start");
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelOccupied {
            channel: ch("room"),
        },
    );
    wait_for("a dead letter", WAIT, || {
        hooks.stats()[0].dead_lettered == 1
    })
    .await;
    stop(shutdown, task).await;
    drop(hooks);

    // The CLI's path while the broker is stopped: open the spool directly.
    let spool = Spool::open(dir.path()).expect("open");
    let dead = spool.dead_letters(APP_ID).expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error, "HTTP 503");
    assert_eq!(spool.replay(APP_ID, None, 20).expect("replay"), 1);
    drop(spool);

    receiver.set_status(200);
    let shutdown = CancellationToken::new();
    let (hooks, task) = Webhooks::start(app(targets()), s, shutdown.clone()).expect("restart");
    wait_for("the replayed event", WAIT, || {
        hooks.stats()[0].delivered == 1
    })
    .await;
    let accepted = receiver.accepted_events();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["id"], dead[0].id.as_str());
    assert!(hooks.dead_letters(APP_ID).expect("list").is_empty());
    stop(shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_hung_request_and_the_restart_sends_it_again() {
    init_logs();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(30));
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path());
    let targets = || vec![WebhookTarget::every_event(receiver.url("/hooks"))];
    let shutdown = CancellationToken::new();
    let (hooks, task) =
        Webhooks::start(app(targets()), s.clone(), shutdown.clone()).expect("start");
    hooks.submit(
        APP_ID,
        WebhookEvent::ChannelOccupied {
            channel: ch("room"),
        },
    );
    wait_for("the request in flight", WAIT, || receiver.concurrent() == 1).await;
    stop(shutdown, task).await;
    drop(hooks);

    receiver.set_delay(Duration::ZERO);
    let shutdown = CancellationToken::new();
    let (hooks, task) = Webhooks::start(app(targets()), s, shutdown.clone()).expect("restart");
    wait_for("the event, sent again", WAIT, || {
        hooks.stats()[0].delivered == 1
    })
    .await;
    assert_eq!(receiver.accepted_events()[0]["channel"], "room");
    stop(shutdown, task).await;
}
