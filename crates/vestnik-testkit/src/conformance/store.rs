//! What every cluster-wide [`HistoryStore`] must do with an append asked again: the numbering asks
//! a batch again with the same ids when its answer was lost, and the store must answer what it
//! kept then, not keep the events twice. Written once; the Redis and NATS crates run it against
//! their real servers (and the broker's tests against `MemoryStore`).

use std::time::Duration;

use bytes::Bytes;
use vestnik_broker::adapter::{Append, HistoryStore, StreamRef};

/// A stream of `channel` in app `app` with room for 100 events for a minute.
fn stream<'a>(app: &'a str, channel: &'a str) -> StreamRef<'a> {
    StreamRef {
        app,
        channel,
        size: 100,
        ttl: Duration::from_secs(60),
        restart: false,
    }
}

/// A batch of three appends over two channels (two in `a`, one in `b`) asked twice with the same
/// ids, with another node's append to `a` in between, gets the same positions both times and is
/// kept once; a new append after it gets the next offset. `app` should be unique to the run (a
/// fresh prefix does as well).
pub async fn appends_are_idempotent(store: &dyn HistoryStore, app: &str) {
    let batch = [
        Append::new(stream(app, "a"), Bytes::from_static(b"first")),
        Append::new(stream(app, "b"), Bytes::from_static(b"other")),
        Append::new(stream(app, "a"), Bytes::from_static(b"second")),
    ];
    let first = store.append(&batch).await.expect("the first append");
    let offsets: Vec<u64> = first.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 1, 2], "fresh channels number from 1");
    let between = store
        .append(&[Append::new(
            stream(app, "a"),
            Bytes::from_static(b"between"),
        )])
        .await
        .expect("an append in between");
    assert_eq!(between[0].offset, 3);
    let again = store.append(&batch).await.expect("the same append again");
    assert_eq!(
        again, first,
        "an append asked again answers the positions it got"
    );
    let a = store.read(stream(app, "a"), 0, 10).await.expect("read a");
    assert_eq!(a.top, 3, "channel a's batch was kept once");
    let kept: Vec<&[u8]> = a.events.iter().map(|(_, e)| e.as_ref()).collect();
    assert_eq!(
        kept,
        [
            b"first".as_slice(),
            b"second".as_slice(),
            b"between".as_slice()
        ]
    );
    let b = store.read(stream(app, "b"), 0, 10).await.expect("read b");
    assert_eq!(b.top, 1, "channel b was kept once");
    let next = store
        .append(&[Append::new(stream(app, "a"), Bytes::from_static(b"third"))])
        .await
        .expect("a new append");
    assert_eq!(next[0].offset, 4);
    assert_eq!(next[0].epoch, first[0].epoch);
}
