//! The store suite: every behaviour the catalogue and the ledger promise, run against each database.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vestnik_apps::{
    AppUpdate, Change, Day, FeedOptions, FeedState, Hour, Limits, NewApp, Options, Quotas, Secret,
    Store, StoreError, Usage, UsageRow,
};
use vestnik_protocol::webhook::WebhookTarget;

use super::{eventually, next_change, TestDb};

/// How long a change may take to reach a feed: the "within a second".
pub const WITHIN_A_SECOND: Duration = Duration::from_secs(1);

pub async fn open(db: &TestDb) -> Arc<dyn Store> {
    let store = vestnik_apps::open(&db.url).await.expect("open store");
    store.migrate().await.expect("migrate");
    store
}

fn named(id: &str, key: &str) -> NewApp {
    NewApp {
        id: Some(id.into()),
        key: Some(key.into()),
        secret: Some(Secret::new(format!("{id}-secret-value"))),
        ..NewApp::generated()
    }
}

pub async fn migrate_twice_is_a_no_op(db: &TestDb) {
    let store = vestnik_apps::open(&db.url).await.expect("open store");
    let first = store.migrate().await.expect("first migrate");
    assert_eq!((first.from, first.to), (0, 1));
    store.create(named("1001", "k1001")).await.expect("create");
    let second = store.migrate().await.expect("second migrate");
    assert_eq!((second.from, second.to), (1, 1));
    // Concurrent migrations (two nodes starting together) are serialised, not failed.
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    assert_eq!(a.expect("a").from, 1);
    assert_eq!(b.expect("b").from, 1);
    let apps = store.list().await.expect("list");
    assert_eq!(apps.len(), 1, "the second migrate kept the data");
}

pub async fn crud(db: &TestDb) {
    let store = open(db).await;
    let generated = store
        .create(NewApp::generated())
        .await
        .expect("create generated");
    assert_eq!(generated.id.len(), 9);
    assert!(generated.id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(generated.key.len(), 20);
    assert_eq!(generated.secret.expose().len(), 32);
    assert!(generated.enabled);
    assert_eq!(generated.limits, Limits::default());
    assert_eq!(generated.options, Options::default());
    assert!(generated.previous_secret.is_none());
    assert!(generated.revision > 0);

    let hooks = vec![WebhookTarget::every_event("https://shop.example/hook")];
    let given = store
        .create(NewApp {
            webhooks: hooks.clone(),
            quotas: Quotas {
                max_connections: 10,
                max_messages_per_day: 1_000,
            },
            ..named("app-a", "key-a")
        })
        .await
        .expect("create given");
    assert_eq!(given.secret.expose(), "app-a-secret-value");
    assert_eq!(given.webhooks, hooks);
    assert_eq!(given.quotas.max_connections, 10);

    let listed: Vec<String> = store
        .list()
        .await
        .expect("list")
        .iter()
        .map(|a| a.id.clone())
        .collect();
    let mut sorted = vec![generated.id.clone(), "app-a".to_owned()];
    sorted.sort();
    assert_eq!(listed, sorted);
    assert_eq!(store.show("app-a").await.expect("show"), given);

    let limits = Limits {
        api_rate_limit: 50,
        max_connections: 200,
        ..Limits::default()
    };
    let options = Options {
        allowed_origins: vec!["https://shop.example".into()],
        subscription_count: true,
        ..Options::default()
    };
    let updated = store
        .update(
            "app-a",
            AppUpdate {
                limits: Some(limits),
                options: Some(options.clone()),
                webhooks: Some(Vec::new()),
                expected_revision: Some(given.revision),
                ..AppUpdate::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.limits, limits);
    assert_eq!(updated.options, options);
    assert!(updated.webhooks.is_empty());
    assert_eq!(updated.quotas, given.quotas, "groups not given are kept");
    assert!(updated.revision > given.revision);
    assert_eq!(updated.created_at, given.created_at);
    assert!(updated.updated_at >= given.updated_at);

    // A stale revision is a conflict: the other admin's change is not overwritten.
    let stale = store
        .update(
            "app-a",
            AppUpdate {
                limits: Some(Limits::default()),
                expected_revision: Some(given.revision),
                ..AppUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale:?}");
    assert_eq!(stale.status(), 409);

    let disabled = store.disable("app-a").await.expect("disable");
    assert!(!disabled.enabled);
    assert_eq!(disabled.limits, limits);
    assert!(store.enable("app-a").await.expect("enable").enabled);

    let invalid = store
        .update(
            "app-a",
            AppUpdate {
                limits: Some(Limits {
                    max_batch_events: 0,
                    ..Limits::default()
                }),
                ..AppUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.status(), 422, "{invalid:?}");
    let bad_hook = store
        .create(NewApp {
            webhooks: vec![WebhookTarget::every_event("ftp://nope")],
            ..NewApp::generated()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_hook.status(), 422);
    let bad_id = store.create(named("a/b", "kk")).await.unwrap_err();
    assert_eq!(bad_id.status(), 422);

    store.delete("app-a").await.expect("delete");
    let gone = store.show("app-a").await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }));
    assert_eq!(gone.status(), 404);
    assert_eq!(store.delete("app-a").await.unwrap_err().status(), 404);
    assert_eq!(store.disable("app-a").await.unwrap_err().status(), 404);
    assert_eq!(
        store
            .rotate_secret("app-a", Duration::ZERO)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(store.list().await.expect("list").len(), 1);
}

pub async fn duplicates_are_refused(db: &TestDb) {
    let store = open(db).await;
    store
        .create(named("1001", "shop-key"))
        .await
        .expect("create");
    for (new, what) in [
        (named("1001", "other-key"), "duplicate id"),
        (named("1002", "shop-key"), "duplicate key"),
        (named("1003", "1001"), "key equal to another app's id"),
        (named("shop-key", "k3"), "id equal to another app's key"),
    ] {
        let e = store.create(new).await.unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{what}: {e:?}");
        assert_eq!(e.status(), 409, "{what}");
    }
    // An app whose key is its own id is unambiguous.
    store
        .create(named("same", "same"))
        .await
        .expect("key = own id");
    // The rule holds for SQL that bypasses the store too (an admin panel).
    assert!(
        db.raw_fails("INSERT INTO vestnik_apps (id, app_key, secret) VALUES ('2001', '1001', 'secret-secret')")
            .await,
        "the trigger refuses a key equal to another app's id"
    );
    assert_eq!(store.list().await.expect("list").len(), 2);
}

pub async fn rotation_keeps_the_old_secret_for_the_grace(db: &TestDb) {
    let store = open(db).await;
    let before = store.create(named("1001", "k1")).await.expect("create");
    let old = before.secret.clone();
    let started = SystemTime::now();
    let rotated = store
        .rotate_secret("1001", Duration::from_secs(2))
        .await
        .expect("rotate");
    assert_ne!(rotated.secret, old);
    let previous = rotated.previous_secret.clone().expect("previous kept");
    assert_eq!(previous.secret, old);
    // The grace end is the database's now + 2 s; the database runs on this machine.
    let grace = previous
        .expires_at
        .duration_since(started)
        .expect("ends after the rotation");
    assert!(
        grace > Duration::from_millis(1_500) && grace < Duration::from_millis(3_500),
        "{grace:?}"
    );
    let now: Vec<Secret> = rotated.valid_secrets(SystemTime::now()).cloned().collect();
    assert_eq!(now, vec![rotated.secret.clone(), old.clone()]);
    // Once the grace is over, only the new secret is valid (as read back from the store).
    eventually(Duration::from_secs(5), "the grace to end", || {
        let store = store.clone();
        let new = rotated.secret.clone();
        async move {
            let app = store.show("1001").await.expect("show");
            app.valid_secrets(SystemTime::now())
                .cloned()
                .collect::<Vec<_>>()
                == vec![new]
        }
    })
    .await;

    // A rotation during another's grace keeps only the secret it replaces.
    let second = store
        .rotate_secret("1001", Duration::from_secs(60))
        .await
        .expect("rotate");
    let third = store
        .rotate_secret("1001", Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(third.previous_secret.expect("kept").secret, second.secret);
    // A zero grace drops the old secret at once.
    let immediate = store
        .rotate_secret("1001", Duration::ZERO)
        .await
        .expect("rotate");
    assert!(immediate.previous_secret.is_none());
    assert_eq!(immediate.valid_secrets(SystemTime::now()).count(), 1);
    // Debug of the record never shows a secret.
    let shown = format!("{:?}", third.secret);
    assert!(!shown.contains(third.secret.expose()));
    let too_long = store
        .rotate_secret("1001", Duration::from_secs(8 * 24 * 3600))
        .await
        .unwrap_err();
    assert_eq!(too_long.status(), 422);
}

fn fast_feed() -> FeedOptions {
    FeedOptions {
        refresh_interval: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        capacity: 64,
    }
}

fn upserted(change: Change) -> Arc<vestnik_apps::AppRecord> {
    match change {
        Change::Upsert(app) => app,
        other => panic!("expected an upsert, got {other:?}"),
    }
}

pub async fn raw_sql_changes_reach_the_feed(db: &TestDb) {
    let store = open(db).await;
    let a = store.create(named("1001", "k1")).await.expect("create");
    let mut feed = store.watch(fast_feed()).await.expect("watch");
    assert_eq!(feed.state(), FeedState::Up);
    let snapshot = feed.snapshot();
    assert_eq!(snapshot.apps.len(), 1);
    assert_eq!(snapshot.revision, a.revision);

    // An admin panel's UPDATE, in plain SQL.
    db.raw("UPDATE vestnik_apps SET api_rate_limit = 7, enabled = false WHERE id = '1001'")
        .await;
    let app = upserted(next_change(&mut feed, WITHIN_A_SECOND).await);
    assert_eq!(app.limits.api_rate_limit, 7);
    assert!(!app.enabled);
    assert!(app.revision > a.revision);

    // An admin panel's INSERT naming only the credentials gets the same defaults as the config.
    db.raw("INSERT INTO vestnik_apps (id, app_key, secret) VALUES ('2002', 'k2', 'panel-secret')")
        .await;
    let inserted = upserted(next_change(&mut feed, WITHIN_A_SECOND).await);
    assert_eq!(inserted.id, "2002");
    assert!(inserted.enabled);
    assert_eq!(inserted.limits, Limits::default());
    assert_eq!(inserted.options, Options::default());
    assert_eq!(inserted.quotas, Quotas::default());
    assert!(inserted.webhooks.is_empty());

    // The store's own writes arrive the same way.
    store.create(named("3003", "k3")).await.expect("create");
    assert_eq!(
        upserted(next_change(&mut feed, WITHIN_A_SECOND).await).id,
        "3003"
    );

    // A row the broker cannot serve keeps its last good version: no change, listed as rejected.
    db.raw("UPDATE vestnik_apps SET webhooks = '[{\"nope\": 1}]' WHERE id = '2002'")
        .await;
    db.raw("DELETE FROM vestnik_apps WHERE id = '1001'").await;
    match next_change(&mut feed, WITHIN_A_SECOND).await {
        Change::Delete { id } => assert_eq!(id, "1001"),
        other => panic!("expected the delete, got {other:?}"),
    }
    let snapshot = feed.snapshot();
    let ids: Vec<&str> = snapshot.apps.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["2002", "3003"], "2002 keeps its last good version");
    let fresh = store.snapshot().await.expect("snapshot");
    assert_eq!(fresh.rejected.len(), 1);
    assert_eq!(fresh.rejected[0].id, "2002");
    assert!(fresh.revision >= snapshot.revision);
    assert!(feed.try_recv().is_none(), "nothing else was emitted");
}

pub async fn a_slow_consumer_gets_a_resync(db: &TestDb) {
    let store = open(db).await;
    let mut feed = store
        .watch(FeedOptions {
            capacity: 1,
            ..fast_feed()
        })
        .await
        .expect("watch");
    for i in 0..3 {
        store
            .create(named(&format!("10{i}"), &format!("k{i}")))
            .await
            .expect("create");
    }
    // Read nothing until the feed has taken in all three.
    eventually(
        Duration::from_secs(3),
        "the feed's view to hold three apps",
        || {
            let n = feed.snapshot().apps.len();
            async move { n == 3 }
        },
    )
    .await;
    // The queue held one change; the ones after it were replaced by a resync with the whole view,
    // and applying what arrives, in order, ends at the catalogue's state.
    let mut view = std::collections::BTreeMap::new();
    let mut resyncs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while (view.len() < 3 || resyncs == 0) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
            Ok(Some(Change::Resync(s))) => {
                resyncs += 1;
                view = s.apps.iter().map(|a| (a.id.clone(), a.revision)).collect();
            }
            Ok(Some(Change::Upsert(a))) => {
                view.insert(a.id.clone(), a.revision);
            }
            Ok(Some(Change::Delete { id })) => {
                view.remove(&id);
            }
            Ok(None) => panic!("feed ended"),
            Err(_) => {}
        }
    }
    assert!(resyncs >= 1, "a resync arrived");
    let ids: Vec<&String> = view.keys().collect();
    assert_eq!(ids, ["100", "101", "102"]);
}

pub async fn usage_merges_under_concurrent_increments(db: &TestDb) {
    let store = open(db).await;
    let day = Day::containing(SystemTime::now());
    let h1 = day.first_hour().next();
    let h2 = h1.next();
    const WRITERS: u64 = 8;
    const FLUSHES: u64 = 20;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for f in 0..FLUSHES {
                let usage = Usage {
                    peak_connections: w * 100 + f,
                    messages_delivered: 3,
                    messages_received: 1,
                    bytes_out: 100,
                    webhooks_sent: 1,
                };
                // Two apps and two hours per flush, given in a different order by each writer.
                let mut rows = vec![
                    UsageRow {
                        app_id: "a".into(),
                        hour: h1,
                        usage,
                    },
                    UsageRow {
                        app_id: "a".into(),
                        hour: h2,
                        usage,
                    },
                    UsageRow {
                        app_id: "b".into(),
                        hour: h1,
                        usage,
                    },
                ];
                if w % 2 == 1 {
                    rows.reverse();
                }
                store.record_usage(rows).await.expect("record");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let n = WRITERS * FLUSHES;
    let rows = store.usage("a", h1, h2.next()).await.expect("usage");
    assert_eq!(rows.len(), 2);
    for (row, hour) in rows.iter().zip([h1, h2]) {
        assert_eq!(row.hour, hour);
        assert_eq!(
            row.usage.peak_connections,
            (WRITERS - 1) * 100 + FLUSHES - 1
        );
        assert_eq!(row.usage.messages_delivered, 3 * n);
        assert_eq!(row.usage.messages_received, n);
        assert_eq!(row.usage.bytes_out, 100 * n);
        assert_eq!(row.usage.webhooks_sent, n);
    }
    // The range is half-open and per app.
    assert_eq!(
        store.usage("a", h2, h2.next()).await.expect("usage").len(),
        1
    );
    assert!(store
        .usage("a", Hour::from_unix(0), h1)
        .await
        .expect("usage")
        .is_empty());
    assert_eq!(
        store.usage("b", h1, h2.next()).await.expect("usage").len(),
        1
    );
    // Daily counts for quotas: received + delivered, over the UTC day.
    let daily = store.daily_messages(day).await.expect("daily");
    assert_eq!(
        daily,
        vec![("a".to_owned(), 8 * n), ("b".to_owned(), 4 * n)]
    );
    let yesterday = Day::containing(SystemTime::now() - Duration::from_secs(86_400));
    assert!(store
        .daily_messages(yesterday)
        .await
        .expect("daily")
        .is_empty());
}

pub async fn every_node_converges(db: &TestDb) {
    let store = open(db).await;
    store.create(named("1001", "k1")).await.expect("create");
    // Two nodes, each with its own store and feed.
    let other = open(db).await;
    let mut node_a = store.watch(fast_feed()).await.expect("watch a");
    let mut node_b = other.watch(fast_feed()).await.expect("watch b");
    // One change reaches both within a second.
    store.disable("1001").await.expect("disable");
    for feed in [&mut node_a, &mut node_b] {
        assert!(!upserted(next_change(feed, WITHIN_A_SECOND).await).enabled);
    }
    // A burst of writes from both sides, and a delete: both views end at the catalogue's state.
    for i in 1..=20u32 {
        let writer = if i % 2 == 0 { &store } else { &other };
        writer
            .update(
                "1001",
                AppUpdate {
                    limits: Some(Limits {
                        api_rate_limit: i,
                        ..Limits::default()
                    }),
                    ..AppUpdate::default()
                },
            )
            .await
            .expect("update");
    }
    store.create(named("2002", "k2")).await.expect("create");
    store.create(named("3003", "k3")).await.expect("create");
    other.delete("2002").await.expect("delete");
    let truth = store.snapshot().await.expect("snapshot");
    for feed in [&node_a, &node_b] {
        eventually(
            Duration::from_secs(3),
            "the node's view to match the catalogue",
            || {
                let view = feed.snapshot();
                let same = view.revision == truth.revision && view.apps == truth.apps;
                async move { same }
            },
        )
        .await;
    }
    assert_eq!(truth.apps.len(), 2);
    assert_eq!(truth.apps[0].limits.api_rate_limit, 20);
}
