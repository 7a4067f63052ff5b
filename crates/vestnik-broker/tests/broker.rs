//! The broker core through its public API, without any IO: what each socket's outbox receives.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use vestnik_broker::{
    App, Broker, BrokerConfig, ConnectError, ConnectionHandle, PublishEvent, StaticAppStore,
};
use vestnik_protocol::auth::sign_channel;
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::{ChannelName, PusherCode};

fn broker(app: App, config: BrokerConfig) -> (Broker, Arc<App>) {
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

fn events(conn: &ConnectionHandle) -> Vec<String> {
    frames(conn)
        .iter()
        .map(|f| f["event"].as_str().unwrap().to_owned())
        .collect()
}

fn join_presence(b: &Broker, app: &App, conn: &ConnectionHandle, channel: &str, user: &str) {
    let cd = format!(r#"{{"user_id":"{user}"}}"#);
    let auth = sign_channel(
        &app.key,
        &app.secret,
        &conn.socket_id().to_string(),
        channel,
        Some(&cd),
    );
    b.subscribe(
        conn,
        Subscribe {
            channel: ChannelName::parse(channel).unwrap(),
            auth: Some(auth),
            channel_data: Some(cd),
            recover: None,
        },
    )
    .unwrap();
}

#[test]
fn presence_announces_first_join_and_last_leave_only() {
    let (b, app) = broker(App::default(), BrokerConfig::default());
    let watcher = b.connect(app.clone()).unwrap();
    join_presence(&b, &app, &watcher, "presence-r", "w");
    assert_eq!(events(&watcher), ["pusher_internal:subscription_succeeded"]);

    let s1 = b.connect(app.clone()).unwrap();
    let s2 = b.connect(app.clone()).unwrap();
    join_presence(&b, &app, &s1, "presence-r", "u");
    join_presence(&b, &app, &s2, "presence-r", "u");
    assert_eq!(events(&watcher), ["pusher_internal:member_added"]);
    assert_eq!(events(&s1), ["pusher_internal:subscription_succeeded"]);

    b.disconnect(&s1);
    assert!(events(&watcher).is_empty());
    b.disconnect(&s2);
    b.disconnect(&s2); // twice is harmless
    assert_eq!(events(&watcher), ["pusher_internal:member_removed"]);
    let rt = b.runtime(&app);
    assert_eq!(rt.registry.stats("presence-r").unwrap().user_count, Some(1));
    b.disconnect(&watcher);
    assert!(
        rt.registry.stats("presence-r").is_none(),
        "an empty channel is removed"
    );
    assert_eq!(b.stats().connections, 0);
}

#[test]
fn quotas_count_and_release() {
    let app = App {
        max_connections: 1,
        ..App::default()
    };
    let (b, app) = broker(
        app,
        BrokerConfig {
            max_connections: 2,
            ..BrokerConfig::default()
        },
    );
    let c1 = b.connect(app.clone()).unwrap();
    assert_eq!(
        b.connect(app.clone()).unwrap_err(),
        ConnectError::AppOverQuota
    );
    b.disconnect(&c1);
    let _c2 = b.connect(app.clone()).unwrap();
    assert_eq!(ConnectError::AppOverQuota.code(), PusherCode::AppOverQuota);
}

#[test]
fn publish_encodes_once_and_skips_the_excluded_socket() {
    let (b, app) = broker(App::default(), BrokerConfig::default());
    let a = b.connect(app.clone()).unwrap();
    let c = b.connect(app.clone()).unwrap();
    for s in [&a, &c] {
        b.subscribe(
            s,
            Subscribe {
                channel: ChannelName::parse("x").unwrap(),
                auth: None,
                channel_data: None,
                recover: None,
            },
        )
        .unwrap();
        frames(s);
    }
    let channels = [ChannelName::parse("x").unwrap()];
    let n = b.publish(
        &app,
        &PublishEvent {
            name: "e",
            data: "1",
            channels: &channels,
            except: Some(a.socket_id()),
        },
    );
    assert_eq!(n, 1);
    assert!(frames(&a).is_empty());
    let got = frames(&c);
    assert_eq!(got[0]["event"], "e");
    assert_eq!(got[0]["data"], "1");
}

#[test]
fn slow_consumer_is_closed_without_affecting_others() {
    let (b, app) = broker(
        App::default(),
        BrokerConfig {
            outbox_capacity: 4,
            ..BrokerConfig::default()
        },
    );
    let slow = b.connect(app.clone()).unwrap();
    let fast = b.connect(app.clone()).unwrap();
    let channels = [ChannelName::parse("x").unwrap()];
    for s in [&slow, &fast] {
        b.subscribe(
            s,
            Subscribe {
                channel: channels[0].clone(),
                auth: None,
                channel_data: None,
                recover: None,
            },
        )
        .unwrap();
    }
    for i in 0..10 {
        b.publish(
            &app,
            &PublishEvent {
                name: "e",
                data: &i.to_string(),
                channels: &channels,
                except: None,
            },
        );
        frames(&fast);
    }
    let mut out = VecDeque::new();
    let close = slow.outbox().drain_now(&mut out).close.unwrap();
    assert_eq!(close.code, PusherCode::OverCapacity);
}

#[tokio::test]
async fn the_console_tap_sees_a_sockets_whole_life_in_order() {
    let tap = Arc::new(vestnik_broker::Tap::new(
        Arc::new(vestnik_broker::NoEvents),
        ["app-id"],
        64,
    ));
    let b = Broker::with_events(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        BrokerConfig::default(),
        tap.clone(),
    );
    let app = b.apps().all()[0].clone();
    let mut watch = tap.watch("app-id");
    let s = b.connect(app.clone()).unwrap();
    join_presence(&b, &app, &s, "presence-room", "u7");
    let channels = [ChannelName::parse("presence-room").unwrap()];
    b.publish(
        &app,
        &PublishEvent {
            name: "greet",
            data: "{}",
            channels: &channels,
            except: None,
        },
    );
    b.disconnect(&s);
    let mut got = Vec::new();
    while got.len() < 7 {
        match watch.recv().await {
            vestnik_broker::TapItem::Record(json) => {
                let v: Value = serde_json::from_slice(&json).unwrap();
                got.push(format!(
                    "{} {}",
                    v["type"].as_str().unwrap(),
                    v["user_id"].as_str().unwrap_or("-")
                ));
            }
            vestnik_broker::TapItem::Lagged(n) => panic!("lagged {n}"),
        }
    }
    assert_eq!(
        got,
        [
            "occupied -",
            "subscribed u7",
            "member_added u7",
            "trigger -",
            "unsubscribed -",
            "member_removed u7",
            "vacated -",
        ]
    );
}

#[derive(Default)]
struct Recorder(parking_lot::Mutex<Vec<String>>);

impl vestnik_broker::EventSink for Recorder {
    fn on_event(&self, _app: &App, event: vestnik_broker::BrokerEvent<'_>) {
        use vestnik_broker::BrokerEvent as E;
        let line = match event {
            E::ChannelOccupied { channel } => format!("occupied {channel}"),
            E::ChannelVacated { channel } => format!("vacated {channel}"),
            E::MemberAdded { channel, user_id } => format!("added {channel} {user_id}"),
            E::MemberRemoved { channel, user_id } => format!("removed {channel} {user_id}"),
            E::ClientEvent {
                channel,
                event,
                user_id,
                ..
            } => format!("client {channel} {event} {user_id:?}"),
            E::CacheMiss { channel } => format!("miss {channel}"),
            E::SubscriptionCount { channel, count } => format!("count {channel} {count}"),
            E::Published {
                channel,
                recipients,
                ..
            } => format!("published {channel} {recipients}"),
            // Every subscription is reported too; these tests follow the webhook-worthy ones. A
            // node alone never hears of other nodes.
            E::Subscribed { .. } | E::Unsubscribed { .. } => return,
            E::MemberJoinedElsewhere { .. } | E::OccupiedElsewhere { .. } => {
                panic!("a broker without a cluster reported {event:?}")
            }
        };
        self.0.lock().push(line);
    }
}

#[test]
fn events_report_first_and_last_of_everything() {
    let rec = Arc::new(Recorder::default());
    let b = Broker::with_events(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        BrokerConfig::default(),
        rec.clone(),
    );
    let app = b.apps().all()[0].clone();
    let s1 = b.connect(app.clone()).unwrap();
    let s2 = b.connect(app.clone()).unwrap();
    join_presence(&b, &app, &s1, "presence-r", "u");
    join_presence(&b, &app, &s2, "presence-r", "u");
    b.subscribe(
        &s1,
        Subscribe {
            channel: ChannelName::parse("cache-x").unwrap(),
            auth: None,
            channel_data: None,
            recover: None,
        },
    )
    .unwrap();
    b.client_event(
        &s1,
        "client-hi",
        &ChannelName::parse("presence-r").unwrap(),
        "{}",
    )
    .unwrap();
    b.disconnect(&s1);
    b.disconnect(&s2);
    let got = rec.0.lock().clone();
    assert_eq!(
        got[..5],
        [
            "occupied presence-r",
            "added presence-r u",
            "occupied cache-x",
            "miss cache-x",
            "client presence-r client-hi Some(\"u\")",
        ]
    );
    // Channels are left in map order; within one channel, removed comes before vacated.
    let mut tail = got[5..].to_vec();
    let removed = tail
        .iter()
        .position(|l| l == "removed presence-r u")
        .unwrap();
    let vacated = tail.iter().position(|l| l == "vacated presence-r").unwrap();
    assert!(removed < vacated, "{tail:?}");
    tail.sort();
    assert_eq!(
        tail,
        [
            "removed presence-r u",
            "vacated cache-x",
            "vacated presence-r"
        ]
    );
}

#[test]
fn channels_per_socket_are_capped_and_the_socket_stays_usable() {
    let app = App {
        max_channels_per_socket: 2,
        ..App::default()
    };
    let (b, app) = broker(app, BrokerConfig::default());
    let conn = b.connect(app.clone()).unwrap();
    let sub = |name: &str| Subscribe {
        channel: ChannelName::parse(name).unwrap(),
        auth: None,
        channel_data: None,
        recover: None,
    };
    b.subscribe(&conn, sub("a")).unwrap();
    b.subscribe(&conn, sub("b")).unwrap();
    // Joining a channel the socket already has is not a new channel.
    b.subscribe(&conn, sub("b")).unwrap();
    let err = b.subscribe(&conn, sub("c")).unwrap_err();
    assert_eq!(
        err.kind(),
        vestnik_protocol::message::SubscriptionErrorKind::LimitReached
    );
    assert_eq!(err.status(), 403);
    assert!(err.to_string().contains("(2)"), "{err}");
    assert!(
        b.runtime(&app).registry.stats("c").is_none(),
        "no empty channel is left"
    );
    b.unsubscribe(&conn, &ChannelName::parse("a").unwrap());
    b.subscribe(&conn, sub("c")).unwrap();
    assert_eq!(conn.channel_count(), 2);
}
