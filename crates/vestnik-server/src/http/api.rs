//! The signed API's calls, from the route the router parsed to the handler's answer.
//!
//! [`Endpoint`] is the API's route table, parsed once from the path segments after `/apps/{app}`;
//! its [`Endpoint::name`] is the `route` label of `vestnik_http_requests_total`, so the label and the
//! dispatch can never disagree. [`call`] then runs every call through the same steps: refuse while the
//! node is starting, find the app (once: its id labels the metric), verify the signature, apply the
//! app's rate limit, dispatch, count. This module must never parse a body itself (the handlers and
//! the protocol crate do) and never answer an unsigned request with anything but an error.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use vestnik_protocol::auth::parse_query;

use super::signed::{self, SignedCall};
use super::{channels, events, history, users, webhooks};
use crate::reply::{ApiError, Body, UNKNOWN_APP};
use crate::state::AppState;

/// Seconds a caller refused by a starting node is told to wait: a node joins its cluster within a
/// few hundred milliseconds once the backbone answers (`join_timeout_ms` bounds it, 5 s by default).
const STARTING_RETRY_AFTER_SECS: u64 = 1;

/// One endpoint of the signed API, with the path values it carries (still percent-encoded: the
/// handler decodes them, and answers 400 for one that is not UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST events`.
    Events,
    /// `POST batch_events`.
    BatchEvents,
    /// `GET channels`.
    Channels,
    /// `GET channels/{name}`.
    Channel(String),
    /// `GET channels/{name}/users`.
    ChannelUsers(String),
    /// `GET channels/{name}/history`.
    ChannelHistory(String),
    /// `POST users/{user_id}/terminate_connections`.
    TerminateConnections(String),
    /// `GET webhooks/stats`.
    WebhookStats,
    /// `GET webhooks/dead_letters`.
    DeadLetters,
    /// `POST webhooks/dead_letters/replay`.
    ReplayDeadLetters,
    /// `POST webhooks/dead_letters/purge`.
    PurgeDeadLetters,
    /// Any other method or path under `webhooks/`: verified, then 404.
    OtherWebhooks,
    /// Anything else: verified, then 404.
    Unknown,
}

impl Endpoint {
    /// The endpoint `method` and the path segments after the app name.
    pub fn parse(method: &Method, rest: &[&str]) -> Self {
        match (method, rest) {
            (&Method::POST, ["events"]) => Self::Events,
            (&Method::POST, ["batch_events"]) => Self::BatchEvents,
            (&Method::GET, ["channels"]) => Self::Channels,
            (&Method::GET, ["channels", name]) => Self::Channel((*name).to_owned()),
            (&Method::GET, ["channels", name, "users"]) => Self::ChannelUsers((*name).to_owned()),
            (&Method::GET, ["channels", name, "history"]) => {
                Self::ChannelHistory((*name).to_owned())
            }
            (&Method::POST, ["users", user_id, "terminate_connections"]) => {
                Self::TerminateConnections((*user_id).to_owned())
            }
            (&Method::GET, ["webhooks", "stats"]) => Self::WebhookStats,
            (&Method::GET, ["webhooks", "dead_letters"]) => Self::DeadLetters,
            (&Method::POST, ["webhooks", "dead_letters", "replay"]) => Self::ReplayDeadLetters,
            (&Method::POST, ["webhooks", "dead_letters", "purge"]) => Self::PurgeDeadLetters,
            (_, ["webhooks", ..]) => Self::OtherWebhooks,
            _ => Self::Unknown,
        }
    }

    /// The endpoint's name for metrics: the path pattern, never the values in it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::BatchEvents => "batch_events",
            Self::Channels => "channels",
            Self::Channel(_) => "channel",
            Self::ChannelUsers(_) => "channel_users",
            Self::ChannelHistory(_) => "channel_history",
            Self::TerminateConnections(_) => "terminate_connections",
            Self::WebhookStats
            | Self::DeadLetters
            | Self::ReplayDeadLetters
            | Self::PurgeDeadLetters
            | Self::OtherWebhooks => "webhooks_admin",
            Self::Unknown => "unknown",
        }
    }
}

/// Runs one signed API call under `/apps/{app}` (or the Python SDK's bare `/users/...`, where
/// `app_segment` is `None` and `auth_key` names the app), counted in `vestnik_http_requests_total`
/// whatever its outcome.
pub async fn call(
    req: Request<Incoming>,
    state: &AppState,
    app_segment: Option<&str>,
    endpoint: &Endpoint,
) -> Response<Body> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let app = signed::find_app(state.broker.apps().as_ref(), app_segment, &query);
    // The metric's label, without copying the id.
    let labelled = app.as_ref().ok().cloned();
    let result = if state.is_starting() {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is starting: it has not joined its cluster yet, so an event could not reach \
             the other nodes; retry shortly",
        )
        .retry_after(STARTING_RETRY_AFTER_SECS))
    } else {
        match app {
            Ok(app) => match signed::verify(req, state, app, query).await {
                Ok(call) => limited(state, &call, endpoint).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    crate::metrics::count_http_request(
        labelled.as_ref().map_or(UNKNOWN_APP, |a| a.id.as_str()),
        endpoint.name(),
        resp.status().as_u16(),
    );
    resp
}

/// Applies the app's API rate limit, then dispatches.
async fn limited(
    state: &AppState,
    call: &SignedCall,
    endpoint: &Endpoint,
) -> Result<Response<Body>, ApiError> {
    let limited = state.api_limiter.check(
        &call.app.id,
        call.app.api_rate_limit,
        std::time::Instant::now(),
    );
    match limited {
        Ok(()) => dispatch(state, call, endpoint).await,
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

/// Hands a verified call to its resource's handler.
async fn dispatch(
    state: &AppState,
    call: &SignedCall,
    endpoint: &Endpoint,
) -> Result<Response<Body>, ApiError> {
    match endpoint {
        Endpoint::Events => events::trigger(state, call).await,
        Endpoint::BatchEvents => events::batch(state, call).await,
        Endpoint::Channels => channels::list(state, call).await,
        Endpoint::Channel(name) => channels::show(state, call, name).await,
        Endpoint::ChannelUsers(name) => channels::users(state, call, name),
        Endpoint::ChannelHistory(name) => history::read(state, call, name).await,
        Endpoint::TerminateConnections(user_id) => users::terminate(state, call, user_id),
        Endpoint::WebhookStats => webhooks::stats(state, call),
        Endpoint::DeadLetters => webhooks::dead_letters(state, call).await,
        Endpoint::ReplayDeadLetters => webhooks::act(state, call, webhooks::Action::Replay).await,
        Endpoint::PurgeDeadLetters => webhooks::act(state, call, webhooks::Action::Purge).await,
        Endpoint::OtherWebhooks | Endpoint::Unknown => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No API endpoint {} {}", call.method, call.path),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics label comes from the same parse as the dispatch, and carries no path values (a
    /// channel name would make the series unbounded).
    #[test]
    fn the_label_follows_the_route_table() {
        let cases: [(Method, &[&str], &str); 8] = [
            (Method::POST, &["events"], "events"),
            (Method::GET, &["events"], "unknown"),
            (Method::GET, &["channels", "a%40b"], "channel"),
            (Method::GET, &["channels", "a", "users"], "channel_users"),
            (
                Method::GET,
                &["channels", "a", "history"],
                "channel_history",
            ),
            (
                Method::POST,
                &["users", "u", "terminate_connections"],
                "terminate_connections",
            ),
            (Method::DELETE, &["webhooks", "x"], "webhooks_admin"),
            (Method::GET, &[], "unknown"),
        ];
        for (method, rest, name) in cases {
            assert_eq!(
                Endpoint::parse(&method, rest).name(),
                name,
                "{method} {rest:?}"
            );
        }
        assert_eq!(
            Endpoint::parse(&Method::GET, &["channels", "a%40b"]),
            Endpoint::Channel("a%40b".into()),
            "values stay encoded until the handler decodes them"
        );
    }
}
