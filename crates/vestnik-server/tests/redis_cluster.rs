//! Two real vestnik nodes on a private Redis Cluster (3 masters, 3 replicas; see
//! `vestnik_testkit::redis_cluster`): a subscriber on node B receives every one of 200 events
//! triggered through node A, once and in order, although the master holding the channel's
//! history is SIGKILLed in the middle (its replica takes over by automatic failover).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vestnik_testkit::redis_cluster::RedisCluster;

/// Events triggered through node A.
const EVENTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_once_in_order_through_a_master_failover() {
    let mut cluster = RedisCluster::start();
    let prefix = format!("vestnik-rcluster-{}", std::process::id());
    let config = format!(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"{}\"\nprefix = \"{prefix}\"\n\
         heartbeat_interval_ms = 100\n{APPS}",
        cluster.url()
    );
    let a = BrokerProcess::spawn(bin(), &config);
    let b = BrokerProcess::spawn(bin(), &config);
    let mut on_b = WsClient::connect(&b.ws_url(KEY)).await;
    on_b.subscribe(json!({"channel": "orders"})).await;

    // The master of the channel's history keys (`{prefix:h:app:channel}:m` and `:s`).
    let victim = cluster.master_of_slot(cluster.slot_of(&format!("{{{prefix}:h:main:orders}}")));
    let api_a = api(&a);
    let started = Instant::now();
    for i in 0..EVENTS {
        if i == EVENTS / 2 {
            tokio::task::block_in_place(|| cluster.kill(victim));
        }
        let sent = api_a.trigger(&["orders"], "e", &i.to_string()).await;
        assert_eq!(sent.status, 200, "trigger {i}: {}", sent.body);
    }

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < EVENTS {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} of {EVENTS} events after 60 s: {got:?}",
            got.len()
        );
        match on_b.recv_within(left).await {
            Some(Received::Json(v)) if v["event"] == "e" => {
                got.push(v["data"].as_str().expect("data").parse::<usize>().unwrap());
            }
            Some(Received::Json(_)) => {}
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    let want: Vec<usize> = (0..EVENTS).collect();
    assert_eq!(got, want, "every event once, in order");
    // Nothing more (no duplicate) comes within a short window.
    on_b.expect_no_event("e", Duration::from_millis(500)).await;
    eprintln!(
        "{EVENTS} events through a master failover in {:?}",
        started.elapsed()
    );
}
