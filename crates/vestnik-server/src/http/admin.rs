//! `/admin/apps`: manage the apps of the app database over HTTP, on the broker's port.
//!
//! Authorised by `Authorization: Bearer <admin token>` (`--admin-token`), compared in constant time.
//! Failed attempts are counted per client IP; past `admin.failed_attempts` a minute the IP gets 429
//! until its window ends, before its token is even compared. Without a token configured every route
//! answers 404, as if there were none. With apps from the config file (no `apps_url`) the routes
//! answer 409: the file is changed by editing it and sending `SIGHUP`. Every change is logged with
//! who (the client IP and the token's fingerprint, never the token) and what. This module must never
//! log a secret or the token.
//!
//! | Method and path | Does |
//! | --- | --- |
//! | `GET /admin/apps` | list (no secrets) |
//! | `POST /admin/apps` | create |
//! | `GET /admin/apps/{id}` | show (with the secret) |
//! | `PATCH /admin/apps/{id}` | update limits, options, quotas, webhooks, enabled |
//! | `DELETE /admin/apps/{id}` | delete |
//! | `POST /admin/apps/{id}/disable`, `/enable` | switch |
//! | `POST /admin/apps/{id}/rotate-secret` | `{"grace_seconds": N}` |
//! | `GET /admin/apps/{id}/usage?from=&to=` | usage rows per hour (unix seconds) |

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::catalogue::ops::{self, CreateBody, OpError, PatchBody};
use crate::http::admin_auth::authorise;
use crate::reply::{json_response, parse_json, read_body, ApiError, Body};
use crate::state::AppState;

/// Largest admin request body: an app with many webhook targets fits well within it.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// What an admin request asks, parsed once from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    /// `GET /admin/apps`.
    List,
    /// `POST /admin/apps`.
    Create,
    /// `GET /admin/apps/{id}`.
    Show(String),
    /// `PATCH /admin/apps/{id}`.
    Update(String),
    /// `DELETE /admin/apps/{id}`.
    Delete(String),
    /// `POST /admin/apps/{id}/disable`.
    Disable(String),
    /// `POST /admin/apps/{id}/enable`.
    Enable(String),
    /// `POST /admin/apps/{id}/rotate-secret`.
    RotateSecret(String),
    /// `GET /admin/apps/{id}/usage`.
    Usage(String),
    /// Under `/admin` but no such route (or method).
    Unknown,
}

impl AdminRoute {
    /// The route of `method path`, if the path is under `/admin`.
    pub fn parse(method: &Method, path: &str) -> Option<Self> {
        // Every request passes here: the first segment is checked before anything is collected.
        if path.trim_matches('/').split('/').next() != Some("admin") {
            return None;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = |s: &str| s.to_owned();
        Some(match (method, &segments[1..]) {
            (&Method::GET, ["apps"]) => Self::List,
            (&Method::POST, ["apps"]) => Self::Create,
            (&Method::GET, ["apps", app]) => Self::Show(id(app)),
            (&Method::PATCH, ["apps", app]) => Self::Update(id(app)),
            (&Method::DELETE, ["apps", app]) => Self::Delete(id(app)),
            (&Method::POST, ["apps", app, "disable"]) => Self::Disable(id(app)),
            (&Method::POST, ["apps", app, "enable"]) => Self::Enable(id(app)),
            (&Method::POST, ["apps", app, "rotate-secret"]) => Self::RotateSecret(id(app)),
            (&Method::GET, ["apps", app, "usage"]) => Self::Usage(id(app)),
            _ => Self::Unknown,
        })
    }

    /// The metrics name of the route: the pattern, never the id.
    pub fn name(&self) -> &'static str {
        match self {
            Self::List => "admin_apps",
            Self::Create => "admin_create",
            Self::Show(_) => "admin_show",
            Self::Update(_) => "admin_update",
            Self::Delete(_) => "admin_delete",
            Self::Disable(_) => "admin_disable",
            Self::Enable(_) => "admin_enable",
            Self::RotateSecret(_) => "admin_rotate_secret",
            Self::Usage(_) => "admin_usage",
            Self::Unknown => "admin_unknown",
        }
    }
}

/// The body of `rotate-secret`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// Seconds the old secret stays valid.
    #[serde(default)]
    grace_seconds: u64,
}

/// Answers one admin request.
pub async fn serve(
    route: AdminRoute,
    req: Request<Incoming>,
    state: &AppState,
    peer: SocketAddr,
) -> Response<Body> {
    match handle(route, req, state, peer).await {
        Ok((status, body)) => json_response(status, &body),
        Err(e) => e.into_response(),
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.message)
    }
}

/// Reads a JSON body of type `T`; an empty body is `T::default()`.
async fn body<T: for<'a> Deserialize<'a> + Default>(
    req: Request<Incoming>,
    state: &AppState,
) -> Result<T, ApiError> {
    let bytes = read_body(
        req.into_body(),
        MAX_ADMIN_BODY,
        state.config.server.body_timeout(),
    )
    .await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

/// `from` and `to` of a usage query, in unix seconds.
fn usage_range(query: Option<&str>) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (mut from, mut to) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = || {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{k} must be unix seconds")))
        };
        match k {
            "from" => from = Some(n()?),
            "to" => to = Some(n()?),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}"
                )))
            }
        }
    }
    Ok((from, to))
}

/// `GET /admin/apps/{id}/usage`: the ledger's rows (the app database's, or this node's usage files
/// when apps come from the config file), and `today`: the app's messages of the UTC day across the
/// cluster as this node counts them, against its daily quota.
async fn usage(
    state: &AppState,
    id: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Value, ApiError> {
    let Some(ledger) = state.usage_ledger.get() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Usage is not recorded on this node (its usage files cannot be written; see the log)",
        ));
    };
    let app = vestnik_broker::AppStore::by_id(&*state.apps, id);
    match state.apps_db.get() {
        Some(db) => {
            db.show(id).await.map_err(OpError::from)?;
        }
        None if app.is_none() => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no app has the id {id:?}"),
            ))
        }
        None => {}
    }
    let mut out = ops::usage(ledger.store.as_ref(), id, from, to).await?;
    let rt = app.as_ref().map(|a| state.broker.runtime(a));
    out["today"] = json!({
        "day": vestnik_apps::Day::containing(std::time::SystemTime::now()).unix(),
        "messages": rt.map_or(0, |rt| rt.usage.messages_today()),
        "max_messages_per_day": app.map_or(0, |a| a.max_messages_per_day),
    });
    Ok(out)
}

/// The operation behind a route, once authorised.
async fn handle(
    route: AdminRoute,
    req: Request<Incoming>,
    state: &AppState,
    peer: SocketAddr,
) -> Result<(StatusCode, Value), ApiError> {
    let who = authorise(req.headers(), state, peer)?;
    if route == AdminRoute::Unknown {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No admin route for {} {}", req.method(), req.uri().path()),
        ));
    }
    if let AdminRoute::Usage(id) = &route {
        let (from, to) = usage_range(req.uri().query())?;
        return Ok((StatusCode::OK, usage(state, id, from, to).await?));
    }
    let Some(store) = state.apps_db.get().cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Apps come from the config file: edit it and send SIGHUP, or run with --apps-url \
             (postgres:// or mysql://) to manage apps here",
        ));
    };
    let store = store.as_ref();
    let audit = |action: &str, id: &str| {
        info!(target: "vestnik::admin", who = %who, action, app_id = id, "admin change");
    };
    let ok = |v: Value| Ok((StatusCode::OK, v));
    match route {
        AdminRoute::List => ok(ops::list(store).await?),
        AdminRoute::Show(id) => ok(ops::record_json(
            &store.show(&id).await.map_err(OpError::from)?,
            true,
        )),
        AdminRoute::Create => {
            let body: CreateBody = body(req, state).await?;
            let created = ops::create(store, body).await?;
            audit("create", &created.id);
            Ok((StatusCode::CREATED, ops::record_json(&created, true)))
        }
        AdminRoute::Update(id) => {
            let body: PatchBody = body(req, state).await?;
            let updated = ops::update(store, &id, body).await?;
            audit("update", &id);
            ok(ops::record_json(&updated, false))
        }
        AdminRoute::Delete(id) => {
            store.delete(&id).await.map_err(OpError::from)?;
            audit("delete", &id);
            ok(json!({ "deleted": id }))
        }
        AdminRoute::Disable(id) => {
            let r = store.disable(&id).await.map_err(OpError::from)?;
            audit("disable", &id);
            ok(ops::record_json(&r, false))
        }
        AdminRoute::Enable(id) => {
            let r = store.enable(&id).await.map_err(OpError::from)?;
            audit("enable", &id);
            ok(ops::record_json(&r, false))
        }
        AdminRoute::RotateSecret(id) => {
            let body: RotateBody = body(req, state).await?;
            let r = ops::rotate(store, &id, body.grace_seconds).await?;
            info!(target: "vestnik::admin", who = %who, action = "rotate-secret",
                app_id = %id, grace_seconds = body.grace_seconds, "admin change");
            ok(ops::record_json(&r, true))
        }
        AdminRoute::Usage(_) | AdminRoute::Unknown => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each route parses from its method and path; anything else under `/admin` is `Unknown`, and
    /// paths outside it are not admin routes.
    #[test]
    fn routes() {
        let p = |m: Method, path: &str| AdminRoute::parse(&m, path);
        assert_eq!(p(Method::GET, "/admin/apps"), Some(AdminRoute::List));
        assert_eq!(p(Method::POST, "/admin/apps/"), Some(AdminRoute::Create));
        assert_eq!(
            p(Method::POST, "/admin/apps/7/rotate-secret"),
            Some(AdminRoute::RotateSecret("7".into()))
        );
        assert_eq!(
            p(Method::PATCH, "/admin/apps/7"),
            Some(AdminRoute::Update("7".into()))
        );
        assert_eq!(p(Method::PUT, "/admin/apps/7"), Some(AdminRoute::Unknown));
        assert_eq!(p(Method::GET, "/apps/7"), None);
        assert_eq!(p(Method::GET, "/administrator"), None);
    }
}
