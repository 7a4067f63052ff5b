//! The WebSocket upgrade: checks the handshake headers, answers 101, and decides, before any broker
//! state is touched, whether the socket is admitted (right path, known key, supported protocol,
//! allowed origin). A socket refused for what it asked gets upgraded, so that the client sees a
//! `pusher:error` and a close code it understands instead of an HTTP error it cannot read.
//!
//! Refusals about the node, not the request, stay plain HTTP so they cost nothing: a starting node
//! (not yet joined to its cluster) and a draining one answer 503 (the client's retry lands on another
//! node, or on this one once it has joined), and a client IP over its connection rate gets 429 with
//! `Retry-After` (see [`crate::ratelimit`]). All carry a JSON `{"error": ...}` body. Sockets refused
//! after the upgrade are counted in `vestnik_sockets_refused_total` by [`session::refuse`].
//!
//! The router has already decided that the request is an upgrade (once, see [`crate::router`]); this
//! module must never route, and never touch the broker before the socket is admitted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use vestnik_broker::App;
use vestnik_protocol::limits::SUPPORTED_PROTOCOLS;
use vestnik_protocol::PusherCode;

use super::io::SessionIo;
use super::session::{self, Refused, Session, SessionContext};
use crate::reply::{ApiError, Body, UNKNOWN_APP};
use crate::state::AppState;

/// Why a socket is refused before it reaches the broker.
///
/// Carried from `admit` (before the 101) into the session task (after it), which writes the
/// `pusher:error` and the close; the broker never sees a refused socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The app the key named, when it named one: the only app id a refusal is counted under.
    pub app_id: Option<String>,
    /// The code it is closed with.
    pub code: PusherCode,
    /// The message sent with the `pusher:error` and the close.
    pub message: String,
}

impl Refusal {
    /// A refusal counted under `app` when the key named one.
    fn new(app: Option<&App>, code: PusherCode, message: String) -> Self {
        Self {
            app_id: app.map(|a| a.id.clone()),
            code,
            message,
        }
    }
}

/// Decides whether a socket at `path?query` from `origin` may connect, in the order Pusher checks:
/// the path (4005), the key (4001), the protocol version (4006-4008), the origin (4009). The answer
/// is decided before the 101 and delivered after it, so that a refused client reads a Pusher code
/// rather than an HTTP status it cannot see.
///
/// The key is looked up by key only, never by id: a socket URL carries the public key, and
/// accepting an id there would let a guessable number stand in for it.
pub fn admit(
    state: &AppState,
    path: &str,
    query: Option<&str>,
    origin: Option<&str>,
) -> Result<Arc<App>, Refusal> {
    // pusher-js lets apps prefix the path (wsPath), so only the tail must be /app/{key}.
    let key = path
        .rsplit_once("/app/")
        .map(|(_, key)| key)
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .ok_or_else(|| {
            Refusal::new(
                None,
                PusherCode::PathNotFound,
                format!("Path not found: {path}; connect to /app/{{key}}"),
            )
        })?;
    let app = state.broker.apps().by_key(key).ok_or_else(|| {
        Refusal::new(
            None,
            PusherCode::AppNotFound,
            format!("App key {key} does not exist."),
        )
    })?;
    let refuse = |code, message| Refusal::new(Some(&app), code, message);
    let params = vestnik_protocol::auth::parse_query(query.unwrap_or(""));
    let protocol = params.get("protocol").ok_or_else(|| {
        refuse(
            PusherCode::NoProtocol,
            "No protocol version supplied".to_owned(),
        )
    })?;
    let version: u32 = protocol.parse().map_err(|_| {
        refuse(
            PusherCode::InvalidVersion,
            format!("Invalid version string format: {protocol:?}"),
        )
    })?;
    if !SUPPORTED_PROTOCOLS.contains(&version) {
        return Err(refuse(
            PusherCode::UnsupportedProtocol,
            format!(
                "Unsupported protocol version {version}; supported: {}-{}",
                SUPPORTED_PROTOCOLS.start(),
                SUPPORTED_PROTOCOLS.end()
            ),
        ));
    }
    if !app.origin_allowed(origin) {
        return Err(refuse(
            PusherCode::Unauthorized,
            format!(
                "Origin {} is not allowed for this app",
                origin.unwrap_or("(none)")
            ),
        ));
    }
    Ok(app)
}

/// Answers an upgrade request: plain-HTTP refusals about the node (starting, draining, IP rate,
/// WebSocket version), or 101 with the session (or its refusal) spawned on the shutdown tracker.
///
/// The 101 is returned at once and the socket is taken over on a tracked task, because hyper only
/// hands the connection over (`hyper::upgrade::on`) after this response has been written. The
/// session's context is built here, from the state, so the session task holds the broker and its
/// settings, not the whole [`AppState`].
pub fn upgrade(mut req: Request<Incoming>, state: AppState, peer: SocketAddr) -> Response<Body> {
    let peer = match refusal_about_the_node(&req, &state, peer) {
        Ok(ip) => ip,
        Err(resp) => return *resp,
    };
    let headers = req.headers();
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return ApiError::bad_request("Missing Sec-WebSocket-Key").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let admission = admit(&state, req.uri().path(), req.uri().query(), origin);
    let start = Box::new(Start {
        upgrade: hyper::upgrade::on(&mut req),
        admission,
        ctx: Arc::clone(&state.sessions),
        peer,
    });
    state.shutdown.tracker().spawn(socket_task(start));
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// What a socket's task starts from. Boxed, so that the task's future carries one pointer for it
/// rather than these fields for the socket's whole life (an async block keeps its captures).
struct Start {
    /// Resolves to the connection once hyper has written the 101.
    upgrade: hyper::upgrade::OnUpgrade,
    /// The admitted app, or why the socket is refused.
    admission: Result<Arc<App>, Refusal>,
    /// What the session uses.
    ctx: Arc<SessionContext>,
    /// The client's address.
    peer: IpAddr,
}

/// A socket's task: waits for hyper to hand the connection over, then runs the session (or its
/// refusal) to the end.
async fn socket_task(mut start: Box<Start>) {
    // Only the box is kept across this wait; its fields are taken after it.
    let upgraded = match (&mut start.upgrade).await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(peer = %start.peer, "upgrade failed: {e}");
            return;
        }
    };
    let write_timeout = start.ctx.settings.write_timeout;
    // Opened (or refused) in a plain function: nothing of the set-up stays in the task's future
    // while the session runs.
    match open(start, upgraded) {
        Ok(session) => session::run(session).await,
        Err(refused) => Box::pin(session::refuse(refused, write_timeout)).await,
    }
}

/// Takes the upgraded connection over and opens the session, or says why the socket is refused.
// The box is taken whole on purpose: moved out of in the task instead, it would be freed only when
// the task ends.
#[allow(clippy::boxed_local)]
fn open(start: Box<Start>, upgraded: Upgraded) -> Result<Box<Session>, Box<Refused>> {
    // The box is freed when this function returns, not at the end of the socket's task.
    let Start {
        admission,
        ctx,
        peer,
        ..
    } = *start;
    let (io, wire) = SessionIo::new(upgraded, ctx.limits);
    match admission {
        Ok(app) => session::open(io, wire, ctx, app, peer),
        Err(r) => {
            tracing::debug!(%peer, code = r.code.code(), "refused socket: {}", r.message);
            Err(Box::new(Refused {
                io,
                wire,
                app_id: r.app_id.unwrap_or_else(|| UNKNOWN_APP.to_owned()),
                code: r.code,
                message: r.message,
            }))
        }
    }
}

/// The refusals that are about the node or the client's rate, not what the socket asks for, answered
/// as plain HTTP before anything is allocated: 503 while starting or draining, 429 over the client
/// IP's connection rate, 426 for a WebSocket version other than 13. Otherwise the client's IP.
///
/// The order is cheapest first and most general first: node state, then the client's rate (the
/// limiter counts the attempt), then the WebSocket version. A refused client gets an HTTP status,
/// since a node that is not serving should not spend an upgrade and a session task on it.
fn refusal_about_the_node(
    req: &Request<Incoming>,
    state: &AppState,
    peer: SocketAddr,
) -> Result<std::net::IpAddr, Box<Response<Body>>> {
    let headers = req.headers();
    if state.is_starting() {
        return Err(Box::new(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is starting (joining its cluster) and accepts no sockets yet; retry shortly",
        )
        .into_response()));
    }
    if state.is_draining() {
        return Err(Box::new(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "This node is draining and accepts no new sockets; reconnect to another node",
            )
            .into_response(),
        ));
    }
    let peer = crate::peer::client_ip(peer, headers, state.config.server.trust_proxy);
    if let Err(retry) = state.ip_limiter.check(peer, std::time::Instant::now()) {
        metrics::counter!("vestnik_rate_limited_total", "limit" => "ip_connections").increment(1);
        tracing::debug!(%peer, "refused socket: connection rate per IP exceeded");
        let rate = &state.config.server;
        return Err(Box::new(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many new connections from {peer}: at most {} per {} s",
                    rate.ip_connection_rate, rate.ip_connection_window
                ),
            )
            .retry_after(retry.0)
            .into_response(),
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut resp = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version; use 13",
        )
        .into_response();
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(resp));
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, F: std::future::Future>(_: impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A socket's task is allocated once per socket and lives as long as it: its future is most of
    /// what an idle socket costs (docs/benchmarks.md, "Where an idle socket's bytes go").
    #[test]
    fn a_socket_task_stays_small() {
        let size = future_size(socket_task);
        println!("socket task future: {size} bytes");
        assert!(size <= 320, "socket task future grew to {size} bytes");
    }
}
