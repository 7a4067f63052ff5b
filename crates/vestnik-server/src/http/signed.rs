//! The signature gate of the HTTP API: finds the app, reads the body, and verifies the request exactly
//! as Pusher signs it (see `vestnik_protocol::auth::SignedRequest`). Nothing past this gate sees an
//! unsigned request.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use vestnik_broker::App;
use vestnik_protocol::auth::{parse_query, SignedRequest};

use super::ApiError;
use crate::server::AppState;

/// Largest API request body. Ten events of 10 KB each, JSON-escaped, fit with room to spare; a larger
/// per-app limit raises it.
const MIN_BODY_LIMIT: usize = 256 * 1024;

/// A request that passed the signature check.
#[derive(Debug)]
pub struct SignedCall {
    /// The app it is for.
    pub app: Arc<App>,
    /// The method.
    pub method: Method,
    /// The path as requested.
    pub path: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
}

impl SignedCall {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Finds the app (by the path's id or key, or by `auth_key` when the path has none), reads the body and
/// verifies the signature. 404 for an unknown app, 403 for a disabled one, 401 for a bad signature.
pub async fn verify(
    req: Request<Incoming>,
    state: &AppState,
    app_segment: Option<&str>,
) -> Result<SignedCall, ApiError> {
    let (parts, body) = req.into_parts();
    let query_str = parts.uri.query().unwrap_or("").to_owned();
    let query = parse_query(&query_str);
    let auth_key = query
        .iter()
        .find(|(k, _)| k == "auth_key")
        .map(|(_, v)| v.clone());
    let apps = state.broker.apps();
    let app = match app_segment {
        // Pushler's PHP constructor has no app id, so the key is accepted where the id goes.
        Some(seg) => apps
            .by_id(seg)
            .or_else(|| apps.by_key(seg))
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app {seg:?}")))?,
        None => {
            let key = auth_key
                .as_deref()
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing auth_key"))?;
            apps.by_key(key).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app key {key:?}"))
            })?
        }
    };
    match auth_key.as_deref() {
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
    let limit = MIN_BODY_LIMIT.max(app.max_event_bytes * app.max_batch_events * 2);
    let body = super::read_body(body, limit, state.config.server.body_timeout()).await?;
    let path = parts.uri.path().to_owned();
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: &path,
        query: &query_str,
        body: &body,
    };
    signed
        .verify(&app.secret, now_secs())
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
