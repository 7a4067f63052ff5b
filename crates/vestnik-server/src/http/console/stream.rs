//! The console's live stream: Server-Sent Events fed by the broker's [`Tap`](vestnik_broker::Tap).
//!
//! One task per open console reads the app's records from the tap and writes them as `event` messages,
//! adds a `stats` message (counts and the channel list) every `console.stats_interval_ms`, and a
//! `lagged` message when the console fell behind and lost records. The task waits on the HTTP writer,
//! never the broker: while it waits, the tap keeps overwriting the oldest records, so a slow console
//! only loses its own view. The task ends when the console goes away or the broker shuts down. This
//! module must never block the broker or change any state in it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use vestnik_broker::{App, TapItem};

use crate::state::AppState;

/// SSE messages queued between the console's task and its HTTP writer. Small: the backlog that
/// matters sits in the tap, where it is bounded and counted.
const WRITER_QUEUE: usize = 16;

/// The body of an open stream: whatever the console's task sends, until it ends.
#[derive(Debug)]
pub struct EventStream {
    /// What the console's task sends: whole SSE messages. The task ends when this is dropped.
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventStream {
    /// Each frame is one whole SSE message, so a message is never split across writes.
    type Data = Bytes;
    /// The stream cannot fail; it ends when the console's task drops its sender.
    type Error = Infallible;

    /// Polls the task's queue; `None` when the task ended (console gone or shutdown), which ends
    /// the response.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE message. `json` is compact JSON, which has no raw newlines, so one `data:` line holds it.
fn sse(event: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event.len() + json.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Connection and channel counts of `app` over the cluster, with the channel list and occupancy,
/// and its messages today (across the cluster, as this node counts them) against its daily quota.
pub async fn stats(state: &AppState, app: &App) -> Value {
    let rt = state.broker.runtime(app);
    let remote = state
        .broker
        .cluster()
        .map_or(0, |link| link.remote_connections(&app.id));
    let mut list = state.broker.channel_list(app, "").await;
    // By name, so rows keep their place from one tick to the next.
    list.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let channels: Vec<Value> = list
        .into_iter()
        .map(|(name, s)| {
            json!({
                "name": name.as_str(),
                "subscription_count": s.subscription_count,
                "user_count": s.user_count,
            })
        })
        .collect();
    json!({
        "app_id": app.id,
        "connections": rt.connection_count() + remote,
        "channel_count": channels.len(),
        "channels": channels,
        "dropped": state.tap.dropped(&app.id),
        "messages_today": rt.usage.messages_today(),
        "max_messages_per_day": app.max_messages_per_day,
    })
}

/// `GET /console/api/stream`: starts the console's task and answers with its stream.
///
/// # The loop
/// The console's task, tracked so the drain waits for it. It sends `hello`, then loops: each turn
/// picks the first of shutdown, the console going away (`tx.closed()`), a tap record (or a
/// `lagged` count), or the stats tick, and then sends the message, again racing shutdown, so a
/// console that stopped reading cannot hold the task past shutdown. The wait on `tx.send` is the
/// only backpressure, and it falls on the console's own view: the tap drops its oldest records.
///
/// Any app the node serves can be watched, including one created while it runs (the tap makes the
/// app's side on its first watch).
pub fn open(state: &AppState, app: Arc<App>) -> Response<EventStream> {
    let mut watch = state.tap.watch(&app.id);
    // With interest routing, a node hears only the channels it has subscribers of: while the
    // stream is open it listens to every route shard, so it shows the whole cluster's events.
    let everywhere = state.broker.cluster().map(|c| c.listen_everywhere());
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    let task_state = state.clone();
    let shutdown = state.shutdown.clone();
    let interval = Duration::from_millis(state.config.console.stats_interval_ms);
    state.shutdown.tracker().spawn(async move {
        let _everywhere = everywhere;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hello = json!({"app_id": app.id}).to_string();
        if tx.send(sse("hello", hello.as_bytes())).await.is_err() {
            return;
        }
        loop {
            let message = tokio::select! {
                _ = shutdown.started() => break,
                _ = tx.closed() => break,
                item = watch.recv() => match item {
                    TapItem::Record(json) => sse("event", &json),
                    TapItem::Lagged(n) => {
                        metrics::counter!("vestnik_console_events_dropped_total", "app_id" => app.id.clone())
                            .increment(n);
                        sse("lagged", json!({"dropped": n}).to_string().as_bytes())
                    }
                },
                _ = tick.tick() => {
                    let stats = stats(&task_state, &app).await;
                    sse("stats", stats.to_string().as_bytes())
                }
            };
            tokio::select! {
                _ = shutdown.started() => break,
                sent = tx.send(message) => if sent.is_err() { break },
            }
        }
    });
    let mut resp = Response::new(EventStream { rx });
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx would otherwise buffer the stream and the console would stop being live.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use vestnik_broker::PublishEvent;
    use vestnik_protocol::ChannelName;

    use super::*;
    use crate::config::Config;
    use crate::shutdown::Shutdown;

    /// The next SSE message's event name and data.
    async fn next(body: &mut EventStream) -> (String, Value) {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a message within 5 s")
            .expect("the stream is open")
            .expect("infallible");
        let bytes = frame.into_data().expect("a data frame");
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, data) = text
            .trim_end()
            .split_once('\n')
            .expect("event and data lines");
        let event = head.strip_prefix("event: ").unwrap().to_owned();
        let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        (event, data)
    }

    /// The promise of the module: a stalled console never slows the broker, loses its oldest
    /// records, and is told how many with a `lagged` message; its task ends when the console goes.
    #[tokio::test]
    async fn a_console_that_does_not_read_loses_the_oldest_and_is_told() {
        let mut config = Config::default();
        config.console.stream_capacity = 8;
        // Stats would interleave with the records; keep them out of this test's way.
        config.console.stats_interval_ms = 3_600_000;
        let state = AppState::build(config, Shutdown::new(), None).unwrap();
        let app = state.broker.apps().all()[0].clone();
        let mut body = open(&state, app.clone()).into_body();
        assert_eq!(next(&mut body).await.0, "hello");
        assert_eq!(
            next(&mut body).await.0,
            "stats",
            "the first tick is at once"
        );
        // The console reads nothing while far more events than it can hold go through the broker,
        // which never waits for it.
        let channels = [ChannelName::parse("busy").unwrap()];
        let total = 200;
        let names: Vec<String> = (0..total).map(|i| format!("e{i}")).collect();
        for name in &names {
            state.broker.publish(
                &app,
                &PublishEvent {
                    name,
                    data: "{}",
                    channels: &channels,
                    except: None,
                },
            );
        }
        let mut received = Vec::new();
        let mut dropped = 0;
        while received.last().map(String::as_str) != Some("e199") {
            match next(&mut body).await {
                (kind, data) if kind == "event" => {
                    received.push(data["event"].as_str().unwrap().to_owned());
                }
                (kind, data) if kind == "lagged" => dropped += data["dropped"].as_u64().unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(dropped > 0, "nothing was dropped: {received:?}");
        assert_eq!(received.len() as u64 + dropped, total as u64);
        assert_eq!(state.tap.dropped(&app.id), dropped);
        // What arrived is in order and ends with the newest: the oldest were the ones lost.
        let numbers: Vec<usize> = received.iter().map(|e| e[1..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        state.shutdown.trigger();
        drop(body);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), async {
                while state.tap.watchers() > 0 {
                    tokio::task::yield_now().await;
                }
            })
            .await,
            Ok(()),
            "the console's task ends and stops watching"
        );
    }
}
