//! Fan-out of one event to 10,000 in-process subscribers of one channel: one encode, then a reference
//! count bump and a queue push per subscriber. Outboxes are drained between iterations so every push
//! measures the steady state, not a full queue.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vestnik_broker::{App, Broker, BrokerConfig, ConnectionHandle, PublishEvent, StaticAppStore};
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

fn fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 10_000;
    let app = App::default();
    let broker = Broker::new(
        Arc::new(StaticAppStore::new(vec![app.clone()]).unwrap()),
        BrokerConfig::default(),
    );
    let app = broker.apps().by_id("app-id").unwrap();
    let channel = ChannelName::parse("orders").unwrap();
    let conns: Vec<ConnectionHandle> = (0..SUBSCRIBERS)
        .map(|_| {
            let conn = broker.connect(app.clone()).unwrap();
            broker
                .subscribe(
                    &conn,
                    Subscribe {
                        channel: channel.clone(),
                        auth: None,
                        channel_data: None,
                        recover: None,
                    },
                )
                .unwrap();
            conn
        })
        .collect();
    let mut scratch = VecDeque::new();
    let mut drain = |conns: &[ConnectionHandle]| {
        for conn in conns {
            conn.outbox().drain_now(&mut scratch);
            scratch.clear();
        }
    };
    drain(&conns);
    let channels = [channel];
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("publish to 10k subscribers", |b| {
        b.iter_batched(
            || drain(&conns),
            |()| {
                broker.publish(
                    &app,
                    &PublishEvent {
                        name: "order:status",
                        data: r#"{"order_id":1,"status":"shipped"}"#,
                        channels: &channels,
                        except: None,
                    },
                )
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
