//! The broker's webhooks to the shop (`POST /pusher/webhooks`): verified with `vestnik-sdk` (the
//! app key and the HMAC of the raw body), then `channel_occupied` / `channel_vacated` of
//! `private-user-{id}` mark that customer online or offline for the manager page, which hears of it
//! on the managers' channel.
//!
//! The set lives in memory: it describes open pages, which a restart closes anyway. This module
//! never trusts a body whose signature does not match, and ignores event kinds it does not use.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Customers with an open order page (their user channel is occupied).
#[derive(Debug, Default)]
pub struct Online {
    users: Mutex<HashSet<i64>>,
}

impl Online {
    /// Whether `user_id`'s channel is occupied.
    pub fn contains(&self, user_id: i64) -> bool {
        self.users
            .lock()
            .map(|u| u.contains(&user_id))
            .unwrap_or(false)
    }

    fn set(&self, user_id: i64, online: bool) {
        if let Ok(mut u) = self.users.lock() {
            if online {
                u.insert(user_id);
            } else {
                u.remove(&user_id);
            }
        }
    }
}

/// `POST /pusher/webhooks`: 401 unless the key and signature match; then `{"handled": n}`.
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let hook = state
        .sdk
        .verify_webhook(header("x-pusher-key"), header("x-pusher-signature"), &body)
        .map_err(|e| match e {
            vestnik_sdk::Error::WebhookBody(m) => ApiError::bad_request(m),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        })?;
    let mut handled = 0;
    for event in &hook.events {
        let user = event
            .channel
            .as_deref()
            .and_then(|c| c.strip_prefix("private-user-"))
            .and_then(|id| id.parse::<i64>().ok());
        let Some(user) = user else { continue };
        let online = match event.name.as_str() {
            "channel_occupied" => true,
            "channel_vacated" => false,
            _ => continue,
        };
        state.online.set(user, online);
        crate::live::notify_managers(&state, &json!({"user_id": user, "online": online})).await;
        handled += 1;
    }
    Ok(Json(json!({ "handled": handled })))
}
