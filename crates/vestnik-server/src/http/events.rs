//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`: the body is parsed and every event
//! checked by `vestnik_protocol::api` first, then published, so a bad batch publishes nothing. Data is
//! forwarded verbatim and encoded once per channel by the broker. With `info`, the answer carries the
//! channels' figures over the whole cluster.
//!
//! This module must never parse or validate a body itself (the protocol crate does, for the console
//! too) and never wait for a subscriber.

use http::Response;
use serde_json::{json, Map, Value};
use vestnik_broker::App;
use vestnik_protocol::api::{self, TriggerEvent};
use vestnik_protocol::ChannelKind;

use super::signed::SignedCall;
use crate::reply::{ok, ok_empty, ApiError, Body};
use crate::state::{trigger_limits, AppState};

/// The `info` attributes of each channel of an event, over the whole cluster.
///
/// Read after the publish, from the cluster as it is at answer time. A channel with no subscribers
/// reads as zeros rather than being left out, since the caller named it; `user_count` is given for
/// presence channels only, the only ones with users.
async fn channel_info(state: &AppState, app: &App, ev: &TriggerEvent) -> Map<String, Value> {
    let mut out = Map::new();
    for c in &ev.channels {
        let stats = state.broker.channel_stats(app, c).await.unwrap_or_default();
        let mut attrs = Map::new();
        if ev.info.user_count && c.kind() == ChannelKind::Presence {
            attrs.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
        }
        if ev.info.subscription_count {
            attrs.insert("subscription_count".into(), json!(stats.subscription_count));
        }
        out.insert(c.to_string(), Value::Object(attrs));
    }
    out
}

/// About what a relay of `ev` costs on the backbone: its data and names, and an envelope.
fn relay_bytes(ev: &TriggerEvent) -> usize {
    let channels: usize = ev.channels.iter().map(|c| c.as_str().len() + 3).sum();
    ev.data.len() + ev.name.len() + channels + 128
}

/// Refuses events the other nodes would miss: the backbone is down and the relay hold is full
/// (or disabled). Nothing is published then, not even here, so the client's retry is no repeat.
fn check_relay(state: &AppState, bytes: usize) -> Result<(), ApiError> {
    if state.can_relay(bytes) {
        return Ok(());
    }
    Err(ApiError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "the cluster backbone is unreachable and the relay hold is full; nothing was published",
    )
    .retry_after(1))
}

/// Refuses a trigger once the app's daily message quota is used up, across the cluster, with the
/// answer Pusher documents for it: 403, "You have exceeded your daily message quota". The count
/// resets at UTC midnight. The request that crosses the quota is served whole.
fn check_quota(state: &AppState, app: &App) -> Result<(), ApiError> {
    if !state.broker.over_message_quota(app) {
        return Ok(());
    }
    Err(ApiError::new(
        http::StatusCode::FORBIDDEN,
        "You have exceeded your daily message quota",
    ))
}

/// `POST /apps/{id}/events`.
///
/// The publish happens before any `info` is gathered and never waits for a subscriber: the answer's
/// latency is the parse plus, only when `info` is asked, one cluster query.
pub async fn trigger(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let ev = api::parse_trigger(&call.body, &trigger_limits(&call.app))?;
    check_quota(state, &call.app)?;
    check_relay(state, relay_bytes(&ev))?;
    state.publish(&call.app, &ev).await;
    if ev.info.any() {
        let channels = channel_info(state, &call.app, &ev).await;
        Ok(ok(&json!({ "channels": channels })))
    } else {
        Ok(ok_empty())
    }
}

/// `POST /apps/{id}/batch_events`.
///
/// Every event is parsed and checked before the first is published (`parse_batch`), so a bad item
/// publishes nothing. With `info`, each item gets the figures of its one channel, in item order, as
/// Pusher's `batch` answer lists them.
pub async fn batch(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let app = &call.app;
    let events = api::parse_batch(&call.body, &trigger_limits(app))?;
    check_quota(state, app)?;
    check_relay(state, events.iter().map(relay_bytes).sum())?;
    state.publish_all(app, &events).await;
    if !events.iter().any(|e| e.info.any()) {
        return Ok(ok_empty());
    }
    let mut infos: Vec<Value> = Vec::with_capacity(events.len());
    for e in &events {
        let info = match (e.info.any(), e.channels.first()) {
            (true, Some(c)) => channel_info(state, app, e)
                .await
                .remove(c.as_str())
                .unwrap_or_else(|| json!({})),
            _ => json!({}),
        };
        infos.push(info);
    }
    Ok(ok(&json!({"batch": infos})))
}
