//! What the JetStream history costs per call, against a `nats-server -js` of its own: an append of
//! one event, a batch over ten channels, and reads that walk the kept messages (one direct get
//! each on nats-server 2.9) or find everything in the last one. Not a check (ignored by default):
//! the figures in docs/scaling.md come from
//! `cargo test --release -p vestnik-nats --test history_timing -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use vestnik_broker::adapter::{Append, HistoryStore, StreamRef};
use vestnik_nats::{delete_history_at, NatsHistory};
use vestnik_testkit::conformance::{unique_prefix, BackboneServer};

fn stream(channel: &str) -> StreamRef<'_> {
    StreamRef {
        app: "app",
        channel,
        size: 100,
        ttl: Duration::from_secs(300),
        restart: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand with --release"]
async fn what_appends_and_reads_cost() {
    let server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-timing");
    let h = NatsHistory::connect(&server.url(), &prefix)
        .await
        .expect("connect");
    let event = Bytes::from(vec![b'x'; 200]);
    let one = |c| {
        [Append {
            id: rand::random(),
            stream: stream(c),
            event: event.clone(),
        }]
    };
    h.append(&one("warm")).await.expect("append");

    let n: u32 = 2000;
    let t = Instant::now();
    for _ in 0..n {
        h.append(&one("seq")).await.expect("append");
    }
    println!("append of one event: {:?}", t.elapsed() / n);

    let channels: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    let rounds: u32 = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        let batch: Vec<Append<'_>> = channels
            .iter()
            .map(|c| Append {
                id: rand::random(),
                stream: stream(c),
                event: event.clone(),
            })
            .collect();
        h.append(&batch).await.expect("append");
    }
    println!(
        "append of one event on each of 10 channels: {:?}",
        t.elapsed() / rounds
    );

    // "seq" keeps 100 messages of one event each: a read walks them.
    let t = Instant::now();
    for _ in 0..rounds {
        let page = h
            .read(stream("seq"), u64::from(n) - 2, 513)
            .await
            .expect("read");
        assert_eq!(page.events.len(), 2);
    }
    println!(
        "read of the newest 2 of 100 kept one-event messages: {:?}",
        t.elapsed() / rounds
    );
    let t = Instant::now();
    for _ in 0..rounds {
        let page = h.read(stream("seq"), 0, 513).await.expect("read");
        assert_eq!(page.events.len(), 100);
    }
    println!("read of all 100: {:?}", t.elapsed() / rounds);

    // One message holds all 100 events: the last message alone answers.
    let batch: Vec<Append<'_>> = (0..100)
        .map(|_| Append {
            id: rand::random(),
            stream: stream("big"),
            event: event.clone(),
        })
        .collect();
    h.append(&batch).await.expect("append");
    let t = Instant::now();
    for _ in 0..rounds {
        let page = h.read(stream("big"), 98, 513).await.expect("read");
        assert_eq!(page.events.len(), 2);
    }
    println!(
        "read when the last message holds all: {:?}",
        t.elapsed() / rounds
    );
    delete_history_at(&server.url(), &prefix)
        .await
        .expect("delete the stream");
}
