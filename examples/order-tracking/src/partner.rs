//! The demo partner receiver: what a UCP platform (Google's order-lifecycle endpoint) does with the
//! shop's webhooks, so the outbox can be shown and tested end to end.
//!
//! It checks the partner id and its own API key (`?key=`, `X-Goog-Api-Key` or `X-API-Key`; an
//! unknown partner id gets 404, another partner's key 401), the required fields,
//! deduplicates by `Webhook-Id` (or the body's `event_id`), refuses an update older than the last
//! one with 409 (Google's staleness rule), stores the body and answers `{"ucp": …}`. A switch makes
//! it answer 503 for the next N requests, to show retries. It never calls back into the shop.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::input::JsonBody;
use crate::ucp::{CAPABILITY, REQUIRED_FIELDS, V_2026_01_23};
use crate::AppState;

/// The receiver's keys and runtime switches.
#[derive(Debug, Default)]
pub struct Receiver {
    /// `(partner_id, api_key)`: the partners this receiver plays, each with its own key.
    pub keys: Vec<(String, String)>,
    /// Requests still to refuse with 503.
    pub fail_next: AtomicU32,
}

/// `?key=` on receiver calls.
#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    /// The API key, when sent in the query.
    #[serde(default)]
    pub key: Option<String>,
}

/// Checks the key against `partner_id`'s own key: 404 for a partner id the receiver does not
/// know, 401 for a missing key or another partner's.
fn check_key(
    state: &AppState,
    partner_id: &str,
    query: &KeyQuery,
    headers: &HeaderMap,
) -> ApiResult<()> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let expected = state
        .receiver
        .keys
        .iter()
        .find(|(id, _)| id == partner_id)
        .map(|(_, key)| key.as_str())
        .ok_or_else(|| ApiError::not_found("partner"))?;
    let given = query
        .key
        .clone()
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| header("x-api-key"));
    if given.as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key",
        ))
    }
}

/// `POST /webhooks/partners/{partner_id}/events/order`.
pub async fn receive(
    State(state): State<AppState>,
    Path(partner_id): Path<String>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    check_key(&state, &partner_id, &query, &headers)?;
    let failing = state
        .receiver
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "partner temporarily unavailable (test switch)",
        ));
    }
    let order: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    if let Some(missing) = REQUIRED_FIELDS.iter().find(|f| order.get(**f).is_none()) {
        return Err(ApiError::bad_request(format!(
            "missing required field {missing}"
        )));
    }
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let webhook_id = header("webhook-id")
        .or_else(|| order["event_id"].as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::bad_request("missing Webhook-Id header or event_id"))?;
    let timestamp: i64 = header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ApiError::bad_request("Webhook-Timestamp must be Unix seconds"))?;
    let order_id = order["id"].as_str().unwrap_or_default().to_owned();
    let version = order["ucp"]["version"]
        .as_str()
        .unwrap_or(V_2026_01_23)
        .to_owned();
    let text = String::from_utf8_lossy(&body).into_owned();
    state
        .db
        .run(move |c| {
            let seen: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM received_order_events WHERE partner_id = ?1 AND webhook_id = ?2)",
                params![partner_id, webhook_id],
                |r| r.get(0),
            )?;
            if seen {
                return Ok(());
            }
            let latest: Option<i64> = c
                .query_row(
                    "SELECT MAX(event_timestamp) FROM received_order_events WHERE partner_id = ?1 AND order_id = ?2",
                    params![partner_id, order_id],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            if latest.is_some_and(|l| l > timestamp) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "stale update: older than the last one received",
                ));
            }
            c.execute(
                "INSERT INTO received_order_events (webhook_id, partner_id, order_id, event_timestamp, body, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![webhook_id, partner_id, order_id, timestamp, text, now()],
            )?;
            Ok(())
        })
        .await?;
    Ok(Json(
        json!({"ucp": {"version": version, "capabilities": {CAPABILITY: [{"version": version}]}}}),
    ))
}

/// `GET /partner/{partner_id}/orders/{order_id}?key=`: what the receiver holds for an order
/// (`order_1001` or `1001`).
pub async fn last_snapshot(
    State(state): State<AppState>,
    Path((partner_id, order_id)): Path<(String, String)>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    check_key(&state, &partner_id, &query, &headers)?;
    let order_id = if order_id.starts_with("order_") {
        order_id
    } else {
        format!("order_{order_id}")
    };
    let v = state
        .db
        .run(move |c| {
            let mut st = c.prepare(
                "SELECT webhook_id, body FROM received_order_events WHERE partner_id = ?1 AND order_id = ?2
                 ORDER BY event_timestamp, rowid",
            )?;
            let rows: Vec<(String, String)> = st
                .query_map(params![partner_id, order_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let Some((_, last)) = rows.last() else {
                return Err(ApiError::not_found("order"));
            };
            let last: Value = serde_json::from_str(last).map_err(ApiError::internal)?;
            let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
            Ok(json!({"count": rows.len(), "webhook_ids": ids, "last": last}))
        })
        .await?;
    Ok(Json(v))
}

/// The receiver's switches.
#[derive(Debug, Deserialize)]
pub struct Mode {
    /// Answer 503 to this many coming requests.
    pub fail_next: u32,
}

/// `POST /partner/{partner_id}/mode?key=`: sets the failure switch.
pub async fn set_mode(
    State(state): State<AppState>,
    Path(partner_id): Path<String>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    JsonBody(mode): JsonBody<Mode>,
) -> ApiResult<Json<Value>> {
    check_key(&state, &partner_id, &query, &headers)?;
    state
        .receiver
        .fail_next
        .store(mode.fail_next, Ordering::SeqCst);
    Ok(Json(json!({"fail_next": mode.fail_next})))
}
