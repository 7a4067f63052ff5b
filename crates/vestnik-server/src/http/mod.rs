//! The signed Pusher HTTP API and the health endpoints.
//!
//! [`route`] dispatches on method and path: a WebSocket upgrade goes to [`crate::ws`], `/apps/{id}/...`
//! to the resource files after the signature check in [`signed`], health to [`health`], `/pushler.js`
//! to [`client_script`], `/console` to [`console`]. Every error is an [`ApiError`], answered as a 4xx with a JSON
//! `{"error": ..., "code": ...}` body. Success is always 200 with a JSON body, because the PHP SDK
//! treats anything else as a failure.

pub mod channels;
pub mod client_script;
pub mod console;
pub mod events;
pub mod health;
pub mod signed;
pub mod users;
pub mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::server::AppState;
use signed::SignedCall;

/// The `app_id` label of a metric about a request or socket whose app is not known: a label never
/// carries a value the client chose, so that nobody can grow the series without bound.
pub const UNKNOWN_APP: &str = "unknown";

/// Seconds a caller refused by a starting node is told to wait: a node joins its cluster within a
/// few hundred milliseconds once the backbone answers (`join_timeout_ms` bounds it, 5 s by default).
const STARTING_RETRY_AFTER_SECS: u64 = 1;

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// An API failure: a status and a message, answered as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// Seconds to send in `Retry-After` (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the caller to wait `seconds` before trying again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"error": self.message, "code": self.status.as_u16()});
        let mut resp = json_response(self.status, &body);
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the request never came, so the connection cannot carry another one.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Decodes one percent-encoded path segment (`/channels/{name}`, `/users/{user_id}`): SDKs encode
/// names with `@`, `,`, `;`, `#` or spaces. Unlike a query value, `+` stays `+` in a path. A segment
/// that is not valid UTF-8 once decoded is a 400.
pub fn path_segment(raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| {
            ApiError::bad_request(format!("Path segment {raw:?} is not UTF-8 once decoded"))
        })
}

/// Reads a whole request body of at most `limit` bytes within `timeout`: 413 over the limit, 408
/// when it does not arrive in time (hyper bounds only the headers, so without this a client could
/// hold a connection and its task by sending a body byte by byte), 400 when it cannot be read.
pub async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("Request body not received within {timeout:?}"),
            )
        })?
        .map(|collected| collected.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body is over {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("Cannot read the request body: {e}"))
            }
        })
}

/// 200 with a JSON body.
pub fn ok(body: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, body)
}

/// Whether the request asks for a WebSocket upgrade.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// Routes one request: `/console...` to [`console`] (which may answer with a stream), everything
/// else to the API, health and WebSocket routes.
pub async fn route(
    req: Request<Incoming>,
    state: AppState,
    peer: SocketAddr,
) -> Response<console::ConsoleBody> {
    if !is_websocket_upgrade(&req) && console::owns(req.uri().path()) {
        return console::route(req, state, peer).await;
    }
    route_api(req, state, peer)
        .await
        .map(http_body_util::Either::Left)
}

/// Routes a request outside the console.
async fn route_api(req: Request<Incoming>, state: AppState, peer: SocketAddr) -> Response<Body> {
    if is_websocket_upgrade(&req) {
        return crate::ws::upgrade::upgrade(req, state, peer);
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["up"]) => Ok(health::up()),
        (&Method::GET | &Method::HEAD, ["ready"]) => Ok(health::ready(&state)),
        (&Method::GET, ["usage"]) => Ok(health::usage(&state)),
        (&Method::GET | &Method::HEAD, ["pushler.js"]) => {
            Ok(client_script::serve(&method, req.headers()))
        }
        (&Method::GET, ["app", ..]) => Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket endpoint: connect with a WebSocket client",
        )),
        (_, ["apps", app, rest @ ..]) => {
            let (app, rest) = (
                (*app).to_owned(),
                rest.iter().map(|s| (*s).to_owned()).collect(),
            );
            api(req, state, Some(app), rest).await
        }
        // The Python SDK posts terminate_connections without the /apps/{id} prefix and signs that
        // path; the app is then found by auth_key.
        (&Method::POST, ["users", _, "terminate_connections"]) => {
            let rest = segments.iter().map(|s| (*s).to_owned()).collect();
            api(req, state, None, rest).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No route for {method} {path}"),
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// A signed API call under `/apps/{app}` (or the Python SDK's bare `/users/...`), counted in
/// `vestnik_http_requests_total` whatever its outcome.
async fn api(
    req: Request<Incoming>,
    state: AppState,
    app_segment: Option<String>,
    rest: Vec<String>,
) -> Result<Response<Body>, ApiError> {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let route = route_name(req.method(), &rest);
    let app_id = app_label(&state, app_segment.as_deref(), req.uri().query());
    let result = signed_call(req, &state, app_segment.as_deref(), &rest).await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    metrics::counter!(
        "vestnik_http_requests_total",
        "app_id" => app_id,
        "route" => route,
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    result
}

/// The `app_id` label of an API call: the configured app the path (or, without one, `auth_key`)
/// names, the same one [`signed::verify`] resolves, or [`UNKNOWN_APP`].
fn app_label(state: &AppState, app_segment: Option<&str>, query: Option<&str>) -> String {
    let apps = state.broker.apps();
    let app = match app_segment {
        Some(seg) => apps.by_id(seg).or_else(|| apps.by_key(seg)),
        None => vestnik_protocol::auth::parse_query(query.unwrap_or(""))
            .into_iter()
            .find(|(k, _)| k == "auth_key")
            .and_then(|(_, key)| apps.by_key(&key)),
    };
    app.map_or_else(|| UNKNOWN_APP.to_owned(), |a| a.id.clone())
}

/// Refuses while the node is starting, verifies the signature, applies the app's rate limit and
/// dispatches.
async fn signed_call(
    req: Request<Incoming>,
    state: &AppState,
    app_segment: Option<&str>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    if state.is_starting() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is starting: it has not joined its cluster yet, so an event could not reach \
             the other nodes; retry shortly",
        )
        .retry_after(STARTING_RETRY_AFTER_SECS));
    }
    let call = signed::verify(req, state, app_segment).await?;
    let limited = state.api_limiter.check(
        &call.app.id,
        call.app.api_rate_limit,
        std::time::Instant::now(),
    );
    match limited {
        Ok(()) => dispatch(state, &call, rest).await,
        Err(retry) => {
            metrics::counter!("vestnik_rate_limited_total", "limit" => "api", "app_id" => call.app.id.clone())
                .increment(1);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many API requests for app {}: at most {} per second; retry after {} s",
                    call.app.id, call.app.api_rate_limit, retry.0
                ),
            )
            .retry_after(retry.0))
        }
    }
}

/// A route's name for metrics: the path pattern, never the values in it.
fn route_name(method: &Method, rest: &[&str]) -> &'static str {
    match (method, rest) {
        (&Method::POST, ["events"]) => "events",
        (&Method::POST, ["batch_events"]) => "batch_events",
        (&Method::GET, ["channels"]) => "channels",
        (&Method::GET, ["channels", _]) => "channel",
        (&Method::GET, ["channels", _, "users"]) => "channel_users",
        (&Method::POST, ["users", _, "terminate_connections"]) => "terminate_connections",
        (_, ["webhooks", ..]) => "webhooks_admin",
        _ => "unknown",
    }
}

async fn dispatch(
    state: &AppState,
    call: &SignedCall,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    match (&call.method, rest) {
        (&Method::POST, ["events"]) => events::trigger(state, call).await,
        (&Method::POST, ["batch_events"]) => events::batch(state, call).await,
        (&Method::GET, ["channels"]) => channels::list(state, call).await,
        (&Method::GET, ["channels", name]) => channels::show(state, call, name).await,
        (&Method::GET, ["channels", name, "users"]) => channels::users(state, call, name),
        (&Method::POST, ["users", user_id, "terminate_connections"]) => {
            users::terminate(state, call, user_id)
        }
        (&Method::GET, ["webhooks", "stats"]) => webhooks::stats(state, call),
        (&Method::GET, ["webhooks", "dead_letters"]) => webhooks::dead_letters(state, call).await,
        (&Method::POST, ["webhooks", "dead_letters", "replay"]) => {
            webhooks::act(state, call, webhooks::Action::Replay).await
        }
        (&Method::POST, ["webhooks", "dead_letters", "purge"]) => {
            webhooks::act(state, call, webhooks::Action::Purge).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No API endpoint {} {}", call.method, call.path),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded_but_plus_stays() {
        assert_eq!(path_segment("user%40x%20y").unwrap(), "user@x y");
        assert_eq!(path_segment("a+b").unwrap(), "a+b");
        assert_eq!(
            path_segment("%23server-to-user-7").unwrap(),
            "#server-to-user-7"
        );
        assert_eq!(
            path_segment("%FF").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
