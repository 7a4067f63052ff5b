//! What the console tap adds to a publish: one event to one subscriber (where a per-event cost shows
//! most), through the plain sink, through a tap nobody watches, and through a tap a console watches
//! (one JSON record and a broadcast send per event; the console never reads, so the channel keeps
//! overwriting, which is the slow-console case).
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use vestnik_broker::{
    App, Broker, BrokerConfig, ConnectionHandle, EventSink, NoEvents, PublishEvent, StaticAppStore,
    Tap,
};
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

/// Records a console may fall behind by, as in the default config.
const CAPACITY: usize = 1024;

fn setup(events: Arc<dyn EventSink>) -> (Broker, Arc<App>, ConnectionHandle) {
    let broker = Broker::with_events(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        BrokerConfig::default(),
        events,
    );
    let app = broker.apps().by_id("app-id").unwrap();
    let conn = broker.connect(app.clone()).unwrap();
    broker
        .subscribe(
            &conn,
            Subscribe {
                channel: ChannelName::parse("orders").unwrap(),
                auth: None,
                channel_data: None,
                recover: None,
            },
        )
        .unwrap();
    (broker, app, conn)
}

fn tap(c: &mut Criterion) {
    let channels = [ChannelName::parse("orders").unwrap()];
    let unwatched = Arc::new(Tap::new(Arc::new(NoEvents), ["app-id"], CAPACITY));
    let watched = Arc::new(Tap::new(Arc::new(NoEvents), ["app-id"], CAPACITY));
    let _console = watched.watch("app-id");
    let cases: [(&str, Arc<dyn EventSink>); 3] = [
        ("no tap", Arc::new(NoEvents)),
        ("tap, nobody watching", unwatched),
        ("tap, one console watching", watched.clone()),
    ];
    let mut group = c.benchmark_group("publish to 1 subscriber");
    for (name, events) in cases {
        let (broker, app, conn) = setup(events);
        let mut scratch = VecDeque::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                broker.publish(
                    &app,
                    &PublishEvent {
                        name: "order:status",
                        data: r#"{"order_id":1,"status":"shipped"}"#,
                        channels: &channels,
                        except: None,
                    },
                );
                conn.outbox().drain_now(&mut scratch);
                scratch.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tap);
criterion_main!(benches);
