//! Positions, history and recovery through the broker's public API, without IO: what each socket's
//! outbox receives when it subscribes with `recover`, also while events are being published.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vestnik_broker::adapter::MemoryHub;
use vestnik_broker::cluster::ClusterSettings;
use vestnik_broker::{
    App, Broker, BrokerConfig, ConnectionHandle, HistoryConfig, PublishEvent, StaticAppStore,
};
use vestnik_protocol::limits::MAX_RECOVERED_EVENTS;
use vestnik_protocol::message::{Recover, Subscribe};
use vestnik_protocol::ChannelName;

fn broker(app: App) -> (Broker, Arc<App>) {
    let config = BrokerConfig {
        outbox_capacity: 100_000,
        ..BrokerConfig::default()
    };
    let b = Broker::new(Arc::new(StaticAppStore::new(vec![app]).unwrap()), config);
    let app = b.apps().all()[0].clone();
    (b, app)
}

fn frames(conn: &ConnectionHandle) -> Vec<Value> {
    let mut out = VecDeque::new();
    conn.outbox().drain_now(&mut out);
    out.iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

fn subscribe(b: &Broker, conn: &ConnectionHandle, channel: &str, recover: Option<(&str, u64)>) {
    b.subscribe(
        conn,
        Subscribe {
            channel: ChannelName::parse(channel).unwrap(),
            auth: None,
            channel_data: None,
            recover: recover.map(|(epoch, offset)| Recover {
                epoch: epoch.into(),
                offset,
            }),
        },
    )
    .unwrap();
}

fn publish(b: &Broker, app: &App, channel: &str, data: &str) {
    b.publish(
        app,
        &PublishEvent {
            name: "e",
            data,
            channels: &[ChannelName::parse(channel).unwrap()],
            except: None,
        },
    );
}

fn position(frame: &Value) -> (String, u64) {
    let p = &frame["position"];
    (
        p["epoch"].as_str().unwrap().to_owned(),
        p["offset"].as_u64().unwrap(),
    )
}

fn recovery(frame: &Value) -> Value {
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    data["recovery"].clone()
}

#[test]
fn events_carry_positions_and_a_returning_socket_gets_what_it_missed() {
    let (b, app) = broker(App::default());
    let first = b.connect(app.clone()).unwrap();
    subscribe(&b, &first, "orders", None);
    let succeeded = frames(&first);
    assert_eq!(succeeded.len(), 1);
    let (epoch, start) = position(&succeeded[0]);
    assert_eq!(start, 0, "the channel's position before any event");
    assert_eq!(
        succeeded[0]["data"], "{}",
        "no recovery asked, data as before"
    );

    publish(&b, &app, "orders", "1");
    publish(&b, &app, "orders", "2");
    let got = frames(&first);
    assert_eq!(
        got.iter().map(position).collect::<Vec<_>>(),
        [(epoch.clone(), 1), (epoch.clone(), 2)]
    );
    b.disconnect(&first);

    // Published while nobody listens: kept all the same.
    for i in 3..=5 {
        publish(&b, &app, "orders", &i.to_string());
    }
    let back = b.connect(app.clone()).unwrap();
    subscribe(&b, &back, "orders", Some((&epoch, 2)));
    let got = frames(&back);
    assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(recovery(&got[0]), json!({"recovered": true, "missed": 3}));
    assert_eq!(position(&got[0]), (epoch.clone(), 5));
    let missed: Vec<_> = got[1..].iter().map(|f| f["data"].clone()).collect();
    assert_eq!(missed, ["3", "4", "5"]);
    publish(&b, &app, "orders", "6");
    assert_eq!(position(&frames(&back)[0]), (epoch, 6));
}

#[test]
fn recovery_refused_with_its_reason() {
    let app = App {
        history: HistoryConfig {
            size: 3,
            channels: vec![vestnik_broker::HistoryRule {
                prefix: "quiet-".into(),
                enabled: Some(false),
                size: None,
                ttl: None,
            }],
            ..HistoryConfig::default()
        },
        ..App::default()
    };
    let (b, app) = broker(app);
    for i in 1..=5 {
        publish(&b, &app, "c", &i.to_string());
    }
    let (epoch, top) = {
        let (e, t) = b.runtime(&app).history.position("c").unwrap();
        (e, t)
    };
    assert_eq!(top, 5);
    let cases = [
        (
            "c",
            (epoch.as_str(), 1),
            json!({"recovered": false, "reason": "too_old"}),
        ),
        (
            "c",
            ("nope", 4),
            json!({"recovered": false, "reason": "epoch_changed"}),
        ),
        (
            "quiet-c",
            (epoch.as_str(), 0),
            json!({"recovered": false, "reason": "history_off"}),
        ),
        (
            "c",
            (epoch.as_str(), 2),
            json!({"recovered": true, "missed": 3}),
        ),
    ];
    for (channel, from, want) in cases {
        let conn = b.connect(app.clone()).unwrap();
        subscribe(&b, &conn, channel, Some(from));
        let got = frames(&conn);
        assert_eq!(recovery(&got[0]), want, "{channel} {from:?}");
        let missed = want["missed"].as_u64().unwrap_or(0) as usize;
        assert_eq!(got.len(), 1 + missed);
    }
    // History off: no position on events or on the join.
    let conn = b.connect(app.clone()).unwrap();
    subscribe(&b, &conn, "quiet-c", None);
    publish(&b, &app, "quiet-c", "x");
    for f in frames(&conn) {
        assert!(f.get("position").is_none(), "{f}");
    }
}

#[test]
fn history_switched_off_for_the_app_changes_nothing_on_the_wire() {
    let app = App {
        history: HistoryConfig {
            enabled: false,
            ..HistoryConfig::default()
        },
        ..App::default()
    };
    let (b, app) = broker(app);
    let conn = b.connect(app.clone()).unwrap();
    subscribe(&b, &conn, "c", None);
    publish(&b, &app, "c", "x");
    let got = frames(&conn);
    assert_eq!(
        got,
        [
            json!({"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}),
            json!({"event":"e","channel":"c","data":"x"}),
        ]
    );
    assert_eq!(b.runtime(&app).history.stream_count(), 0);
}

/// A publisher races sockets that recover: each recovering socket must see every offset after its
/// starting point exactly once and in order, the missed ones and then the live ones.
#[test]
fn a_publish_racing_a_recovering_subscribe_leaves_no_gap_and_no_duplicate() {
    const EVENTS: u64 = 2_000;
    let (b, app) = broker(App {
        history: HistoryConfig {
            size: 10_000,
            ..HistoryConfig::default()
        },
        ..App::default()
    });
    publish(&b, &app, "race", "0");
    let (epoch, _) = b.runtime(&app).history.position("race").unwrap();
    let publisher = {
        let (b, app) = (b.clone(), app.clone());
        std::thread::spawn(move || {
            for i in 1..EVENTS {
                publish(&b, &app, "race", &i.to_string());
            }
        })
    };
    let mut checked = 0;
    while !publisher.is_finished() || checked == 0 {
        let conn = b.connect(app.clone()).unwrap();
        let (_, from) = b.runtime(&app).history.position("race").unwrap();
        let from = from.saturating_sub(3);
        subscribe(&b, &conn, "race", Some((&epoch, from)));
        // At most this many were missed when the subscribe ran: a starved test thread can fall
        // more than a recovery's cap behind the publisher, and `too_old` is then the answer.
        let (_, after) = b.runtime(&app).history.position("race").unwrap();
        std::thread::sleep(Duration::from_micros(200));
        let got = frames(&conn);
        let rec = recovery(&got[0]);
        if after - from > MAX_RECOVERED_EVENTS as u64 && rec["recovered"] == false {
            assert_eq!(rec["reason"], "too_old", "{rec}");
            b.disconnect(&conn);
            continue;
        }
        assert_eq!(rec["recovered"], true, "{rec}");
        let offsets: Vec<u64> = got[1..].iter().map(|f| position(f).1).collect();
        let want: Vec<u64> = (from + 1..=from + offsets.len() as u64).collect();
        assert_eq!(offsets, want, "recovered from {from}");
        assert!(offsets.len() as u64 >= rec["missed"].as_u64().unwrap());
        b.disconnect(&conn);
        checked += 1;
    }
    publisher.join().unwrap();
    assert_eq!(b.runtime(&app).history.position("race").unwrap().1, EVENTS);
}

#[tokio::test]
async fn a_node_in_a_cluster_gives_no_positions_and_does_not_recover() {
    let hub = MemoryHub::new();
    let b = Broker::new(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        BrokerConfig::default(),
    );
    let app = b.apps().all()[0].clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let settings = ClusterSettings {
        heartbeat_interval: Duration::from_millis(50),
        node_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_millis(500),
        ..ClusterSettings::default()
    };
    tokio::spawn(
        b.join_cluster(1, Arc::new(hub.adapter(1)), settings, async {
            let _ = rx.await;
        }),
    );
    let conn = b.connect(app.clone()).unwrap();
    subscribe(&b, &conn, "c", Some(("e", 1)));
    publish(&b, &app, "c", "x");
    let got = frames(&conn);
    assert_eq!(
        recovery(&got[0]),
        json!({"recovered": false, "reason": "cluster_history_unavailable"})
    );
    assert!(got.iter().all(|f| f.get("position").is_none()), "{got:?}");
    assert_eq!(b.runtime(&app).history.stream_count(), 0);
    let _ = tx.send(());
}
