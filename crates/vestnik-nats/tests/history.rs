//! [`NatsHistory`], the cluster's channel history on JetStream, against a real `nats-server -js`
//! of its own (started per test, so a restart touches nobody else): numbering from two clients
//! at once has no gap and no duplicate, reads honour `after`, `limit` and epochs, the bounds trim
//! by size and time and raise the stream's limits, and a lost server makes calls fail fast, not
//! hang. Each test uses its own prefix and deletes its stream at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vestnik_broker::adapter::{Append, Appended, HistoryStore, StoredPage, StreamRef};
use vestnik_nats::{delete_history_at, NatsHistory};
use vestnik_testkit::conformance::{unique_prefix, Backbone, BackboneServer, RECONNECT_WAIT};

/// A channel's stream with the given bounds.
fn stream<'a>(channel: &'a str, size: usize, ttl: Duration) -> StreamRef<'a> {
    StreamRef {
        app: "app-1",
        channel,
        size,
        ttl,
        restart: false,
    }
}

/// An hour: long enough that nothing expires during a test.
const HOUR: Duration = Duration::from_secs(3600);

async fn store(server: &BackboneServer, prefix: &str) -> NatsHistory {
    NatsHistory::connect(&server.url(), prefix)
        .await
        .expect("connect to the private nats-server")
}

/// Appends one event per call, returning each position.
async fn append_one(h: &NatsHistory, s: StreamRef<'_>, event: &str) -> Appended {
    let appends = [Append {
        id: rand::random(),
        stream: s,
        event: Bytes::from(event.to_owned()),
    }];
    let mut got = h.append(&appends).await.expect("append");
    assert_eq!(got.len(), 1);
    got.remove(0)
}

fn offsets(page: &StoredPage) -> Vec<u64> {
    page.events.iter().map(|(o, _)| *o).collect()
}

/// Waits (bounded) until `cond` holds, checking every 20 ms.
async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cleanup(server: &BackboneServer, prefix: &str) {
    assert!(
        delete_history_at(&server.url(), prefix)
            .await
            .expect("delete the stream"),
        "the test's stream existed"
    );
    assert!(
        !delete_history_at(&server.url(), prefix)
            .await
            .expect("delete again"),
        "deleted once only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_appending_at_once_get_consecutive_offsets_without_gap_or_duplicate() {
    let server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-race");
    let a = Arc::new(store(&server, &prefix).await);
    let b = Arc::new(store(&server, &prefix).await);
    const PER_CLIENT: usize = 60;
    let run = |h: Arc<NatsHistory>, who: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..PER_CLIENT {
                // Every third call is a batch of two events of the channel and one of another.
                let events: Vec<(&str, String)> = if i % 3 == 0 {
                    vec![
                        ("race", format!("{who}-{i}-a")),
                        ("other", format!("{who}-{i}-o")),
                        ("race", format!("{who}-{i}-b")),
                    ]
                } else {
                    vec![("race", format!("{who}-{i}"))]
                };
                let appends: Vec<Append<'_>> = events
                    .iter()
                    .map(|(c, e)| Append {
                        id: rand::random(),
                        stream: stream(c, 1000, HOUR),
                        event: Bytes::from(e.clone()),
                    })
                    .collect();
                let at = h.append(&appends).await.expect("append");
                assert_eq!(at.len(), events.len());
                for ((c, e), p) in events.into_iter().zip(at) {
                    got.push((c, e, p));
                }
            }
            got
        })
    };
    let (ga, gb) = tokio::join!(run(a.clone(), "a"), run(b.clone(), "b"));
    let all: Vec<_> = ga.unwrap().into_iter().chain(gb.unwrap()).collect();
    for channel in ["race", "other"] {
        let mut mine: Vec<_> = all.iter().filter(|(c, _, _)| *c == channel).collect();
        mine.sort_by_key(|(_, _, p)| p.offset);
        let epochs: std::collections::HashSet<_> = mine.iter().map(|(_, _, p)| &p.epoch).collect();
        assert_eq!(epochs.len(), 1, "{channel}: one epoch");
        let got: Vec<u64> = mine.iter().map(|(_, _, p)| p.offset).collect();
        let want: Vec<u64> = (1..=mine.len() as u64).collect();
        assert_eq!(got, want, "{channel}: 1..N, no gap, no duplicate");
        // Each client's own events of the channel rise in the order it appended them.
        for who in ["a-", "b-"] {
            let order: Vec<u64> = all
                .iter()
                .filter(|(c, e, _)| *c == channel && e.starts_with(who))
                .map(|(_, _, p)| p.offset)
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{who}: {order:?}");
        }
        // Either client reads the same history, every event once at its position.
        let page = b
            .read(stream(channel, 1000, HOUR), 0, 1000)
            .await
            .expect("read");
        assert_eq!(
            page.epoch.as_deref(),
            Some(&***epochs.iter().next().unwrap())
        );
        assert_eq!((page.first, page.top), (1, mine.len() as u64));
        let read: Vec<(u64, Bytes)> = page.events;
        let want: Vec<(u64, Bytes)> = mine
            .iter()
            .map(|(_, e, p)| (p.offset, Bytes::from(e.clone())))
            .collect();
        assert_eq!(read, want, "{channel}: the read history");
    }
    cleanup(&server, &prefix).await;
}

/// Nodes that start at once all find no stream and race to make it: JetStream refuses every
/// create but one ("subjects overlap"), and each loser must take the winner's stream rather than
/// fail its first append. Eight clients per fresh prefix, twenty prefixes: without the fix this failed two runs in three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_making_the_stream_at_once_all_append() {
    let server = BackboneServer::nats_jetstream();
    for round in 0..20 {
        let prefix = unique_prefix(&format!("history-make-{round}"));
        let mut nodes = Vec::new();
        for _ in 0..8 {
            nodes.push(Arc::new(store(&server, &prefix).await));
        }
        let appends: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = Arc::clone(h);
                tokio::spawn(async move {
                    let appends = [Append {
                        id: rand::random(),
                        stream: stream("made", 1000, HOUR),
                        event: Bytes::from(format!("node-{i}")),
                    }];
                    h.append(&appends).await
                })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in appends {
            let at = task
                .await
                .expect("the task")
                .expect("every node's first append");
            offsets.push(at[0].offset);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (1..=8).collect::<Vec<u64>>(), "round {round}");
        cleanup(&server, &prefix).await;
    }
}

#[tokio::test]
async fn appends_are_idempotent() {
    let server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-again");
    let h = store(&server, &prefix).await;
    vestnik_testkit::conformance::store::appends_are_idempotent(&h, "app-1").await;
    cleanup(&server, &prefix).await;
}

#[tokio::test]
async fn reads_honour_after_limit_and_epochs() {
    let server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-read");
    let h = store(&server, &prefix).await;
    // A channel nobody wrote to is started by the read: its position holds from then on.
    let page = h.read(stream("c", 100, HOUR), 0, 10).await.expect("read");
    let epoch = page.epoch.clone().expect("an epoch");
    assert_eq!((page.top, page.first, page.events.len()), (0, 1, 0));
    let again = h.read(stream("c", 100, HOUR), 0, 10).await.expect("read");
    assert_eq!(again.epoch.as_deref(), Some(&*epoch), "the same start");
    for i in 1..=10u64 {
        let at = append_one(&h, stream("c", 100, HOUR), &format!("e{i}")).await;
        assert_eq!((&*at.epoch, at.offset), (&*epoch, i));
    }
    let page = h.read(stream("c", 100, HOUR), 0, 3).await.expect("read");
    assert_eq!((page.top, page.first), (10, 1));
    assert_eq!(offsets(&page), [1, 2, 3]);
    assert_eq!(page.events[0].1, Bytes::from_static(b"e1"));
    let page = h.read(stream("c", 100, HOUR), 7, 100).await.expect("read");
    assert_eq!(offsets(&page), [8, 9, 10]);
    assert_eq!(page.events[2].1, Bytes::from_static(b"e10"));
    let page = h.read(stream("c", 100, HOUR), 10, 100).await.expect("read");
    assert_eq!((page.top, page.first, page.events.len()), (10, 1, 0));
    // A batch of several events of one channel is one message: its offsets follow on.
    let batch: Vec<Append<'_>> = (11..=13)
        .map(|i| Append {
            id: rand::random(),
            stream: stream("c", 100, HOUR),
            event: Bytes::from(format!("e{i}")),
        })
        .collect();
    let at = h.append(&batch).await.expect("append a batch");
    assert_eq!(
        at.iter().map(|a| a.offset).collect::<Vec<_>>(),
        [11, 12, 13]
    );
    let page = h.read(stream("c", 100, HOUR), 9, 3).await.expect("read");
    assert_eq!(offsets(&page), [10, 11, 12]);
    // A restart starts a new epoch at offset 1; the old epoch's events are gone from reads.
    let restart = StreamRef {
        restart: true,
        ..stream("c", 100, HOUR)
    };
    let at = append_one(&h, restart, "new").await;
    assert_ne!(at.epoch, epoch);
    assert_eq!(at.offset, 1);
    let page = h.read(stream("c", 100, HOUR), 0, 100).await.expect("read");
    assert_eq!(page.epoch.as_deref(), Some(&*at.epoch));
    assert_eq!((page.top, page.first), (1, 1));
    assert_eq!(page.events, [(1, Bytes::from_static(b"new"))]);
    // Channel names with characters a NATS subject forbids are channels like any other.
    let odd = "private-a.b*c>d e";
    let at = append_one(&h, stream(odd, 100, HOUR), "x").await;
    assert_eq!(at.offset, 1);
    let page = h.read(stream(odd, 100, HOUR), 0, 10).await.expect("read");
    assert_eq!(page.events, [(1, Bytes::from_static(b"x"))]);
    let page = h.read(stream("c", 100, HOUR), 0, 10).await.expect("read");
    assert_eq!(page.top, 1, "another channel's events are not this one's");
    cleanup(&server, &prefix).await;
}

#[tokio::test]
async fn bounds_trim_by_size_and_time_and_raise_the_stream_limits() {
    let server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-trim");
    let h = store(&server, &prefix).await;
    let limits = || async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(NatsHistory::stream_name_of(&prefix))
            .await
            .expect("the stream");
        let info = stream.info().await.expect("info");
        (
            info.config.max_messages_per_subject,
            info.config.max_age,
            info.state.messages,
        )
    };
    let day = Duration::from_secs(24 * 3600);
    // Size 3: five single events keep the last three, in the store and in reads.
    for i in 1..=5 {
        append_one(&h, stream("s", 3, HOUR), &format!("e{i}")).await;
    }
    let page = h.read(stream("s", 3, HOUR), 0, 100).await.expect("read");
    assert_eq!((page.top, page.first), (5, 3));
    assert_eq!(offsets(&page), [3, 4, 5]);
    assert_eq!(limits().await, (3, day + HOUR, 3));
    // A read trims to the channel's own size even when the store keeps more.
    let page = h.read(stream("s", 2, HOUR), 0, 100).await.expect("read");
    assert_eq!((page.first, offsets(&page)), (4, vec![4, 5]));
    // A larger size or ttl raises the stream's limits; a smaller one never lowers them.
    append_one(&h, stream("t", 7, 2 * HOUR), "x").await;
    assert_eq!(limits().await.0, 7);
    assert_eq!(limits().await.1, day + 2 * HOUR);
    append_one(&h, stream("t", 2, Duration::from_secs(1)), "y").await;
    assert_eq!(limits().await.0, 7);
    assert_eq!(limits().await.1, day + 2 * HOUR);
    // A batch larger than the size is one message: a read still keeps only `size` of it.
    let batch: Vec<Append<'_>> = (1..=5)
        .map(|i| Append {
            id: rand::random(),
            stream: stream("b", 2, HOUR),
            event: Bytes::from(format!("b{i}")),
        })
        .collect();
    h.append(&batch).await.expect("append a batch");
    let page = h.read(stream("b", 2, HOUR), 0, 100).await.expect("read");
    assert_eq!((page.top, page.first, offsets(&page)), (5, 4, vec![4, 5]));
    // Time: events older than the channel's ttl are not read; the position stays.
    let short = Duration::from_millis(300);
    for i in 1..=2 {
        append_one(&h, stream("x", 10, short), &format!("x{i}")).await;
    }
    let page = h.read(stream("x", 10, short), 0, 100).await.expect("read");
    assert_eq!(offsets(&page), [1, 2], "still young");
    wait_for("the events expire", Duration::from_secs(10), || async {
        let page = h.read(stream("x", 10, short), 0, 100).await.expect("read");
        page.events.is_empty() && (page.top, page.first) == (2, 3)
    })
    .await;
    let at = append_one(&h, stream("x", 10, short), "x3").await;
    assert_eq!(at.offset, 3, "the channel goes on in its epoch");
    let page = h.read(stream("x", 10, short), 0, 100).await.expect("read");
    assert_eq!((page.first, offsets(&page)), (3, vec![3]));
    cleanup(&server, &prefix).await;
}

#[tokio::test]
async fn a_lost_server_fails_calls_fast_and_numbering_goes_on_after_it_is_back() {
    let mut server = BackboneServer::nats_jetstream();
    let prefix = unique_prefix("history-down");
    let h = store(&server, &prefix).await;
    let first = append_one(&h, stream("d", 100, HOUR), "before").await;
    assert_eq!(first.offset, 1);
    server.stop();
    // Once the client noticed (a killed server closes the socket at once), every call fails
    // without waiting for a timeout.
    let one = [Append {
        id: rand::random(),
        stream: stream("d", 100, HOUR),
        event: Bytes::from_static(b"during"),
    }];
    wait_for("the client notices", RECONNECT_WAIT, || async {
        h.append(&one).await.is_err()
    })
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        assert!(h.append(&one).await.is_err(), "no append while down");
        assert!(
            h.read(stream("d", 100, HOUR), 0, 10).await.is_err(),
            "no read while down"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100), "fast: {took:?}");
    }
    server.start();
    wait_for("the client reconnects", RECONNECT_WAIT, || async {
        h.read(stream("d", 100, HOUR), 0, 10).await.is_ok()
    })
    .await;
    let after = append_one(&h, stream("d", 100, HOUR), "after").await;
    assert_eq!(
        (&*after.epoch, after.offset),
        (&*first.epoch, 2),
        "the store kept the channel across the restart"
    );
    let page = h.read(stream("d", 100, HOUR), 0, 10).await.expect("read");
    assert_eq!(
        page.events,
        [
            (1, Bytes::from_static(b"before")),
            (2, Bytes::from_static(b"after"))
        ]
    );
    cleanup(&server, &prefix).await;
}

#[tokio::test]
async fn jetstream_is_found_only_where_the_server_has_it() {
    let with = BackboneServer::nats_jetstream();
    let without = BackboneServer::nats();
    for (server, has) in [(&with, true), (&without, false)] {
        let client = async_nats::connect(server.url()).await.expect("connect");
        assert_eq!(
            NatsHistory::available(&client).await,
            has,
            "{}",
            server.url()
        );
    }
}
