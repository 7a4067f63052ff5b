//! The signature gate of the HTTP API: finds the app, reads the body, and verifies the request exactly
//! as Pusher signs it (see `vestnik_protocol::auth::SignedRequest`). Nothing past this gate sees an
//! unsigned request.
//!
//! The app is found once, by [`find_app`], before the call is counted (its id is the metric's label)
//! and then handed to [`verify`], so the path and query are read once. This module must never answer a
//! request itself past the gate, and a [`SignedCall`]'s `Debug` must never print the app's secret.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use vestnik_broker::app::AppStore;
use vestnik_broker::App;
use vestnik_protocol::auth::{Query, SignedRequest};

use crate::reply::{read_body, ApiError};
use crate::state::AppState;

/// Largest API request body. Ten events of 10 KB each, JSON-escaped, fit with room to spare; a larger
/// per-app limit raises it.
///
/// The body is read whole before the signature can be checked (the signature covers its MD5), so
/// this bound is what an unsigned client can make the node buffer.
const MIN_BODY_LIMIT: usize = 256 * 1024;

/// A request that passed the signature check.
pub struct SignedCall {
    /// The app it is for, as found before verification; its secret checked the signature.
    pub app: Arc<App>,
    /// The method, as signed.
    pub method: Method,
    /// The path exactly as requested and signed (still percent-encoded), for messages and 404s.
    pub path: String,
    /// Decoded query parameters, parsed once in [`crate::http::api::call`] and reused here.
    pub query: Query,
    /// The raw body, already checked against `body_md5`; the handlers parse it.
    pub body: Bytes,
}

impl SignedCall {
    /// A query parameter: the GET endpoints' `filter_by_prefix` and `info`. The first occurrence of
    /// a repeated name wins.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name)
    }
}

impl fmt::Debug for SignedCall {
    /// The app by its id only: the app holds its secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCall")
            .field("app_id", &self.app.id)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Seconds since the Unix epoch, for the signature's timestamp window.
///
/// A clock before 1970 reads as 0, which fails every signature's window check rather than
/// panicking.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of `auth_key` in a parsed query.
fn auth_key(query: &Query) -> Option<&str> {
    query.get("auth_key")
}

/// Finds the app a call is for: by the path's id or key, or by `auth_key` when the path has none (the
/// Python SDK's bare `/users/...`). 404 for an unknown app, 401 when neither names one.
pub fn find_app(
    apps: &dyn AppStore,
    app_segment: Option<&str>,
    query: &Query,
) -> Result<Arc<App>, ApiError> {
    match app_segment {
        // Pushler's PHP constructor has no app id, so the key is accepted where the id goes.
        Some(seg) => apps
            .by_id(seg)
            .or_else(|| apps.by_key(seg))
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app {seg:?}"))),
        None => {
            let key = auth_key(query)
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing auth_key"))?;
            apps.by_key(key).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app key {key:?}"))
            })
        }
    }
}

/// Checks that `auth_key` names `app`, reads the body and verifies the signature. 401 for a missing
/// or foreign key or a bad signature, 403 for a disabled app.
///
/// The order is deliberate: the cheap key check first (no body read for a foreign key), then the
/// body (bounded by size and by `body_timeout`, so a slow upload cannot hold a task), then the
/// constant-time signature check. The disabled check comes after the signature, so an unsigned
/// caller cannot learn whether an app is disabled.
pub async fn verify(
    req: Request<Incoming>,
    state: &AppState,
    app: Arc<App>,
    query: Query,
) -> Result<SignedCall, ApiError> {
    match auth_key(&query) {
        None => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing query parameter auth_key",
            ))
        }
        Some(k) if k != app.key => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "auth_key does not belong to this app",
            ))
        }
        Some(_) => {}
    }
    let (parts, body) = req.into_parts();
    let limit = body_limit(&app);
    let body = read_body(body, limit, state.config.server.body_timeout()).await?;
    let path = parts.uri.path().to_owned();
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query().unwrap_or(""),
        body: &body,
    };
    // Every secret valid now: the previous one too during a rotation's grace.
    let now = now_secs();
    app.verify_with_secret(|secret| signed.verify_parsed(&query, secret, now))
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if !app.enabled {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Application disabled"));
    }
    Ok(SignedCall {
        app,
        method: parts.method,
        path,
        query,
        body,
    })
}

/// The largest body a call for `app` may send: a full batch of its largest events, JSON-escaped.
///
/// Doubled because JSON escaping of event data (quotes, backslashes, control characters) can grow
/// it, and Pusher's limit applies to the data, not to its escaped form.
pub fn body_limit(app: &App) -> usize {
    MIN_BODY_LIMIT.max(app.max_event_bytes * app.max_batch_events * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12's secret rule for the signed call: `{:?}` and `{:#?}` name the app, never its
    /// secret.
    #[test]
    fn debug_never_prints_the_secret() {
        let app = App {
            id: "shop".into(),
            key: "shop-key".into(),
            secret: "never-print-this-secret".into(),
            ..App::default()
        };
        let call = SignedCall {
            app: Arc::new(app),
            method: Method::POST,
            path: "/apps/shop/events".into(),
            query: Query::parse("auth_key=shop-key"),
            body: Bytes::from_static(b"{}"),
        };
        let shown = format!("{call:?} {call:#?}");
        assert!(shown.contains("shop"), "{shown}");
        assert!(!shown.contains("never-print-this-secret"), "{shown}");
    }
}
