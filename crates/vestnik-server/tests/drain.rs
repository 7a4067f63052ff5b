//! The staggered drain with the real binary: on SIGTERM `/ready` turns 503, new upgrades are refused
//! with a JSON 503, the API keeps serving the sockets still open, the sockets are closed with 4200 in
//! batches spread over the window, and the process exits 0. A request in flight when the signal
//! comes still gets its 200; a second signal exits at once with 130.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::time::Instant;

const SOCKETS: usize = 40;
const WINDOW_MS: u64 = 2_000;

#[tokio::test]
async fn sigterm_spreads_4200_closes_over_the_window_and_exits_0() {
    let mut b = spawn_with_server(&format!(
        "drain_grace_ms = 300\ndrain_window_ms = {WINDOW_MS}"
    ));
    let mut clients = Vec::new();
    for _ in 0..SOCKETS {
        let mut c = WsClient::connect(&b.ws_url(KEY)).await;
        c.subscribe(json!({"channel": "drain-news"})).await;
        clients.push(c);
    }
    assert_eq!(raw_http(b.port, "GET", "/ready", "").await.status, 200);

    // Each client records when its close came, and what it saw before.
    let waiters: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let (code, seen) = c.expect_close(Duration::from_secs(20)).await;
                (Instant::now(), code, seen)
            })
        })
        .collect();
    b.signal("TERM");

    wait_until("/ready to answer 503", WAIT, || async {
        raw_http(b.port, "GET", "/ready", "").await.status == 503
    })
    .await;
    let refused = WsClient::try_connect(&b.ws_url(KEY), &[])
        .await
        .expect_err("a new socket must be refused while draining");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("draining")),
        "{}",
        refused.body
    );
    // The API still serves the sockets that are open.
    let r = api(&b).trigger(&["drain-news"], "still-here", "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut closes = Vec::new();
    let mut saw_event = 0;
    for w in waiters {
        let (at, code, seen) = w.await.expect("client task");
        assert_eq!(code, Some(4200), "every socket is closed with 4200");
        saw_event += usize::from(seen.iter().any(|v| v["event"] == "still-here"));
        closes.push(at);
    }
    assert!(
        saw_event > 0,
        "no open socket got the event triggered during the drain"
    );
    closes.sort();
    let spread = *closes.last().unwrap() - closes[0];
    // Spread over the window, not all at once: the first and last closes are at least half the
    // window apart, and no quarter of the window holds more than half of the closes.
    assert!(
        spread >= Duration::from_millis(WINDOW_MS / 2),
        "closes span only {spread:?} of a {WINDOW_MS} ms window"
    );
    let quarter = Duration::from_millis(WINDOW_MS / 4);
    let densest = closes
        .iter()
        .enumerate()
        .map(|(i, start)| {
            closes[i..]
                .iter()
                .take_while(|t| **t - *start < quarter)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        densest <= SOCKETS / 2,
        "{densest} of {SOCKETS} closes fell within {quarter:?}: not spread in batches"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(15)), Some(0));
}

#[tokio::test]
async fn a_drain_without_sockets_exits_0() {
    let mut b = spawn_with_server("drain_grace_ms = 0");
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A signed `POST /apps/main/events` split in two: the request head (with its signed query and
/// `Content-Length`), and the body to send later.
fn split_trigger(channel: &str) -> (String, String) {
    let body = json!({"name": "late", "channels": [channel], "data": "{}"}).to_string();
    let path = "/apps/main/events";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query =
        vestnik_protocol::auth::sign_request(KEY, SECRET, "POST", path, &[], body.as_bytes(), now);
    let head = format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    (head, body)
}

#[tokio::test]
async fn an_http_request_in_flight_at_sigterm_finishes_with_200() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut b = spawn_with_server("drain_grace_ms = 0");
    let (head, body) = split_trigger("in-flight");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    b.signal("TERM");
    // The drain is over once the accept loop has stopped: new connections are refused. Only the
    // request in flight is left.
    wait_until("the drain to stop accepting", WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", b.port))
            .await
            .is_err()
    })
    .await;
    s.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .expect("the in-flight request is answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn a_second_sigterm_during_the_drain_exits_at_once_with_130() {
    const LONG_WINDOW_MS: u64 = 60_000;
    let mut b = spawn_with_server(&format!(
        "drain_grace_ms = 0\ndrain_window_ms = {LONG_WINDOW_MS}"
    ));
    // Two sockets: the first is closed at the window's start, the second only at its end, so the
    // first signal alone would keep the process up for the whole minute.
    let _first = WsClient::connect(&b.ws_url(KEY)).await;
    let _second = WsClient::connect(&b.ws_url(KEY)).await;
    let start = Instant::now();
    b.signal("TERM");
    wait_until("/ready to answer 503", WAIT, || async {
        raw_http(b.port, "GET", "/ready", "").await.status == 503
    })
    .await;
    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(5)), Some(130));
    assert!(
        start.elapsed() < Duration::from_millis(LONG_WINDOW_MS / 4),
        "exited only after {:?}",
        start.elapsed()
    );
}
