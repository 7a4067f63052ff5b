//! The direct write (issue 17): a delivery to an idle socket is written by the publisher at once,
//! and only what does not fit waits for the socket's writer. These tests hold it to every guarantee
//! of the queued path: per-socket order under concurrent publishers, what did not fit written later
//! and in order, the WebSocket framing intact after a partial write, a pong between deliveries, and
//! the sent-message metrics counted the same.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The slow client's receive buffer: as small as Linux allows, so that a burst fills it and the
/// server's socket buffer, and the server's writes are partial.
const SMALL_RECV_BUFFER: u32 = 4096;

fn data(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("data is a string")).expect("data is JSON")
}

/// A raw WebSocket client over a socket with a tiny receive buffer, which reads only when told.
async fn small_buffer_client(b: &BrokerProcess) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SMALL_RECV_BUFFER).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], b.port).into())
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(b.ws_url(KEY), stream)
        .await
        .expect("handshake");
    ws
}

/// A [`small_buffer_client`] subscribed to `channel`, past its connection and subscription
/// messages.
async fn slow_subscriber(b: &BrokerProcess, channel: &str) -> WebSocketStream<TcpStream> {
    let mut ws = small_buffer_client(b).await;
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    ws
}

/// The next text frame as JSON, skipping control frames; panics after [`WAIT`].
async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait")
            .expect("the socket is open")
            .expect("a well-formed frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn what_did_not_fit_is_written_later_in_order() {
    let b = spawn();
    let mut slow = slow_subscriber(&b, "burst").await;

    // The client reads nothing while 500 events of 9 kB (4.5 MB) are triggered: more than its
    // 4 KiB window and the server's socket buffer (at most 4 MiB, Linux's tcp_wmem) take, so the
    // server's writes turn partial and the rest waits for the writer. The write limit (5 s) is not
    // reached: reading resumes first.
    let total = 500;
    let pad = "z".repeat(9_000);
    for i in 0..total {
        let r = api(&b)
            .trigger(&["burst"], "e", &format!(r#"{{"i":{i},"pad":"{pad}"}}"#))
            .await;
        assert_eq!(r.status, 200, "trigger {i}");
    }
    for i in 0..total {
        let v = next_json(&mut slow).await;
        assert_eq!(v["event"], "e");
        let d = data(&v);
        assert_eq!(d["i"], i, "event {i} arrives in its place");
        assert_eq!(d["pad"].as_str().map(str::len), Some(9_000), "intact");
    }
    // Still served, and still at its place in the order, after the burst.
    let ping = json!({"event": "pusher:ping", "data": {}});
    slow.send(Message::text(ping.to_string())).await.unwrap();
    assert_eq!(next_json(&mut slow).await["event"], "pusher:pong");
}

/// A fan-out frames a payload once, for its second subscriber, and writes that one buffer to the
/// rest: a partial write of it must leave each socket's stream whole, and the rest must follow in
/// order, on every socket.
#[tokio::test]
async fn a_burst_to_several_slow_sockets_arrives_whole_and_in_order_on_each() {
    let b = spawn();
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(slow_subscriber(&b, "shared-burst").await);
    }
    // None of the three reads while 500 events of 9 kB (4.5 MB) go out: more than the server's
    // socket buffer grows to (Linux's tcp_wmem caps it at 4 MiB), so every socket's writes turn
    // partial, the framed buffer's included.
    let total = 500;
    let pad = "y".repeat(9_000);
    for i in 0..total {
        let r = api(&b)
            .trigger(
                &["shared-burst"],
                "e",
                &format!(r#"{{"i":{i},"pad":"{pad}"}}"#),
            )
            .await;
        assert_eq!(r.status, 200, "trigger {i}");
    }
    for (n, c) in slow.iter_mut().enumerate() {
        for i in 0..total {
            let v = next_json(c).await;
            assert_eq!(v["event"], "e");
            let d = data(&v);
            assert_eq!(d["i"], i, "socket {n}: event {i} arrives in its place");
            assert_eq!(d["pad"].as_str().map(str::len), Some(9_000), "intact");
        }
    }
}

#[tokio::test]
async fn concurrent_publishers_keep_each_socket_in_order_and_are_counted() {
    let b = spawn_with_server("metrics_port = 0");
    let metrics = metrics_port(&b).await;
    let sockets = 4;
    let publishers = 4;
    let per_publisher = 60;
    let mut clients = Vec::new();
    for _ in 0..sockets {
        let mut c = WsClient::connect(&b.ws_url(KEY)).await;
        c.subscribe(json!({"channel": "race"})).await;
        clients.push(c);
    }
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let api = api(&b);
            tokio::spawn(async move {
                for i in 0..per_publisher {
                    let body = format!(r#"{{"p":{p},"i":{i}}}"#);
                    let r = api.trigger(&["race"], "e", &body).await;
                    assert_eq!(r.status, 200, "publisher {p} event {i}");
                }
            })
        })
        .collect();
    // Read while the publishers run, so that the sockets stay idle and most writes are direct.
    let mut readers = Vec::new();
    for mut c in clients {
        readers.push(tokio::spawn(async move {
            let mut next = vec![0u64; publishers];
            for _ in 0..publishers * per_publisher {
                match c.recv_within(WAIT).await {
                    Some(Received::Json(v)) => {
                        assert_eq!(v["event"], "e", "{v}");
                        let d = data(&v);
                        let p = d["p"].as_u64().unwrap() as usize;
                        assert_eq!(d["i"], next[p], "publisher {p}'s events in order");
                        next[p] += 1;
                    }
                    other => panic!("after {next:?}: {other:?}"),
                }
            }
            c
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut clients = Vec::new();
    for r in readers {
        clients.push(r.await.unwrap());
    }
    // Every frame each socket was sent (connection_established, subscription_succeeded, the
    // events) is counted once, whichever path wrote it.
    let expected = (sockets * (2 + publishers * per_publisher)) as f64;
    wait_until("every sent frame to be counted", WAIT, || async {
        let body = scrape(metrics).await;
        sample(
            &body,
            "vestnik_ws_messages_sent_total",
            &[r#"app_id="main""#],
        ) == Some(expected)
    })
    .await;
    drop(clients);
}

#[tokio::test]
async fn a_websocket_ping_between_deliveries_gets_its_pong_and_frames_stay_whole() {
    let b = spawn();
    let mut c = slow_subscriber(&b, "pings").await;
    for i in 0..20 {
        c.send(Message::Ping(vec![i as u8].into())).await.unwrap();
        let r = api(&b).trigger(&["pings"], "e", &format!("{i}")).await;
        assert_eq!(r.status, 200);
    }
    let mut events = 0;
    let mut pongs = 0;
    while events < 20 || pongs < 20 {
        let frame = tokio::time::timeout(WAIT, c.next())
            .await
            .expect("a frame within the wait")
            .expect("open")
            .expect("well-formed");
        match frame {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["data"], events.to_string());
                events += 1;
            }
            Message::Pong(p) => {
                assert_eq!(&p[..], &[pongs as u8]);
                pongs += 1;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_socket_that_turns_slow_mid_burst_is_closed_with_4100_without_waiting_for_the_write_limit(
) {
    // A queue of 8 and a write limit of 30 s: only the full queue can end this socket in time.
    let b = spawn_with_server("outbox_capacity = 8\nwrite_timeout_ms = 30000");
    let mut slow = slow_subscriber(&b, "turns-slow").await;
    // It reads the first events of the burst, then stops reading.
    let pad = "s".repeat(9_000);
    for i in 0..3 {
        let body = format!(r#"{{"i":{i},"pad":"{pad}"}}"#);
        assert_eq!(
            api(&b).trigger(&["turns-slow"], "e", &body).await.status,
            200
        );
        assert_eq!(data(&next_json(&mut slow).await)["i"], i);
    }
    let started = tokio::time::Instant::now();
    let mut i = 3;
    loop {
        let body = format!(r#"{{"i":{i},"pad":"{pad}"}}"#);
        assert_eq!(
            api(&b).trigger(&["turns-slow"], "e", &body).await.status,
            200
        );
        i += 1;
        if i % 10 == 0 {
            let r = api(&b).call("GET", "/channels/turns-slow", &[], "").await;
            let v: Value = serde_json::from_str(&r.body).unwrap();
            if v["occupied"] == false {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slow socket was not let go within 20 s ({i} events)"
        );
    }
    // Reading again, it gets what was written in order, then the 4100 close.
    let mut next = 3;
    loop {
        let frame = tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("a frame within the wait");
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("whole frames only");
                assert_eq!(data(&v)["i"], next, "in order");
                next += 1;
            }
            Some(Ok(Message::Close(f))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4100));
                break;
            }
            other => panic!("after event {next}: {other:?}"),
        }
    }
}
