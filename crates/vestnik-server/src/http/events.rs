//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`: validate every event first, then
//! publish, so a bad batch publishes nothing. Data is forwarded verbatim and encoded once per channel
//! by the broker.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use vestnik_broker::{App, PublishEvent};
use vestnik_protocol::limits::MAX_EVENT_NAME_LEN;
use vestnik_protocol::{ChannelKind, ChannelName, SocketId};

use super::signed::SignedCall;
use super::{ok, ApiError, Body};
use crate::server::AppState;

/// One event as the API (and the console) sends it, before validation.
#[derive(Deserialize)]
pub(crate) struct RawEvent<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    batch: Vec<RawEvent<'a>>,
}

/// Which channel attributes the caller asked for with `info`.
#[derive(Debug, Default, Clone, Copy)]
pub struct InfoRequest {
    /// `user_count` (presence channels).
    pub user_count: bool,
    /// `subscription_count`.
    pub subscription_count: bool,
}

impl InfoRequest {
    /// Parses a comma-separated `info` value; unknown attributes are ignored.
    pub fn parse(info: Option<&str>) -> Self {
        let mut r = Self::default();
        for attr in info.unwrap_or("").split(',').map(str::trim) {
            match attr {
                "user_count" => r.user_count = true,
                "subscription_count" => r.subscription_count = true,
                _ => {}
            }
        }
        r
    }

    fn any(self) -> bool {
        self.user_count || self.subscription_count
    }
}

/// An event that passed validation.
pub(crate) struct ValidEvent {
    name: String,
    pub(crate) data: String,
    pub(crate) channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: InfoRequest,
}

/// Checks one event against the app's limits; `batch` events take a single channel.
pub(crate) fn validate(app: &App, raw: RawEvent<'_>, batch: bool) -> Result<ValidEvent, ApiError> {
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Missing event name (name)"))?;
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "Event name is longer than {MAX_EVENT_NAME_LEN} characters"
        )));
    }
    let data = match raw.data {
        None => return Err(ApiError::bad_request("Missing event data (data)")),
        Some(d) if d.get().starts_with('"') => serde_json::from_str::<String>(d.get())
            .map_err(|e| ApiError::bad_request(format!("Invalid data: {e}")))?,
        // Pusher documents data as a string; an object is accepted as its JSON text, as soketi does.
        Some(d) => d.get().to_owned(),
    };
    if data.len() > app.max_event_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Event data is {} bytes, over the limit of {} bytes",
                data.len(),
                app.max_event_bytes
            ),
        ));
    }
    let names: Vec<String> = match (raw.channel, raw.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) if !batch => cs,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "Batch events take a single channel (channel), not channels",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Give either channel or channels, not both",
            ))
        }
        (None, None) => return Err(ApiError::bad_request("Missing channel or channels")),
    };
    if names.is_empty() {
        return Err(ApiError::bad_request("channels is empty"));
    }
    if names.len() > app.max_channels_per_trigger {
        return Err(ApiError::bad_request(format!(
            "Too many channels: {} (at most {})",
            names.len(),
            app.max_channels_per_trigger
        )));
    }
    let mut channels: Vec<ChannelName> = Vec::with_capacity(names.len());
    for n in &names {
        let c = ChannelName::parse(n)
            .map_err(|e| ApiError::bad_request(format!("Invalid channel name {n:?}: {e}")))?;
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    if channels.len() > 1 && channels.iter().any(|c| c.kind() == ChannelKind::Encrypted) {
        return Err(ApiError::bad_request(
            "Cannot trigger to several channels when one of them is encrypted",
        ));
    }
    let except = raw
        .socket_id
        .filter(|s| !s.is_empty())
        .map(|s| SocketId::parse(&s).map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?;
    Ok(ValidEvent {
        name,
        data,
        channels,
        except,
        info: InfoRequest::parse(raw.info.as_deref()),
    })
}

/// Parses a JSON request body, or answers 400 saying why not.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// Publishes a validated event through the broker.
pub(crate) fn publish(state: &AppState, app: &App, ev: &ValidEvent) {
    state.broker.publish(
        app,
        &PublishEvent {
            name: &ev.name,
            data: &ev.data,
            channels: &ev.channels,
            except: ev.except,
        },
    );
}

/// The `info` attributes of each channel of an event, over the whole cluster.
async fn channel_info(state: &AppState, app: &App, ev: &ValidEvent) -> Map<String, Value> {
    let mut out = Map::new();
    for c in &ev.channels {
        let stats = state.broker.channel_stats(app, c).await.unwrap_or_default();
        let (name, attrs) = {
            let mut attrs = Map::new();
            if ev.info.user_count && c.kind() == ChannelKind::Presence {
                attrs.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
            }
            if ev.info.subscription_count {
                attrs.insert("subscription_count".into(), json!(stats.subscription_count));
            }
            (c.to_string(), Value::Object(attrs))
        };
        out.insert(name, attrs);
    }
    out
}

/// `POST /apps/{id}/events`.
pub async fn trigger(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let raw: RawEvent<'_> = parse_json(&call.body)?;
    let ev = validate(&call.app, raw, false)?;
    publish(state, &call.app, &ev);
    if ev.info.any() {
        let channels = channel_info(state, &call.app, &ev).await;
        Ok(ok(&json!({ "channels": channels })))
    } else {
        Ok(ok(&json!({})))
    }
}

/// `POST /apps/{id}/batch_events`.
pub async fn batch(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let raw: RawBatch<'_> = parse_json(&call.body)?;
    let app = &call.app;
    if raw.batch.len() > app.max_batch_events {
        return Err(ApiError::bad_request(format!(
            "Batch of {} events; at most {} are allowed",
            raw.batch.len(),
            app.max_batch_events
        )));
    }
    let events = raw
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            validate(app, e, true)
                .map_err(|err| ApiError::new(err.status, format!("batch[{i}]: {}", err.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ev in &events {
        publish(state, app, ev);
    }
    if events.iter().any(|e| e.info.any()) {
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
    } else {
        Ok(ok(&json!({})))
    }
}
