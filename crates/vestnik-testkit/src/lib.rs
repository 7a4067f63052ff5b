//! Test helpers shared by every Rust integration test: spawn the real `vestnik` binary on a free port,
//! open raw WebSocket clients, call the signed HTTP API, and wait for conditions with timeouts.
//!
//! Nothing here sleeps to wait for a condition: every wait has a deadline and fails with a message
//! that says what did not happen.
//!
//! # Layout
//! - [`BrokerProcess`]: a running broker binary, killed on drop.
//! - [`WsClient`]: a raw WebSocket client that reads Pusher frames as JSON.
//! - [`Api`]: a signed HTTP API client over a plain TCP stream.
//! - [`conformance`]: the adapter conformance suite, run against MemoryHub, Redis and NATS, and
//!   the adapter shell's lifecycle cases, run against Redis and NATS.
//! - [`redis_cluster`]: a private Redis Cluster (3 masters, 3 replicas) on free ports.
//! - [`tls`]: a TLS front with a test certificate, and a client configuration that trusts it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vestnik_protocol::auth;

pub mod conformance;
pub mod redis_cluster;
pub mod tls;

/// The default wait for anything expected to happen.
///
/// Generous on purpose: CI machines are shared and slow, and a wait that succeeds returns as soon
/// as the condition holds, so a long deadline costs nothing on the passing path.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `vestnik` binary for tests outside the server crate (which use `CARGO_BIN_EXE_vestnik`):
/// `$VESTNIK_BIN`, else `$CARGO_TARGET_DIR/debug/vestnik`, else the workspace's `target/debug/vestnik`.
/// Panics with the build command when it is missing (`cargo test --workspace` builds it).
///
/// Tests run the real binary rather than an in-process server so that they cover what operators
/// run: flags, config loading, signal handling and the exit code.
pub fn broker_binary() -> std::path::PathBuf {
    let path = std::env::var_os("VESTNIK_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("debug").join("vestnik")
        });
    assert!(
        path.exists(),
        "vestnik binary not found at {}: run `cargo build -p vestnik-server` or set VESTNIK_BIN",
        path.display()
    );
    path
}

/// A running broker process; killed when dropped.
#[derive(Debug)]
pub struct BrokerProcess {
    /// The process; `None` once it has exited (`wait_exit`) so `Drop` does not kill a reused pid.
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// The temporary config file, removed with the process handle.
    _config: Option<tempfile_path::TempPath>,
    /// The default usage directory, removed with the process handle.
    _usage: tempfile_path::TempDir,
    /// Stderr lines after the listen line, fed by a reader thread so the child never blocks on a
    /// full pipe.
    logs: mpsc::Receiver<String>,
    /// Stderr lines up to and including the listen line.
    startup: Vec<String>,
}

/// A path deleted on drop, without a dependency on the `tempfile` crate in the library.
mod tempfile_path {
    /// A file removed when dropped.
    #[derive(Debug)]
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    /// A directory removed, with its contents, when dropped.
    #[derive(Debug)]
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl BrokerProcess {
    /// Starts `bin` with `config_toml` (empty for defaults) on 127.0.0.1 and a free port, and waits
    /// until it logs that it listens.
    pub fn spawn(bin: &Path, config_toml: &str) -> Self {
        Self::spawn_with(bin, config_toml, &[])
    }

    /// Like [`spawn`](Self::spawn), with extra arguments and environment.
    pub fn spawn_with(bin: &Path, config_toml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_until(bin, config_toml, env, "listening on http")
    }

    /// Like [`spawn_with`](Self::spawn_with), but returns as soon as the broker accepts
    /// connections, before it has joined its cluster (it logs `accepting on` first, and `listening
    /// on` once it serves): for tests of a node that is still starting.
    pub fn spawn_starting(bin: &Path, config_toml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_until(bin, config_toml, env, "accepting on http")
    }

    ///
    /// The broker is started on port 0 and the port is read from its own log line, so parallel
    /// tests never race for a port; the log line ends with the address for that reason.
    /// `RUST_LOG=info` is forced so the line is printed whatever the caller's environment says.
    /// Stderr is read by a thread for the whole life of the process: an unread pipe would fill and
    /// stall the broker.
    fn spawn_until(bin: &Path, config_toml: &str, env: &[(&str, &str)], marker: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "vestnik-test-{}-{}.toml",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, config_toml).expect("temp dir is writable");
        // Usage files go to a temp dir of this process, never into the working tree; a test that
        // restarts a broker on the same files names its own `VESTNIK_USAGE_DIR` (set below).
        let usage_dir = path.with_extension("usage");
        let mut cmd = Command::new(bin);
        cmd.env("VESTNIK_USAGE_DIR", &usage_dir);
        cmd.arg("--config")
            .arg(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut startup = Vec::new();
        let port = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let port = line
                        .split(marker)
                        .nth(1)
                        .and_then(|rest| rest.split_once("://"))
                        .map(|(_, addr)| {
                            addr.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                        });
                    startup.push(line);
                    if let Some(port) = port {
                        break port.expect("the listen line ends with a port");
                    }
                }
                Err(_) => panic!("broker did not log `{marker}` and its port within 20 s"),
            }
        };
        Self {
            child: Some(child),
            port,
            _config: Some(tempfile_path::TempPath(path)),
            _usage: tempfile_path::TempDir(usage_dir),
            logs: rx,
            startup,
        }
    }

    /// The WebSocket URL for an app key.
    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/app/{key}?protocol=7&client=rust&version=1.0",
            self.port
        )
    }

    /// Sends a signal (e.g. "TERM") to the process.
    ///
    /// By pid, through `kill`, so the drain tests send the same SIGTERM an orchestrator would.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits for the process to exit, returning its exit code.
    ///
    /// Polls `try_wait` because a child's exit has no async notification in `std`; the deadline
    /// turns a hung drain into a failure that names the wait.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait works") {
                self.child = None;
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines printed up to and including the listen line.
    pub fn startup_logs(&self) -> &[String] {
        &self.startup
    }

    /// Log lines printed since the last call (after the listen line).
    pub fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

impl Drop for BrokerProcess {
    /// Kills and reaps the broker, so a failing test never leaves a process (and its port) behind.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a [`WsClient`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A JSON text frame.
    Json(Value),
    /// A close frame with its code.
    Closed(Option<u16>, String),
}

/// A raw WebSocket client.
#[derive(Debug)]
pub struct WsClient {
    /// The connection; `MaybeTlsStream` so the same client speaks `ws://` and `wss://`.
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The socket id from the handshake, if `connect` saw one.
    pub socket_id: String,
}

impl WsClient {
    /// Connects and reads `pusher:connection_established`.
    pub async fn connect(url: &str) -> Self {
        let mut c = Self::connect_raw(url).await;
        let ev = c.expect_event("pusher:connection_established").await;
        let data: Value = serde_json::from_str(ev["data"].as_str().expect("data is a string"))
            .expect("data is JSON");
        c.socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        c
    }

    /// Connects without reading anything.
    pub async fn connect_raw(url: &str) -> Self {
        Self::try_connect(url, &[])
            .await
            .unwrap_or_else(|r| panic!("WebSocket handshake refused: {} {}", r.status, r.body))
    }

    /// Tries the handshake with extra request headers (such as `X-Forwarded-For`) and reads
    /// nothing; a refused handshake returns the server's HTTP answer.
    ///
    /// For the refusals a node answers in plain HTTP before any upgrade (503 while starting or
    /// draining, 429 over the IP rate): the test reads the status, the JSON error and
    /// `Retry-After`.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, HttpResponse> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Error;
        let mut req = url.into_client_request().expect("a valid ws:// URL");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("a valid header name"),
                v.parse().expect("a valid header value"),
            );
        }
        let answer = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect within the wait");
        match answer {
            Ok((ws, _)) => Ok(Self {
                ws,
                socket_id: String::new(),
            }),
            Err(Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(HttpResponse {
                    status: resp.status().as_u16(),
                    json: serde_json::from_str(&body).unwrap_or(Value::Null),
                    headers: resp
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body,
                })
            }
            Err(e) => panic!("WebSocket handshake failed: {e}"),
        }
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send works");
    }

    /// Sends a raw message.
    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send works");
    }

    /// Reads the next frame within `timeout`; `None` if nothing came.
    ///
    /// Pings and pongs are skipped (tungstenite answers pings itself); a transport error reads as a
    /// close with its text, so a test sees why the connection ended instead of a panic in the
    /// reader.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<Received> {
        loop {
            let next = tokio::time::timeout(timeout, self.ws.next()).await.ok()?;
            return Some(match next {
                None => Received::Closed(None, "stream ended".into()),
                Some(Err(e)) => Received::Closed(None, e.to_string()),
                Some(Ok(Message::Text(t))) => {
                    Received::Json(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Some(Ok(Message::Close(f))) => Received::Closed(
                    f.as_ref().map(|f| u16::from(f.code)),
                    f.map(|f| f.reason.to_string()).unwrap_or_default(),
                ),
                Some(Ok(_)) => continue,
            });
        }
    }

    /// Reads frames until one has event `name`; panics after [`WAIT`] or on close.
    ///
    /// Frames of other events are skipped, so a test can wait for the one it cares about without
    /// knowing what else the server sends in between (pings, `subscription_count`, member events).
    pub async fn expect_event(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(Received::Json(v)) if v["event"] == name => return v,
                Some(Received::Json(_)) => {}
                Some(Received::Closed(code, reason)) => {
                    panic!("closed ({code:?} {reason}) while waiting for {name}")
                }
                None => panic!("no {name} within {WAIT:?}"),
            }
        }
    }

    /// Reads frames until the close; returns its code. Panics after `timeout`.
    ///
    /// The frames seen before the close come back too, so a test can check what was delivered
    /// before a drain or a refusal (a `pusher:error` before its close, for example).
    pub async fn expect_close(&mut self, timeout: Duration) -> (Option<u16>, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(Received::Json(v)) => seen.push(v),
                Some(Received::Closed(code, _)) => return (code, seen),
                None => panic!("no close within {timeout:?}; saw {seen:?}"),
            }
        }
    }

    /// Asserts that no frame with event `name` arrives within `window`.
    ///
    /// The one wait that must last its whole window; keep the window short, and use it only after a
    /// positive wait has shown that the events before it arrived.
    pub async fn expect_no_event(&mut self, name: &str, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.recv_within(left).await {
                Some(Received::Json(v)) => assert_ne!(v["event"], name, "unexpected {v}"),
                Some(Received::Closed(code, r)) => panic!("closed ({code:?} {r})"),
                None => return,
            }
        }
    }

    /// Subscribes and waits for `subscription_succeeded` (or returns the error frame).
    ///
    /// Both answers are returned rather than asserted, so refusal tests use the same call and check
    /// the error frame's `status` and `type`.
    pub async fn subscribe(&mut self, data: Value) -> Value {
        let channel = data["channel"].as_str().expect("channel").to_owned();
        self.send(&serde_json::json!({"event": "pusher:subscribe", "data": data}))
            .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(Received::Json(v))
                    if v["channel"] == channel.as_str()
                        && (v["event"] == "pusher_internal:subscription_succeeded"
                            || v["event"] == "pusher:subscription_error") =>
                {
                    return v
                }
                Some(Received::Json(_)) => {}
                other => panic!("no subscription answer for {channel}: {other:?}"),
            }
        }
    }
}

/// A signed HTTP API client.
#[derive(Debug, Clone)]
pub struct Api {
    /// Broker port.
    pub port: u16,
    /// App id used in paths.
    pub app_id: String,
    /// App key.
    pub key: String,
    /// App secret.
    pub secret: String,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body parsed as JSON (Null if not JSON).
    pub json: Value,
    /// Raw body.
    pub body: String,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The request timestamp, as the signed API wants it (seconds since the epoch).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Api {
    /// A client for app `app_id` with `key` and `secret`.
    pub fn new(port: u16, app_id: &str, key: &str, secret: &str) -> Self {
        Self {
            port,
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// A signed request to `/apps/{id}{sub}`.
    pub async fn call(
        &self,
        method: &str,
        sub: &str,
        params: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let path = format!("/apps/{}{}", self.app_id, sub);
        self.call_path(method, &path, params, body).await
    }

    /// A signed request to an exact path.
    ///
    /// The signature is computed over `path` and the query exactly as sent, the way the official
    /// SDKs do, so a test exercises the broker's real verification rather than a shortcut.
    pub async fn call_path(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let q = auth::sign_request(
            &self.key,
            &self.secret,
            method,
            path,
            params,
            body.as_bytes(),
            now(),
        );
        raw_http(self.port, method, &format!("{path}?{q}"), body).await
    }

    /// Triggers `name` with `data` on `channels`.
    pub async fn trigger(&self, channels: &[&str], name: &str, data: &str) -> HttpResponse {
        let body =
            serde_json::json!({"name": name, "channels": channels, "data": data}).to_string();
        self.call("POST", "/events", &[], &body).await
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole answer.
///
/// `Connection: close` lets the answer be read to the end of the stream, so the helper needs no
/// HTTP parser beyond the status line and headers.
pub async fn raw_http(port: u16, method: &str, target: &str, body: &str) -> HttpResponse {
    raw_http_with(
        port,
        method,
        target,
        &[("Content-Type", "application/json")],
        body,
    )
    .await
}

/// Like [`raw_http`], with exactly the given extra headers (cookies, authorization, content type);
/// the answer's headers are kept in [`HttpResponse::headers`].
///
/// Written by hand over TCP on purpose: a test controls every byte of the request (a missing
/// header, a bad method), which an HTTP client library would fix up.
pub async fn raw_http_with(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("answer within the wait")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        json: serde_json::from_str(body).unwrap_or(Value::Null),
        body: body.to_owned(),
        headers,
    }
}

/// Channel `auth` for a socket.
///
/// What an app server's auth endpoint would answer, computed with the protocol crate's signer, so a
/// test needs no app server.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    auth::sign_channel(key, secret, socket_id, channel, channel_data)
}

/// Waits until `cond` holds, polling every 20 ms, or panics with `what` after `timeout`.
///
/// Polling rather than a notification because the conditions are outside observations (metrics,
/// stats over HTTP, process state); 20 ms keeps the wait short without busy-looping.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
