//! The one router: decides once what a request is and parses its path once into a [`Route`], whose
//! [`Route::name`] is also the `route` label of the request metrics.
//!
//! The order is fixed: a WebSocket upgrade (at any path: the session refuses a wrong path with a
//! Pusher code the client understands) goes to [`crate::ws::upgrade`]; then the console, the probes,
//! the client script, the signed API under `/apps/{app}` (and the Python SDK's bare
//! `/users/{id}/terminate_connections`), and 404 for anything else. This module must never answer a
//! request itself beyond a 404 or a 426: every answer comes from the module the route names.

use std::net::SocketAddr;

use http::{header, Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::http::admin::{self, AdminRoute};
use crate::http::api::{self, Endpoint};
use crate::http::console::{self, ConsoleBody, ConsoleRoute};
use crate::http::{client_script, health, root};
use crate::reply::ApiError;
use crate::state::AppState;

/// What a request is, decided once from its method, headers and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket upgrade, at any path.
    Upgrade,
    /// Upgrade headers on anything but a `GET` over HTTP/1.1 or later (RFC 6455 section 4.1): 400
    /// before any upgrade.
    InvalidUpgrade,
    /// `GET|HEAD /`: the page naming the server.
    Root,
    /// `GET|HEAD /up`.
    Up,
    /// `GET|HEAD /ready`.
    Ready,
    /// `GET|HEAD /pushler.js`.
    ClientScript,
    /// `GET|HEAD /vestnik-recovery.js`: the recovery plugin for stock pusher-js.
    RecoveryScript,
    /// `GET /app/...` without an upgrade: 426.
    SocketWithoutUpgrade,
    /// Under `/console`.
    Console(ConsoleRoute),
    /// A signed API call: the app segment (`None` for the Python SDK's bare path, where `auth_key`
    /// names the app) and the endpoint.
    Api {
        /// The `{app}` of `/apps/{app}/...`: an app id, or a key (Pushler's PHP client).
        app: Option<String>,
        /// What is asked of it.
        endpoint: Endpoint,
    },
    /// Under `/admin`: the app admin API (issue 15).
    Admin(AdminRoute),
    /// Nothing here: 404.
    NotFound,
}

impl Route {
    /// The route of a request.
    pub fn of<B>(req: &Request<B>) -> Self {
        if is_websocket_upgrade(req) {
            if req.method() != Method::GET || req.version() < Version::HTTP_11 {
                return Self::InvalidUpgrade;
            }
            return Self::Upgrade;
        }
        Self::parse(req.method(), req.uri().path())
    }

    /// The route of a request that is not an upgrade, by `method` and `path`.
    pub fn parse(method: &Method, path: &str) -> Self {
        if let Some(console) = ConsoleRoute::parse(method, path) {
            return Self::Console(console);
        }
        // The app admin API (issue 15), in one block.
        if let Some(admin) = AdminRoute::parse(method, path) {
            return Self::Admin(admin);
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, [""]) => Self::Root,
            (&Method::GET | &Method::HEAD, ["up"]) => Self::Up,
            (&Method::GET | &Method::HEAD, ["ready"]) => Self::Ready,
            (&Method::GET | &Method::HEAD, ["pushler.js"]) => Self::ClientScript,
            (&Method::GET | &Method::HEAD, ["vestnik-recovery.js"]) => Self::RecoveryScript,
            (&Method::GET, ["app", ..]) => Self::SocketWithoutUpgrade,
            (_, ["apps", app, rest @ ..]) => Self::Api {
                app: Some((*app).to_owned()),
                endpoint: Endpoint::parse(method, rest),
            },
            // The Python SDK posts terminate_connections without the /apps/{id} prefix and signs
            // that path; the app is then found by auth_key.
            (&Method::POST, ["users", _, "terminate_connections"]) => Self::Api {
                app: None,
                endpoint: Endpoint::parse(method, &segments),
            },
            _ => Self::NotFound,
        }
    }

    /// The route's name: the path pattern, never the values in it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Upgrade => "upgrade",
            Self::InvalidUpgrade => "invalid_upgrade",
            Self::Root => "root",
            Self::Up => "up",
            Self::Ready => "ready",
            Self::ClientScript => "pushler_js",
            Self::RecoveryScript => "vestnik_recovery_js",
            Self::SocketWithoutUpgrade => "app_without_upgrade",
            Self::Console(c) => c.name(),
            Self::Api { endpoint, .. } => endpoint.name(),
            Self::Admin(admin) => admin.name(),
            Self::NotFound => "not_found",
        }
    }
}

/// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket` and `Connection: upgrade`,
/// each possibly among other tokens).
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

/// Routes one request on the main listener to the module its [`Route`] names.
pub async fn route(
    req: Request<Incoming>,
    state: &AppState,
    peer: SocketAddr,
) -> Response<ConsoleBody> {
    let route = Route::of(&req);
    let resp = match route {
        Route::Console(console) => return console::serve(console, req, state, peer).await,
        Route::Upgrade => crate::ws::upgrade::upgrade(req, state.clone(), peer),
        Route::InvalidUpgrade => ApiError::bad_request(format!(
            "A WebSocket upgrade must be a GET over HTTP/1.1 or later, not {} over {:?}",
            req.method(),
            req.version()
        ))
        .into_response(),
        Route::Root => root::page(state.config.console.enabled),
        Route::Up => health::up(),
        Route::Ready => health::ready(state),
        Route::ClientScript => client_script::serve(req.method(), req.headers()),
        Route::RecoveryScript => client_script::serve_recovery(req.method(), req.headers()),
        Route::SocketWithoutUpgrade => ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket endpoint: connect with a WebSocket client",
        )
        .into_response(),
        Route::Api { app, endpoint } => api::call(req, state, app.as_deref(), &endpoint).await,
        Route::Admin(route) => admin::serve(route, req, state, peer).await,
        Route::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No route for {} {}", req.method(), req.uri().path()),
        )
        .into_response(),
    };
    resp.map(Either::Left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request(path: &str) -> Request<()> {
        Request::get(path)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .body(())
            .unwrap()
    }

    /// An upgrade at `/console` is still an upgrade: the session then refuses the path with 4005,
    /// which a WebSocket client can read, where an HTTP 404 would be invisible to it.
    #[test]
    fn an_upgrade_is_decided_first_whatever_the_path() {
        assert_eq!(Route::of(&upgrade_request("/app/key")), Route::Upgrade);
        assert_eq!(Route::of(&upgrade_request("/console")), Route::Upgrade);
        let plain = Request::get("/console").body(()).unwrap();
        assert_eq!(Route::of(&plain), Route::Console(ConsoleRoute::Page));
    }

    /// RFC 6455 section 4.1: anything else with upgrade headers is a 400 before any upgrade.
    #[test]
    fn an_upgrade_must_be_a_get_over_http_1_1() {
        let mut post = upgrade_request("/app/key");
        *post.method_mut() = Method::POST;
        assert_eq!(Route::of(&post), Route::InvalidUpgrade);
        let mut old = upgrade_request("/app/key");
        *old.version_mut() = Version::HTTP_10;
        assert_eq!(Route::of(&old), Route::InvalidUpgrade);
    }

    /// Each path maps to one route and one metrics name, and values in the path never reach the
    /// name.
    #[test]
    fn paths_parse_once_into_routes_and_names() {
        let cases = [
            (Method::GET, "/up", "up"),
            (Method::HEAD, "/ready", "ready"),
            (Method::GET, "/usage", "not_found"),
            (Method::GET, "/pushler.js", "pushler_js"),
            (Method::GET, "/vestnik-recovery.js", "vestnik_recovery_js"),
            (Method::GET, "/app/key", "app_without_upgrade"),
            (Method::POST, "/apps/1/events", "events"),
            (Method::POST, "/apps/1/batch_events/", "batch_events"),
            (
                Method::GET,
                "/apps/1/channels/presence-x/users",
                "channel_users",
            ),
            (
                Method::POST,
                "/users/u1/terminate_connections",
                "terminate_connections",
            ),
            (Method::GET, "/console/api/apps", "console_apps"),
            (Method::GET, "/consoles", "not_found"),
            (Method::GET, "/", "root"),
            (Method::POST, "/", "not_found"),
        ];
        for (method, path, name) in cases {
            assert_eq!(Route::parse(&method, path).name(), name, "{method} {path}");
        }
        assert_eq!(
            Route::parse(&Method::POST, "/users/u1/terminate_connections"),
            Route::Api {
                app: None,
                endpoint: Endpoint::TerminateConnections("u1".into())
            }
        );
    }
}
