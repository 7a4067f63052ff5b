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
use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use vestnik_broker::{App, TapItem};

use crate::http::ApiError;
use crate::server::AppState;

/// SSE messages queued between the console's task and its HTTP writer. Small: the backlog that
/// matters sits in the tap, where it is bounded and counted.
const WRITER_QUEUE: usize = 16;

/// The body of an open stream: whatever the console's task sends, until it ends.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

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

/// Connection and channel counts of `app` over the cluster, with the channel list and occupancy.
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
    })
}

/// `GET /console/api/stream`: starts the console's task and answers with its stream.
pub fn open(state: &AppState, app: Arc<App>) -> Result<Response<EventStream>, ApiError> {
    let mut watch = state.tap.watch(&app.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("App {:?} has no console tap", app.id),
        )
    })?;
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    let task_state = state.clone();
    let shutdown = state.shutdown.clone();
    let interval = Duration::from_millis(state.config.console.stats_interval_ms);
    state.shutdown.tracker().spawn(async move {
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
    Ok(resp)
}
