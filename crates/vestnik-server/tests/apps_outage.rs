//! The app database goes away while a node serves (issue 15): the test runs its own PostgreSQL
//! (`initdb` + `pg_ctl` on a free port, never the shared one) and stops it. The node keeps serving
//! the apps it knows (sockets and triggers), says so in its log and in `vestnik_apps_store_up 0`,
//! and once the database is back it reports up again and an app created after the return is live.

mod apps_support;
mod common;
#[path = "../../vestnik-apps/tests/common/own_pg.rs"]
mod own_pg;

use std::time::Duration;

use apps_support::{admin, field, TOKEN};
use common::*;
use own_pg::OwnPostgres;
use serde_json::json;

async fn store_up(port: u16) -> f64 {
    value(&scrape(port).await, "vestnik_apps_store_up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_serving_while_its_database_is_down_and_catches_up() {
    let pg = OwnPostgres::init().await;
    pg.start().await;
    let data = std::env::temp_dir().join(apps_support::unique("vestnik_outage_data"));
    let b = BrokerProcess::spawn_with(
        bin(),
        "[server]\nmetrics_port = 0\n",
        &[
            ("VESTNIK_APPS_URL", pg.url().as_str()),
            ("VESTNIK_ADMIN_TOKEN", TOKEN),
            ("VESTNIK_DATA_DIR", data.display().to_string().as_str()),
        ],
    );
    let metrics = metrics_port(&b).await;
    assert_eq!(store_up(metrics).await, 1.0);
    let created = admin(b.port, "POST", "/admin/apps", r#"{"key": "kept-key"}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let (id, secret) = (field(&created.json, "id"), field(&created.json, "secret"));
    let api = Api::new(b.port, &id, "kept-key", &secret);
    wait_until("the new app served", Duration::from_secs(2), || {
        let api = api.clone();
        async move { api.trigger(&["c"], "e", "{}").await.status == 200 }
    })
    .await;

    // `/usage` on the metrics listener lists the apps served, the one created live too.
    let usage = raw_http(metrics, "GET", "/usage", "").await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let usage: serde_json::Value = serde_json::from_str(&usage.body).expect("usage is JSON");
    assert!(
        usage["apps"]
            .as_array()
            .is_some_and(|apps| apps.iter().any(|a| a["id"] == id.as_str())),
        "{usage}"
    );

    pg.stop().await;
    wait_until(
        "the gauge says down",
        Duration::from_secs(15),
        || async move { store_up(metrics).await == 0.0 },
    )
    .await;
    // Still serving what it knew: a socket, a subscription and a trigger.
    let mut c = WsClient::connect(&b.ws_url("kept-key")).await;
    let ok = c.subscribe(json!({"channel": "c"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    // The per-app gauges follow the apps served, not the config file's.
    let label = format!("app_id=\"{id}\"");
    let sockets = sample(
        &scrape(metrics).await,
        "vestnik_sockets_connected",
        &[&label],
    );
    assert_eq!(sockets, Some(1.0));
    assert_eq!(api.trigger(&["c"], "during", "{}").await.status, 200);
    c.expect_event("during").await;
    // Admin writes need the database: 503 with a JSON error.
    let refused = admin(b.port, "POST", "/admin/apps", "{}").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.json["error"].is_string());
    let logs = b.drain_logs();
    assert!(
        logs.iter().any(|l| l.contains("app database unreachable")),
        "{logs:?}"
    );

    pg.start().await;
    wait_until(
        "the gauge says up",
        Duration::from_secs(20),
        || async move { store_up(metrics).await == 1.0 },
    )
    .await;
    // A change made after the return reaches the node, and the old socket stayed open throughout.
    let later = admin(b.port, "POST", "/admin/apps", r#"{"key": "later-key"}"#).await;
    assert_eq!(later.status, 201, "{}", later.body);
    wait_until(
        "the app created after the return",
        Duration::from_secs(2),
        || {
            let url = b.ws_url("later-key");
            async move {
                match WsClient::try_connect(&url, &[]).await {
                    Ok(mut c) => matches!(
                        c.recv_within(Duration::from_secs(1)).await,
                        Some(Received::Json(v)) if v["event"] == "pusher:connection_established"
                    ),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    assert_eq!(api.trigger(&["c"], "after", "{}").await.status, 200);
    c.expect_event("after").await;
}
