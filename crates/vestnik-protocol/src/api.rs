//! The bodies and queries of the Pusher HTTP API, parsed and validated: a trigger
//! (`POST /apps/{id}/events`), a batch (`POST /apps/{id}/batch_events`), one single-channel event (a
//! batch item, and what the debug console sends), and the `info` attributes a caller asks about a
//! channel.
//!
//! Everything here is a pure function from bytes or strings to a typed value or an [`ApiBodyError`]
//! that says what is wrong in the words the caller sees. The limits come from the caller as
//! [`TriggerLimits`] (the app's configuration), so this module knows no app and no HTTP status; the
//! server maps [`ApiBodyError::is_too_large`] to 413 and everything else to 400. This module must
//! never do IO or decide whom to deliver to: a [`TriggerEvent`] is only what was asked, checked.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::{from_object_slice, Object};
use crate::limits::{
    MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER, MAX_EVENT_BYTES, MAX_EVENT_NAME_LEN,
};
use crate::socket::SocketIdError;
use crate::{ChannelKind, ChannelName, ChannelNameError, SocketId};

/// The app's limits a trigger is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerLimits {
    /// Largest event data, in bytes once decoded from its JSON string.
    pub max_event_bytes: usize,
    /// Most channels one trigger may name.
    pub max_channels_per_trigger: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
}

impl Default for TriggerLimits {
    /// Pusher's documented limits (see [`crate::limits`]).
    fn default() -> Self {
        Self {
            max_event_bytes: MAX_EVENT_BYTES,
            max_channels_per_trigger: MAX_CHANNELS_PER_TRIGGER,
            max_batch_events: MAX_BATCH_EVENTS,
        }
    }
}

/// Why an API body was refused. The text is the error the caller gets back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiBodyError {
    /// The body is not JSON of the expected shape.
    #[error("Invalid JSON body: {0}")]
    Json(String),
    /// No `name`, or an empty one.
    #[error("Missing event name (name)")]
    MissingName,
    /// The event name is over [`MAX_EVENT_NAME_LEN`].
    #[error("Event name is longer than {MAX_EVENT_NAME_LEN} characters")]
    NameTooLong,
    /// No `data`.
    #[error("Missing event data (data)")]
    MissingData,
    /// `data` starts as a JSON string but is not one.
    #[error("Invalid data: {0}")]
    InvalidData(String),
    /// The data is over the app's `max_event_bytes`.
    #[error("Event data is {size} bytes, over the limit of {limit} bytes")]
    DataTooLarge {
        /// Bytes of data.
        size: usize,
        /// The app's limit.
        limit: usize,
    },
    /// A single-channel event (a batch item) named `channels`.
    #[error("Batch events take a single channel (channel), not channels")]
    ChannelsInBatch,
    /// Both `channel` and `channels`.
    #[error("Give either channel or channels, not both")]
    ChannelAndChannels,
    /// Neither `channel` nor `channels`.
    #[error("Missing channel or channels")]
    MissingChannel,
    /// `channels` is an empty list.
    #[error("channels is empty")]
    NoChannels,
    /// More channels than the app's `max_channels_per_trigger`.
    #[error("Too many channels: {count} (at most {max})")]
    TooManyChannels {
        /// Channels named.
        count: usize,
        /// The app's limit.
        max: usize,
    },
    /// A channel name is invalid.
    #[error("Invalid channel name {name:?}: {error}")]
    InvalidChannel {
        /// The name as sent.
        name: String,
        /// Why it is invalid.
        error: ChannelNameError,
    },
    /// An encrypted channel among several: each needs its own ciphertext.
    #[error("Cannot trigger to several channels when one of them is encrypted")]
    EncryptedMulticast,
    /// `socket_id` is not a socket id.
    #[error("{0}")]
    InvalidSocketId(SocketIdError),
    /// More events in a batch than the app's `max_batch_events`.
    #[error("Batch of {count} events; at most {max} are allowed")]
    BatchTooLarge {
        /// Events in the batch.
        count: usize,
        /// The app's limit.
        max: usize,
    },
    /// One event of a batch is invalid.
    #[error("batch[{index}]: {error}")]
    InBatch {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        error: Box<ApiBodyError>,
    },
}

impl ApiBodyError {
    /// Whether the body was refused for its size (HTTP 413) rather than its content (400).
    pub fn is_too_large(&self) -> bool {
        match self {
            Self::DataTooLarge { .. } => true,
            Self::InBatch { error, .. } => error.is_too_large(),
            Self::Json(_)
            | Self::MissingName
            | Self::NameTooLong
            | Self::MissingData
            | Self::InvalidData(_)
            | Self::ChannelsInBatch
            | Self::ChannelAndChannels
            | Self::MissingChannel
            | Self::NoChannels
            | Self::TooManyChannels { .. }
            | Self::InvalidChannel { .. }
            | Self::EncryptedMulticast
            | Self::InvalidSocketId(_)
            | Self::BatchTooLarge { .. } => false,
        }
    }
}

/// Which channel attributes a caller asked for with `info` (a trigger, or a channel list).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InfoRequest {
    /// `user_count` (presence channels).
    pub user_count: bool,
    /// `subscription_count`.
    pub subscription_count: bool,
}

impl InfoRequest {
    /// Parses a comma-separated `info` value; unknown attributes are ignored, as Pusher does on a
    /// trigger.
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

    /// Whether any attribute was asked for (a trigger then answers with the channels' figures).
    pub fn any(self) -> bool {
        self.user_count || self.subscription_count
    }
}

/// One attribute of `GET /apps/{id}/channels/{name}?info=...`, in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAttribute {
    /// `user_count`: presence channels only.
    UserCount,
    /// `subscription_count`.
    SubscriptionCount,
    /// `cache`: cache channels only.
    Cache,
}

/// Why a channel query's `info` or `filter_by_prefix` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// `user_count` on a channel list not limited to presence channels.
    #[error("info=user_count is only allowed with filter_by_prefix=presence-")]
    UserCountNeedsPresencePrefix,
    /// `user_count` about a channel that is not a presence channel.
    #[error("info=user_count is only available for presence channels")]
    UserCountNotPresence,
    /// `cache` about a channel that is not a cache channel.
    #[error("info=cache is only available for cache channels")]
    CacheNotCacheChannel,
    /// An attribute Pusher does not define.
    #[error("Unknown info attribute {0:?}; use user_count, subscription_count or cache")]
    Unknown(String),
}

/// Parses `GET /apps/{id}/channels?filter_by_prefix=..&info=..`: what to report for each channel.
/// `user_count` needs the `presence-` prefix, since only presence channels have users.
pub fn channel_list_info(prefix: &str, info: Option<&str>) -> Result<InfoRequest, InfoError> {
    let info = InfoRequest::parse(info);
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(InfoError::UserCountNeedsPresencePrefix);
    }
    Ok(info)
}

/// Parses the `info` of `GET /apps/{id}/channels/{name}` for `channel`: the attributes in the order
/// asked, or the first one that does not apply to this channel.
pub fn channel_show_info(
    channel: &ChannelName,
    info: Option<&str>,
) -> Result<Vec<ChannelAttribute>, InfoError> {
    info.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|attr| match attr {
            "user_count" if channel.kind() == ChannelKind::Presence => {
                Ok(ChannelAttribute::UserCount)
            }
            "user_count" => Err(InfoError::UserCountNotPresence),
            "subscription_count" => Ok(ChannelAttribute::SubscriptionCount),
            "cache" if channel.is_cache() => Ok(ChannelAttribute::Cache),
            "cache" => Err(InfoError::CacheNotCacheChannel),
            other => Err(InfoError::Unknown(other.to_owned())),
        })
        .collect()
}

/// An event to publish, as asked and checked: a name, data forwarded verbatim, one or more distinct
/// valid channels, and the socket to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerEvent {
    /// The event name (not empty, at most [`MAX_EVENT_NAME_LEN`] bytes).
    pub name: String,
    /// The data: the JSON string's contents, or the JSON text of any other value.
    pub data: String,
    /// The channels, without repeats, in the order first named.
    pub channels: Vec<ChannelName>,
    /// The socket that triggered it, which does not get it back.
    pub socket_id: Option<SocketId>,
    /// The channel attributes to answer with.
    pub info: InfoRequest,
}

/// One event as the API (and the console) sends it, before validation.
#[derive(Deserialize)]
struct RawEvent<'a> {
    /// Every field is optional here so that a missing one gets its own error (`MissingName`, …)
    /// from `validate` instead of serde's generic message.
    #[serde(default)]
    name: Option<String>,
    /// Raw, because Pusher documents `data` as a string but clients (and soketi) also send an
    /// object.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    /// Comma-separated attributes to return (`user_count`, `subscription_count`).
    #[serde(default)]
    info: Option<String>,
}

/// The body of `batch_events`. Each item is an [`Object`], so an array item is refused rather than
/// read into a struct by position.
#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    batch: Vec<Object<RawEvent<'a>>>,
}

/// How many channels an event may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channels {
    /// `channel` or `channels` (a trigger).
    Many,
    /// `channel` only (a batch item, a console event).
    One,
}

/// Parses a JSON body, which must be an object: serde would otherwise read `["name", …]` into a
/// struct by position.
fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiBodyError> {
    from_object_slice(body).map_err(|e| ApiBodyError::Json(e.to_string()))
}

/// Parses and checks the body of `POST /apps/{id}/events`: one event to one or more channels.
pub fn parse_trigger(body: &[u8], limits: &TriggerLimits) -> Result<TriggerEvent, ApiBodyError> {
    validate(json(body)?, limits, Channels::Many)
}

/// Parses and checks one event that takes a single `channel` (the shape of a batch item): what the
/// debug console sends.
pub fn parse_single_channel_event(
    body: &[u8],
    limits: &TriggerLimits,
) -> Result<TriggerEvent, ApiBodyError> {
    validate(json(body)?, limits, Channels::One)
}

/// Parses and checks the body of `POST /apps/{id}/batch_events`. Every event is checked before any
/// is returned, so that a bad batch publishes nothing; an error names the first bad event's index.
pub fn parse_batch(body: &[u8], limits: &TriggerLimits) -> Result<Vec<TriggerEvent>, ApiBodyError> {
    let raw: RawBatch<'_> = json(body)?;
    if raw.batch.len() > limits.max_batch_events {
        return Err(ApiBodyError::BatchTooLarge {
            count: raw.batch.len(),
            max: limits.max_batch_events,
        });
    }
    raw.batch
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            validate(e.into_inner(), limits, Channels::One).map_err(|error| ApiBodyError::InBatch {
                index,
                error: Box::new(error),
            })
        })
        .collect()
}

/// Checks one event against the limits.
///
/// The order of the checks is the order of the error messages a user fixes them in: name, data,
/// channels, socket id. `data` is measured after decoding, as Pusher's 10 KB limit counts the data,
/// not its JSON escaping. An empty `socket_id` counts as none.
fn validate(
    raw: RawEvent<'_>,
    limits: &TriggerLimits,
    arity: Channels,
) -> Result<TriggerEvent, ApiBodyError> {
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or(ApiBodyError::MissingName)?;
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(ApiBodyError::NameTooLong);
    }
    let data = match raw.data {
        None => return Err(ApiBodyError::MissingData),
        // Decoded in one pass; serde_json only for what that declines, for its error message.
        Some(d) if d.get().starts_with('"') => match crate::json::unescape_str(d.get()) {
            Some(data) => data,
            None => serde_json::from_str::<String>(d.get())
                .map_err(|e| ApiBodyError::InvalidData(e.to_string()))?,
        },
        // Pusher documents data as a string; an object is accepted as its JSON text, as soketi does.
        Some(d) => d.get().to_owned(),
    };
    if data.len() > limits.max_event_bytes {
        return Err(ApiBodyError::DataTooLarge {
            size: data.len(),
            limit: limits.max_event_bytes,
        });
    }
    let channels = channels(raw.channel, raw.channels, limits, arity)?;
    let socket_id = raw
        .socket_id
        .filter(|s| !s.is_empty())
        .map(|s| SocketId::parse(&s).map_err(ApiBodyError::InvalidSocketId))
        .transpose()?;
    Ok(TriggerEvent {
        name,
        data,
        channels,
        socket_id,
        info: InfoRequest::parse(raw.info.as_deref()),
    })
}

/// The event's channels: parsed, without repeats, within the limit, and no encrypted one among
/// several.
///
/// Repeats are dropped (an event goes once to a channel however often it is named). An encrypted
/// channel must be triggered alone: its payload is encrypted per channel by the caller, so one body
/// cannot be valid for two of them.
fn channels(
    channel: Option<String>,
    channels: Option<Vec<String>>,
    limits: &TriggerLimits,
    arity: Channels,
) -> Result<Vec<ChannelName>, ApiBodyError> {
    let names: Vec<String> = match (channel, channels, arity) {
        (Some(c), None, _) => vec![c],
        (None, Some(cs), Channels::Many) => cs,
        (None, Some(_), Channels::One) => return Err(ApiBodyError::ChannelsInBatch),
        (Some(_), Some(_), _) => return Err(ApiBodyError::ChannelAndChannels),
        (None, None, _) => return Err(ApiBodyError::MissingChannel),
    };
    if names.is_empty() {
        return Err(ApiBodyError::NoChannels);
    }
    if names.len() > limits.max_channels_per_trigger {
        return Err(ApiBodyError::TooManyChannels {
            count: names.len(),
            max: limits.max_channels_per_trigger,
        });
    }
    let mut parsed: Vec<ChannelName> = Vec::with_capacity(names.len());
    for name in names {
        let c = ChannelName::parse(&name)
            .map_err(|error| ApiBodyError::InvalidChannel { name, error })?;
        if !parsed.contains(&c) {
            parsed.push(c);
        }
    }
    if parsed.len() > 1 && parsed.iter().any(|c| c.kind() == ChannelKind::Encrypted) {
        return Err(ApiBodyError::EncryptedMulticast);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TriggerLimits {
        TriggerLimits {
            max_event_bytes: 16,
            max_channels_per_trigger: 3,
            max_batch_events: 2,
        }
    }

    fn trigger(body: &str) -> Result<TriggerEvent, ApiBodyError> {
        parse_trigger(body.as_bytes(), &limits())
    }

    /// The reason for [`Object`]: serde would read `["name", "data", …]` into `RawEvent` by
    /// position.
    #[test]
    fn arrays_are_never_read_as_events() {
        // Serde maps a JSON array onto a struct by position: without the object rule this body
        // would be the event `e` on channel `c`.
        let positional = r#"["e","\"d\"","c"]"#;
        assert!(matches!(trigger(positional), Err(ApiBodyError::Json(_))));
        assert!(matches!(
            parse_single_channel_event(positional.as_bytes(), &limits()),
            Err(ApiBodyError::Json(_))
        ));
        let batch = r#"{"batch":[["e","\"d\"","c"]]}"#;
        assert!(matches!(
            parse_batch(batch.as_bytes(), &limits()),
            Err(ApiBodyError::Json(_))
        ));
        assert!(matches!(
            parse_batch(br#"[[{"name":"e","data":"d","channel":"c"}]]"#, &limits()),
            Err(ApiBodyError::Json(_))
        ));
        // The same events as objects parse.
        assert!(parse_batch(
            br#"{"batch":[{"name":"e","data":"d","channel":"c"}]}"#,
            &limits()
        )
        .is_ok());
    }

    /// The example body from Pusher's HTTP API reference.
    #[test]
    fn a_trigger_from_the_pusher_docs_parses() {
        let ev = trigger(
            r#"{"name":"my-event","data":"{\"message\":\"hello\"}","channels":["a","b","a"],"socket_id":"123.456","info":"subscription_count"}"#,
        );
        // Data over 16 bytes: the limit is checked on the decoded string.
        assert!(matches!(
            ev,
            Err(ApiBodyError::DataTooLarge {
                size: 19,
                limit: 16
            })
        ));
        let ev = trigger(
            r#"{"name":"my-event","data":"{\"m\":1}","channels":["a","b","a"],"socket_id":"123.456","info":"subscription_count,bogus"}"#,
        )
        .unwrap();
        assert_eq!(ev.name, "my-event");
        assert_eq!(ev.data, r#"{"m":1}"#);
        let names: Vec<&str> = ev.channels.iter().map(ChannelName::as_str).collect();
        assert_eq!(names, ["a", "b"], "repeats are dropped, order kept");
        assert_eq!(ev.socket_id, Some(SocketId::new(123, 456)));
        assert_eq!(
            ev.info,
            InfoRequest {
                user_count: false,
                subscription_count: true
            }
        );
    }

    #[test]
    fn object_data_is_forwarded_as_its_json_text() {
        let ev = trigger(r#"{"name":"e","data":{"a": 1},"channel":"c","socket_id":""}"#).unwrap();
        assert_eq!(ev.data, r#"{"a": 1}"#);
        assert_eq!(ev.socket_id, None, "an empty socket_id leaves nobody out");
    }

    #[test]
    fn each_mistake_has_its_own_error() {
        let cases = [
            ("{", "Invalid JSON body"),
            (r#"{"data":"x","channel":"c"}"#, "Missing event name"),
            (
                r#"{"name":"","data":"x","channel":"c"}"#,
                "Missing event name",
            ),
            (r#"{"name":"e","channel":"c"}"#, "Missing event data"),
            (r#"{"name":"e","data":"x"}"#, "Missing channel or channels"),
            (
                r#"{"name":"e","data":"x","channel":"c","channels":["d"]}"#,
                "Give either channel or channels, not both",
            ),
            (
                r#"{"name":"e","data":"x","channels":[]}"#,
                "channels is empty",
            ),
            (
                r#"{"name":"e","data":"x","channels":["a","b","c","d"]}"#,
                "Too many channels: 4 (at most 3)",
            ),
            (
                r#"{"name":"e","data":"x","channel":"bad name"}"#,
                "Invalid channel name \"bad name\"",
            ),
            (
                r#"{"name":"e","data":"x","channels":["a","private-encrypted-b"]}"#,
                "Cannot trigger to several channels",
            ),
            (
                r#"{"name":"e","data":"x","channel":"c","socket_id":"nope"}"#,
                "invalid socket_id",
            ),
        ];
        for (body, expected) in cases {
            let err = trigger(body).expect_err(body);
            assert!(
                err.to_string().starts_with(expected),
                "{body}: {err} does not start with {expected}"
            );
            assert!(!err.is_too_large(), "{body}");
        }
        let long = format!(
            r#"{{"name":"{}","data":"x","channel":"c"}}"#,
            "n".repeat(MAX_EVENT_NAME_LEN + 1)
        );
        assert_eq!(trigger(&long), Err(ApiBodyError::NameTooLong));
    }

    /// A batch with one bad item publishes nothing, and the error says which item.
    #[test]
    fn a_batch_is_checked_whole_and_names_the_bad_event() {
        let ok = parse_batch(
            br#"{"batch":[{"name":"a","data":"1","channel":"x"},{"name":"b","data":"2","channel":"y"}]}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let err = parse_batch(
            br#"{"batch":[{"name":"a","data":"1","channel":"x"},{"name":"b","data":"2","channels":["y"]}]}"#,
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch[1]: Batch events take a single channel (channel), not channels"
        );
        let err = parse_batch(
            br#"{"batch":[{"name":"a","data":"12345678901234567","channel":"x"}]}"#,
            &limits(),
        )
        .unwrap_err();
        assert!(
            err.is_too_large(),
            "an oversized item makes the batch a 413"
        );
        let err = parse_batch(br#"{"batch":[{},{},{}]}"#, &limits()).unwrap_err();
        assert_eq!(
            err,
            ApiBodyError::BatchTooLarge { count: 3, max: 2 },
            "the count is checked before any item"
        );
    }

    #[test]
    fn the_console_event_takes_one_channel() {
        let body = br#"{"name":"e","data":"{}","channels":["a"]}"#;
        assert_eq!(
            parse_single_channel_event(body, &limits()),
            Err(ApiBodyError::ChannelsInBatch)
        );
        let ev =
            parse_single_channel_event(br#"{"name":"e","data":"{}","channel":"a"}"#, &limits())
                .unwrap();
        assert_eq!(ev.channels.len(), 1);
    }

    #[test]
    fn info_attributes_are_checked_against_the_channel() {
        assert!(InfoRequest::parse(Some(" user_count , x")).user_count);
        assert!(!InfoRequest::parse(None).any());
        assert_eq!(
            channel_list_info("", Some("user_count")),
            Err(InfoError::UserCountNeedsPresencePrefix)
        );
        assert!(
            channel_list_info("presence-", Some("user_count"))
                .unwrap()
                .user_count
        );
        let presence = ChannelName::parse("presence-room").unwrap();
        let cache = ChannelName::parse("cache-news").unwrap();
        assert_eq!(
            channel_show_info(&presence, Some("subscription_count,user_count,")),
            Ok(vec![
                ChannelAttribute::SubscriptionCount,
                ChannelAttribute::UserCount
            ])
        );
        assert_eq!(
            channel_show_info(&cache, Some("user_count")),
            Err(InfoError::UserCountNotPresence)
        );
        assert_eq!(
            channel_show_info(&presence, Some("cache")),
            Err(InfoError::CacheNotCacheChannel)
        );
        assert_eq!(
            channel_show_info(&cache, Some("cache,occupied")),
            Err(InfoError::Unknown("occupied".into()))
        );
        assert_eq!(channel_show_info(&cache, None), Ok(vec![]));
    }
}
