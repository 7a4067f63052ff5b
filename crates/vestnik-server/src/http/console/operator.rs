//! The console's operator view: what the page needs beyond `/admin/apps` to manage every app,
//! behind the same admin token (`Authorization: Bearer TOKEN`, checked by
//! [`crate::http::admin_auth`]: constant time, failures limited per IP, 404 without a token).
//!
//! - `GET /console/api/operator/apps`: every app this node serves now, with its key, whether it is
//!   enabled and its connections over the cluster, and whether the apps are managed here (an app
//!   database) or come from the config file. Never a secret.
//! - `POST /console/api/operator/session` `{"app_id"}`: opens the per-app view (events, stats,
//!   history) of any served app, as signing in with its secret would: the same session cookie, keyed
//!   by the app's secret, which this module never sends. Logged under `vestnik::admin` with who.
//!
//! The page manages apps (create, update, disable, enable, rotate, delete) through `/admin/apps`
//! itself; nothing here changes an app. This module must never answer without the token, nor put a
//! secret or the token in an answer or a log line.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::{json_body, now_secs, set_cookie, token};
use crate::http::admin_auth::authorise;
use crate::reply::{ok, parse_json, ApiError, Body};
use crate::state::AppState;

/// `GET /console/api/operator/apps`: the served apps and their live connection counts.
pub fn apps(
    req: &Request<Incoming>,
    state: &AppState,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    authorise(req.headers(), state, peer)?;
    let cluster = state.broker.cluster();
    let mut apps = state.broker.apps().all();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let apps: Vec<Value> = apps
        .iter()
        .map(|app| {
            let remote = cluster.map_or(0, |link| link.remote_connections(&app.id));
            json!({
                "id": app.id,
                "key": app.key,
                "enabled": app.enabled,
                "max_connections": app.max_connections,
                "connections": state.broker.runtime(app).connection_count() + remote,
            })
        })
        .collect();
    Ok(ok(&json!({
        "managed": state.apps_db.get().is_some(),
        "apps": apps,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The app whose per-app view the operator opens.
struct Watch {
    /// A served app's id.
    app_id: String,
}

/// `POST /console/api/operator/session`: the session cookie of any served app, for the operator.
pub async fn watch(
    req: Request<Incoming>,
    state: &AppState,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let who = authorise(req.headers(), state, peer)?;
    let server = &state.config.server;
    let secure =
        crate::peer::is_https(req.headers(), server.tls_cert.is_some(), server.trust_proxy);
    let body = json_body(req, state).await?;
    let Watch { app_id } = parse_json(&body)?;
    let app =
        state.broker.apps().by_id(&app_id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app {app_id:?}"))
        })?;
    let ttl = state.config.console.session_ttl_secs;
    let token = token::issue(&app, now_secs() + ttl);
    info!(target: "vestnik::admin", who = %who, action = "console-open", app_id = %app.id,
        "operator opened an app's console");
    let mut resp = ok(&json!({"signed_in": true, "app_id": app.id, "expires_in": ttl}));
    set_cookie(&mut resp, &token, ttl, secure);
    Ok(resp)
}
