//! A PostgreSQL of the test's own (initdb + pg_ctl on a free port in a temp dir; the shared server
//! is never touched) is stopped while a feed follows it: the feed reports down and keeps its
//! snapshot, and after a restart it reconnects, resyncs, and sees changes again.
//!
//! initdb refuses to run as root, so when the test runs as root it runs the PostgreSQL binaries as
//! the `postgres` system user through `runuser -u postgres --`, in a temp dir handed to that user.

mod common;

use std::time::Duration;

use common::own_pg::OwnPostgres;
use common::{eventually, next_change};
use sqlx::Connection;
use vestnik_apps::{Catalogue, Change, FeedOptions, FeedState, NewApp, Secret};

async fn raw(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::Executor::execute(&mut c, sql).await.expect(sql);
    c.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_survives_a_postgres_restart() {
    let pg = OwnPostgres::init().await;
    pg.start().await;
    let store = vestnik_apps::PgStore::connect(&pg.url())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
        .create(NewApp {
            id: Some("1001".into()),
            key: Some("k1".into()),
            secret: Some(Secret::new("first-secret")),
            ..NewApp::generated()
        })
        .await
        .expect("create");
    let mut feed = store
        .watch(FeedOptions {
            refresh_interval: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            ..FeedOptions::default()
        })
        .await
        .expect("watch");
    let before = feed.snapshot();
    assert_eq!(before.apps.len(), 1);

    pg.stop().await;
    let mut states = feed.state_changes();
    tokio::time::timeout(
        Duration::from_secs(10),
        states.wait_for(|s| matches!(s, FeedState::Down { .. })),
    )
    .await
    .expect("the feed reports down within 10 s")
    .expect("feed running");
    // Down, it keeps serving what it knew.
    let during = feed.snapshot();
    assert_eq!(during.apps, before.apps);
    assert_eq!(during.revision, before.revision);
    let unreachable = store.show("1001").await.unwrap_err();
    assert_eq!(unreachable.status(), 503);
    assert!(feed.try_recv().is_none(), "an outage is not a deletion");

    pg.start().await;
    // A change made as soon as the database is back, possibly before the feed reconnects: the
    // resync (or the notification) brings it.
    raw(
        &pg.url(),
        "UPDATE vestnik_apps SET api_rate_limit = 5 WHERE id = '1001'",
    )
    .await;
    tokio::time::timeout(
        Duration::from_secs(15),
        states.wait_for(|s| *s == FeedState::Up),
    )
    .await
    .expect("the feed reconnects within 15 s")
    .expect("feed running");
    eventually(
        Duration::from_secs(5),
        "the change made at the restart",
        || {
            let limit = feed.snapshot().apps[0].limits.api_rate_limit;
            async move { limit == 5 }
        },
    )
    .await;
    while feed.try_recv().is_some() {}

    // And a change after the reconnect arrives through LISTEN again, within a second.
    raw(
        &pg.url(),
        "UPDATE vestnik_apps SET api_rate_limit = 6 WHERE id = '1001'",
    )
    .await;
    match next_change(&mut feed, Duration::from_secs(1)).await {
        Change::Upsert(app) => assert_eq!(app.limits.api_rate_limit, 6),
        other => panic!("expected an upsert, got {other:?}"),
    }
    drop(feed);
    drop(store);
    pg.stop().await;
}
