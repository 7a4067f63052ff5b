//! `GET /apps/{id}/channels`, `GET /apps/{id}/channels/{name}` and `.../users`: read-only views of
//! the registry, shaped exactly as the Pusher REST API documents them.

use std::time::Instant;

use http::Response;
use serde_json::{json, Map, Value};
use vestnik_protocol::{ChannelKind, ChannelName};

use super::events::InfoRequest;
use super::signed::SignedCall;
use super::{ok, ApiError, Body};
use crate::server::AppState;

fn channel_name(name: &str) -> Result<ChannelName, ApiError> {
    let decoded = super::path_segment(name)?;
    ChannelName::parse(&decoded)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name {decoded:?}: {e}")))
}

/// `GET /apps/{id}/channels?filter_by_prefix=..&info=user_count`.
pub async fn list(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let prefix = call.param("filter_by_prefix").unwrap_or("");
    let info = InfoRequest::parse(call.param("info"));
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request(
            "info=user_count is only allowed with filter_by_prefix=presence-",
        ));
    }
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
pub async fn show(
    state: &AppState,
    call: &SignedCall,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let channel = channel_name(name)?;
    let attrs: Vec<&str> = call
        .param("info")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let rt = state.broker.runtime(&call.app);
    let stats = state.broker.channel_stats(&call.app, &channel).await;
    let mut body = Map::new();
    body.insert("occupied".into(), json!(stats.is_some()));
    let stats = stats.unwrap_or_default();
    for attr in attrs {
        match attr {
            "user_count" => {
                if channel.kind() != ChannelKind::Presence {
                    return Err(ApiError::bad_request(
                        "info=user_count is only available for presence channels",
                    ));
                }
                body.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
            }
            "subscription_count" => {
                body.insert("subscription_count".into(), json!(stats.subscription_count));
            }
            "cache" => {
                if !channel.is_cache() {
                    return Err(ApiError::bad_request(
                        "info=cache is only available for cache channels",
                    ));
                }
                let cache = rt
                    .registry
                    .cached(channel.as_str(), Instant::now())
                    .map_or(Value::Null, |(data, ttl)| json!({"data": data, "ttl": ttl}));
                body.insert("cache".into(), cache);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unknown info attribute {other:?}; use user_count, subscription_count or cache"
                )))
            }
        }
    }
    Ok(ok(&Value::Object(body)))
}

/// `GET /apps/{id}/channels/{name}/users`: presence channels only.
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
