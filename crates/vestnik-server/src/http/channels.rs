//! `GET /apps/{id}/channels`, `GET /apps/{id}/channels/{name}` and `.../users`: read-only views of
//! the registry, shaped exactly as the Pusher REST API documents them. The `info` and
//! `filter_by_prefix` queries are parsed by `vestnik_protocol::api`. This module must never change
//! broker state.

use std::time::Instant;

use http::Response;
use serde_json::{json, Map, Value};
use vestnik_protocol::api::{self, ChannelAttribute};
use vestnik_protocol::{ChannelKind, ChannelName};

use super::signed::SignedCall;
use crate::reply::{ok, path_segment, ApiError, Body};
use crate::state::AppState;

/// The channel named by a path segment, decoded and parsed: 400 when it is not a channel name.
///
/// Decoded first because SDKs percent-encode channel names in the path (`presence-a@b` arrives as
/// `presence-a%40b`), and the signature was checked over the encoded form.
fn channel_name(name: &str) -> Result<ChannelName, ApiError> {
    let decoded = path_segment(name)?;
    ChannelName::parse(&decoded)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name {decoded:?}: {e}")))
}

/// `GET /apps/{id}/channels?filter_by_prefix=..&info=user_count`.
///
/// The list spans the cluster (the broker asks the other nodes), so it can await; only occupied
/// channels are listed, as Pusher does. `user_count` is allowed only with a `presence-` prefix
/// filter (Pusher's rule), which `api::channel_list_info` enforces.
pub async fn list(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let prefix = call.param("filter_by_prefix").unwrap_or("");
    let info = api::channel_list_info(prefix, call.param("info"))?;
    let channels: Map<String, Value> = state
        .broker
        .channel_list(&call.app, prefix)
        .await
        .into_iter()
        .map(|(name, stats)| {
            let mut attrs = Map::new();
            if info.user_count {
                attrs.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
            }
            if info.subscription_count {
                attrs.insert("subscription_count".into(), json!(stats.subscription_count));
            }
            (name.to_string(), Value::Object(attrs))
        })
        .collect();
    Ok(ok(&json!({ "channels": channels })))
}

/// `GET /apps/{id}/channels/{name}?info=user_count,subscription_count,cache`.
///
/// `occupied` is always present; the other attributes only when asked for in `info`, in Pusher's
/// shape. `cache` is this node's cached event and its remaining TTL, `null` when nothing is cached.
pub async fn show(
    state: &AppState,
    call: &SignedCall,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let channel = channel_name(name)?;
    let attrs = api::channel_show_info(&channel, call.param("info"))?;
    let rt = state.broker.runtime(&call.app);
    let stats = state.broker.channel_stats(&call.app, &channel).await;
    let mut body = Map::new();
    body.insert("occupied".into(), json!(stats.is_some()));
    let stats = stats.unwrap_or_default();
    for attr in attrs {
        match attr {
            ChannelAttribute::UserCount => {
                body.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
            }
            ChannelAttribute::SubscriptionCount => {
                body.insert("subscription_count".into(), json!(stats.subscription_count));
            }
            ChannelAttribute::Cache => {
                let cache = rt
                    .registry
                    .cached(channel.as_str(), Instant::now())
                    .map_or(Value::Null, |(data, ttl)| json!({"data": data, "ttl": ttl}));
                body.insert("cache".into(), cache);
            }
        }
    }
    Ok(ok(&Value::Object(body)))
}

/// `GET /apps/{id}/channels/{name}/users`: presence channels only.
///
/// The ids are this node's roster merged with the members the cluster layer already knows on the
/// other nodes (replicated as they join), so the answer needs no round trip.
pub fn users(state: &AppState, call: &SignedCall, name: &str) -> Result<Response<Body>, ApiError> {
    let channel = channel_name(name)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request(format!(
            "{channel} is not a presence channel; users are only listed for presence channels"
        )));
    }
    let ids = state.broker.presence_user_ids(&call.app, channel.as_str());
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(ok(&json!({ "users": users })))
}
