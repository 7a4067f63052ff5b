//! The live debug console at `/console`: a page embedded in the binary, its sign-in, and its API.
//!
//! Routes (all under `/console`, apart from the signed API's `/apps/...`):
//! - `GET /console`, `/console/console.js`, `/console/operator.js`, `/console/console.css`: the page
//!   (no external resources);
//! - `GET /console/api/apps`: app ids to pick from (never a key or a secret);
//! - `POST /console/api/session` `{"app_id", "secret"}`: signs in, sets the session cookie (401 on a
//!   wrong secret); `GET` says whether and to which app this browser is signed in, `DELETE` signs out;
//! - `GET /console/api/stats`: counts and the channel list of the signed-in app;
//! - `GET /console/api/stream`: Server-Sent Events: the app's events live, and its stats every tick;
//! - `POST /console/api/events` `{"channel", "name", "data"}`: publishes a test event;
//! - `GET /console/api/history?channel=…`: the newest kept events of a channel (see
//!   `docs/recovery.md`), for the page's history view;
//! - `GET /console/api/operator/apps`, `POST /console/api/operator/session`: the operator view's
//!   (see [`operator`]), behind the admin token instead of a session.
//!
//! Every other API route but the app list and sign-in needs the session cookie (see [`token`]), and
//! acts on that session's app only. The app list and sessions follow the apps served now (the
//! node's live store: an app database's changes, `SIGHUP`), not the config file read at start. Requests with a body must be `application/json`, which a cross-site form
//! cannot send. Errors are [`ApiError`]s: a 4xx with a JSON body. The router parses the path once into
//! a [`ConsoleRoute`] (see [`ConsoleRoute::parse`]) and hands it to [`serve`]. A test event is checked
//! by `vestnik_protocol::api`, as the signed API's are. This module must never send a secret anywhere
//! or keep one past the sign-in request.

mod assets;
pub mod operator;
pub mod stream;
pub mod token;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use vestnik_broker::App;
use vestnik_protocol::api;
use vestnik_protocol::auth::parse_query;
use vestnik_protocol::message::{Recover, RecoveryFailure};
use vestnik_protocol::ChannelName;

use crate::reply::{ok, parse_json, read_body, ApiError, Body};
use crate::state::{trigger_limits, AppState};
use stream::EventStream;

/// What a console route answers with: a whole body, or the event stream.
pub type ConsoleBody = Either<Body, EventStream>;

/// Largest console request body: a sign-in or one test event. The event's data is limited by the app's
/// `max_event_bytes` again after parsing; this only bounds what is read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Events of a channel's history the console shows: the newest ones, a default channel's whole
/// history (`[apps.history] size` is 100 by default).
const HISTORY_ROWS: u64 = 100;

/// One console route, parsed once from the method and the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRoute {
    /// `GET /console`.
    Page,
    /// `GET /console/console.js`.
    Script,
    /// `GET /console/operator.js`.
    OperatorScript,
    /// `GET /console/console.css`.
    Style,
    /// `GET /console/api/apps`.
    Apps,
    /// `POST /console/api/session`.
    SignIn,
    /// `GET /console/api/session`.
    Session,
    /// `DELETE /console/api/session`.
    SignOut,
    /// `GET /console/api/stats`.
    Stats,
    /// `GET /console/api/stream`.
    Stream,
    /// `POST /console/api/events`.
    SendEvent,
    /// `GET /console/api/history`.
    History,
    /// `GET /console/api/operator/apps`.
    OperatorApps,
    /// `POST /console/api/operator/session`.
    OperatorSession,
    /// Anything else under `/console`: 404.
    Unknown,
}

impl ConsoleRoute {
    /// The console route of `method` and `path`, or `None` when the path is not the console's.
    pub fn parse(method: &Method, path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/console")?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let rest: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        Some(match (method, rest.as_slice()) {
            (&Method::GET | &Method::HEAD, []) => Self::Page,
            (&Method::GET | &Method::HEAD, ["console.js"]) => Self::Script,
            (&Method::GET | &Method::HEAD, ["operator.js"]) => Self::OperatorScript,
            (&Method::GET | &Method::HEAD, ["console.css"]) => Self::Style,
            (&Method::GET, ["api", "apps"]) => Self::Apps,
            (&Method::POST, ["api", "session"]) => Self::SignIn,
            (&Method::GET, ["api", "session"]) => Self::Session,
            (&Method::DELETE, ["api", "session"]) => Self::SignOut,
            (&Method::GET, ["api", "stats"]) => Self::Stats,
            (&Method::GET, ["api", "stream"]) => Self::Stream,
            (&Method::POST, ["api", "events"]) => Self::SendEvent,
            (&Method::GET, ["api", "history"]) => Self::History,
            (&Method::GET, ["api", "operator", "apps"]) => Self::OperatorApps,
            (&Method::POST, ["api", "operator", "session"]) => Self::OperatorSession,
            _ => Self::Unknown,
        })
    }

    /// The route's name, for logs and metrics: the path pattern.
    pub fn name(self) -> &'static str {
        match self {
            Self::Page => "console_page",
            Self::Script => "console_script",
            Self::OperatorScript => "console_operator_script",
            Self::Style => "console_style",
            Self::Apps => "console_apps",
            Self::SignIn => "console_sign_in",
            Self::Session => "console_session",
            Self::SignOut => "console_sign_out",
            Self::Stats => "console_stats",
            Self::Stream => "console_stream",
            Self::SendEvent => "console_send_event",
            Self::History => "console_history",
            Self::OperatorApps => "console_operator_apps",
            Self::OperatorSession => "console_operator_session",
            Self::Unknown => "console_unknown",
        }
    }
}

/// Serves one console request. Every route answers 404 while the console is disabled.
///
/// A disabled console answers 404 on every route, sign-in included, so no secret can be tried
/// against it. Every answer carries `Cache-Control: no-store`: they belong to one session and must
/// not sit in a shared cache.
pub async fn serve(
    route: ConsoleRoute,
    req: Request<Incoming>,
    state: &AppState,
    peer: std::net::SocketAddr,
) -> Response<ConsoleBody> {
    if !state.config.console.enabled {
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            "The console is disabled on this broker (console.enabled = false)",
        );
        return err.into_response().map(Either::Left);
    }
    let result = match route {
        ConsoleRoute::Page => Ok(assets::page()),
        ConsoleRoute::Script => Ok(assets::script()),
        ConsoleRoute::OperatorScript => Ok(assets::operator_script()),
        ConsoleRoute::Style => Ok(assets::style()),
        ConsoleRoute::Apps => Ok(apps(state)),
        ConsoleRoute::SignIn => sign_in(req, state, peer).await,
        // A question, not a gate: "not signed in" is a normal answer here, not an error.
        ConsoleRoute::Session => Ok(match session(&req, state) {
            Ok(app) => ok(&json!({"signed_in": true, "app_id": app.id})),
            Err(e) => ok(&json!({"signed_in": false, "reason": e.message})),
        }),
        ConsoleRoute::SignOut => Ok(sign_out()),
        ConsoleRoute::Stats => match session(&req, state) {
            Ok(app) => Ok(ok(&stream::stats(state, &app).await)),
            Err(e) => Err(e),
        },
        ConsoleRoute::Stream => {
            return match session(&req, state) {
                Ok(app) => stream::open(state, app).map(Either::Right),
                Err(e) => e.into_response().map(Either::Left),
            }
        }
        ConsoleRoute::SendEvent => match session(&req, state) {
            Ok(app) => send_event(req, state, &app).await,
            Err(e) => Err(e),
        },
        ConsoleRoute::History => match session(&req, state) {
            Ok(app) => history(&req, state, &app).await,
            Err(e) => Err(e),
        },
        ConsoleRoute::OperatorApps => operator::apps(&req, state, peer),
        ConsoleRoute::OperatorSession => operator::watch(req, state, peer).await,
        ConsoleRoute::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No console route for {} {}", req.method(), req.uri().path()),
        )),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    // Console answers are per session and must never sit in a shared cache.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.map(Either::Left)
}

/// Seconds since the Unix epoch, for token expiry.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /console/api/apps`: what the sign-in form picks from: the apps served now, by id, including
/// those created or changed while the node runs. Ids only: keys and secrets stay here.
fn apps(state: &AppState) -> Response<Body> {
    let mut apps = state.broker.apps().all();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let apps: Vec<Value> = apps
        .iter()
        .map(|a| json!({"id": a.id, "enabled": a.enabled}))
        .collect();
    ok(&json!({ "apps": apps }))
}

/// The app of the request's session cookie, or 401.
///
/// The token is checked against the app's current secret on every call, so a rotation ends the
/// session at the next request, on any node, without shared state.
fn session(req: &Request<Incoming>, state: &AppState) -> Result<Arc<App>, ApiError> {
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(token::from_cookie_header)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Not signed in to the console"))?;
    let apps = state.broker.apps();
    token::verify(token, |id| apps.by_id(id), now_secs())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
}

/// Reads a JSON request body of at most [`MAX_BODY_BYTES`] within the body timeout; 415 for
/// anything but JSON.
async fn json_body(req: Request<Incoming>, state: &AppState) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the request as Content-Type: application/json",
        ));
    }
    read_body(
        req.into_body(),
        MAX_BODY_BYTES,
        state.config.server.body_timeout(),
    )
    .await
}

#[derive(Deserialize)]
/// The sign-in form: the app, and its secret, which is compared and then dropped.
struct SignIn {
    /// The app to sign in to.
    app_id: String,
    /// Its secret; never logged, never stored.
    secret: String,
}

/// `POST /console/api/session`: checks the secret and sets the session cookie.
///
/// The per-IP limit runs before the body is read or the secret compared, so a guessing client pays
/// for its attempts before it costs the node anything. A wrong secret and an unknown app answer
/// differently (401, 404) because app ids are listed by `/console/api/apps` anyway; the secret is
/// what must not leak, and the comparison is constant-time.
async fn sign_in(
    req: Request<Incoming>,
    state: &AppState,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let server = &state.config.server;
    let ip = crate::peer::client_ip(peer, req.headers(), server.trust_proxy);
    if let Err(retry) = state.signin_limiter.check(ip, std::time::Instant::now()) {
        tracing::warn!(%ip, "console sign-in refused: too many attempts");
        metrics::counter!("vestnik_rate_limited_total", "limit" => "console_signin").increment(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many sign-in attempts from this address; try again in {} s",
                retry.0
            ),
        )
        .retry_after(retry.0));
    }
    let secure =
        crate::peer::is_https(req.headers(), server.tls_cert.is_some(), server.trust_proxy);
    let body = json_body(req, state).await?;
    let SignIn { app_id, secret } = parse_json(&body)?;
    let app =
        state.broker.apps().by_id(&app_id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app {app_id:?}"))
        })?;
    if !token::secret_matches(&app, &secret) {
        tracing::warn!(app_id = %app.id, "console sign-in refused: wrong secret");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("Wrong secret for app {:?}", app.id),
        ));
    }
    let ttl = state.config.console.session_ttl_secs;
    let token = token::issue(&app, now_secs() + ttl);
    tracing::info!(app_id = %app.id, "console signed in");
    let mut resp = ok(&json!({"signed_in": true, "app_id": app.id, "expires_in": ttl}));
    set_cookie(&mut resp, &token, ttl, secure);
    Ok(resp)
}

/// `DELETE /console/api/session`: clears the cookie. Tokens are not stored, so this ends the session
/// in this browser; a copied token stays valid until it expires (see docs/console.md).
fn sign_out() -> Response<Body> {
    let mut resp = ok(&json!({}));
    set_cookie(&mut resp, "", 0, false);
    resp
}

/// Sets the session cookie; `secure` (the client came over TLS) keeps browsers from ever sending it
/// in the clear.
fn set_cookie(resp: &mut Response<Body>, token: &str, max_age: u64, secure: bool) {
    let cookie = format!(
        "{}={token}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        token::COOKIE_NAME,
        if secure { "; Secure" } else { "" }
    );
    // A token is hex, digits and dots, so it is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// `POST /console/api/events`: publishes a test event to a channel of the session's app, with the
/// same checks as the signed API, and data that must be JSON.
async fn send_event(
    req: Request<Incoming>,
    state: &AppState,
    app: &Arc<App>,
) -> Result<Response<Body>, ApiError> {
    let body = json_body(req, state).await?;
    let ev = api::parse_single_channel_event(&body, &trigger_limits(app))?;
    if serde_json::from_str::<serde::de::IgnoredAny>(&ev.data).is_err() {
        return Err(ApiError::bad_request(
            "data must be JSON, for example {\"message\": \"hello\"}",
        ));
    }
    state.publish(app, &ev).await;
    let channels: Vec<&str> = ev.channels.iter().map(|c| c.as_str()).collect();
    Ok(ok(&json!({ "sent": channels })))
}

/// `GET /console/api/history?channel=…`: the newest [`HISTORY_ROWS`] kept events of a channel of
/// the session's app, oldest first, with its epoch and bounds. History off is 404 and a clustered
/// node 501, with the reason in the message.
async fn history(
    req: &Request<Incoming>,
    state: &AppState,
    app: &App,
) -> Result<Response<Body>, ApiError> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let name = query.get("channel").unwrap_or("");
    let channel = ChannelName::parse(name)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name {name:?}: {e}")))?;
    let rows = usize::try_from(HISTORY_ROWS).expect("a small constant");
    let head = state
        .broker
        .channel_history(app, &channel, None, rows)
        .await
        .map_err(|r| {
            let (status, why) = match r.reason {
                RecoveryFailure::HistoryOff => (StatusCode::NOT_FOUND, "history is off for it"),
                RecoveryFailure::ClusterHistoryUnavailable => (
                    StatusCode::NOT_IMPLEMENTED,
                    "this node is in a cluster whose backbone keeps no history",
                ),
                RecoveryFailure::BackboneUnavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the backbone that keeps the history cannot be reached now",
                ),
                RecoveryFailure::EpochChanged | RecoveryFailure::TooOld => {
                    (StatusCode::CONFLICT, "its history changed while reading")
                }
            };
            ApiError::new(status, format!("No history for {channel}: {why}"))
        })?;
    // The newest rows: from HISTORY_ROWS before the last offset. If the history moved on between the
    // two reads, the oldest rows already read do.
    let kept = (head.last_offset + 1).saturating_sub(head.first_offset);
    let page = match &head.epoch {
        Some(epoch) if kept > HISTORY_ROWS => {
            let from = Recover {
                epoch: epoch.clone(),
                offset: head.last_offset - HISTORY_ROWS,
            };
            state
                .broker
                .channel_history(app, &channel, Some(&from), rows)
                .await
                .unwrap_or(head)
        }
        _ => head,
    };
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            let f = e.fields().ok();
            json!({
                "offset": e.offset,
                "published_at_ms": e.published_at_ms,
                "event": f.as_ref().map(|f| f.event.as_str()),
                "data": f.as_ref().map(|f| f.data.as_str()),
                "user_id": f.as_ref().and_then(|f| f.user_id.as_deref()),
            })
        })
        .collect();
    Ok(ok(&json!({
        "channel": channel.as_str(),
        "epoch": page.epoch,
        "first_offset": page.first_offset,
        "last_offset": page.last_offset,
        "events": events,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator view's routes parse from their method and path (the script as a page asset, the
    /// two API routes with their methods only), and their metric names are the patterns.
    #[test]
    fn operator_routes_parse() {
        let p = |m: Method, path: &str| ConsoleRoute::parse(&m, path);
        assert_eq!(
            p(Method::GET, "/console/operator.js"),
            Some(ConsoleRoute::OperatorScript)
        );
        assert_eq!(
            p(Method::GET, "/console/api/operator/apps"),
            Some(ConsoleRoute::OperatorApps)
        );
        assert_eq!(
            p(Method::POST, "/console/api/operator/session"),
            Some(ConsoleRoute::OperatorSession)
        );
        assert_eq!(
            p(Method::POST, "/console/api/operator/apps"),
            Some(ConsoleRoute::Unknown)
        );
        assert_eq!(
            p(Method::GET, "/console/api/operator/session"),
            Some(ConsoleRoute::Unknown)
        );
        assert_eq!(ConsoleRoute::OperatorApps.name(), "console_operator_apps");
    }
}
