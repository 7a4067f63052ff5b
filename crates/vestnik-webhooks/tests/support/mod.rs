//! Test support: a real HTTP webhook receiver on 127.0.0.1 that checks every signature with the
//! protocol crate and records what it got, plus condition waits with timeouts.
//!
//! The receiver can be scripted (answer 500 twice, answer slowly, answer 500 forever) and stopped
//! and started again on the same port, to play a receiver that is down. Nothing here may sleep to
//! make a test pass: waits poll a condition and fail loudly when their time is up.

#![allow(dead_code)] // each test file uses a different part

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use vestnik_protocol::ChannelName;
use vestnik_webhooks::{AppHooks, WebhookSettings, WebhookTarget};

/// The app every test uses.
pub const APP_ID: &str = "1001";
/// Its key.
pub const KEY: &str = "test-key";
/// Its secret.
pub const SECRET: &str = "test-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path.
    pub path: String,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The parsed body.
    pub body: Value,
    /// Whether `X-Pusher-Signature` verified with [`SECRET`] and `X-Pusher-Key` was [`KEY`].
    pub signed: bool,
    /// What the receiver answered.
    pub status: u16,
}

impl Recorded {
    /// The events of the body.
    pub fn events(&self) -> Vec<Value> {
        self.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// The `X-Vestnik-Webhook-Id` header.
    pub fn id_header(&self) -> String {
        self.headers[vestnik_webhooks::ID_HEADER]
            .to_str()
            .expect("ascii")
            .to_owned()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<u16>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
}

/// A webhook receiver running on a local port.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: JoinSet<()>,
}

impl Receiver {
    /// Starts a receiver on a free port.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts a receiver on `addr` (to bring back one that was down).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let mut tasks = JoinSet::new();
        let accept_state = Arc::clone(&state);
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&accept_state);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, hyper::Error>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, tasks }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses, then with the default status.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().extend(statuses);
    }

    /// The status answered when the script is empty (200 at start).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).expect("small");
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().clone()
    }

    /// The events of every request answered with a 2xx, in arrival order.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(Recorded::events)
            .collect()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_concurrent.load(Ordering::SeqCst)
    }

    /// Requests being answered right now.
    pub fn concurrent(&self) -> usize {
        self.state.concurrent.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every open connection: the receiver is down.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let now = state.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_concurrent.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let signature = parts
        .headers
        .get("x-pusher-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key_ok = parts.headers.get("x-pusher-key").is_some_and(|v| v == KEY);
    let signed = key_ok && vestnik_protocol::webhook::verify_webhook(SECRET, &body, signature);
    let status = state
        .script
        .lock()
        .pop_front()
        .unwrap_or_else(|| state.status.load(Ordering::SeqCst));
    state.requests.lock().push(Recorded {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
        status,
    });
    state.concurrent.fetch_sub(1, Ordering::SeqCst);
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"ok")))
        .expect("response")
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A local address with nothing listening on it (a receiver that is down).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Settings fast enough for tests: short batches, holds and retries.
pub fn settings(dir: &Path) -> WebhookSettings {
    WebhookSettings {
        data_dir: dir.to_owned(),
        batch_ms: 20,
        hold_ms: 50,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        request_timeout_ms: 5_000,
        ..WebhookSettings::default()
    }
}

/// The test app with these targets.
pub fn app(targets: Vec<WebhookTarget>) -> Vec<AppHooks> {
    vec![AppHooks {
        app_id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
        targets,
    }]
}

/// A channel name.
pub fn ch(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel")
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
