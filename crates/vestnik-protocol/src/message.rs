//! What travels on the WebSocket: [`ClientMessage`] in, [`ServerMessage`] out.
//!
//! Parsing turns one text frame into a closed enum with validated fields; anything else becomes a
//! [`MessageError`] that maps to a Pusher code. Encoding turns a server message into the frame payload
//! (`Bytes`) exactly once, so one event can be shared by every recipient. This module must never do IO
//! and never serialise per subscriber.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::channel::{ChannelName, ChannelNameError};
use crate::code::PusherCode;
use crate::limits::{MAX_EVENT_NAME_LEN, MAX_USER_ID_LEN};

/// A message a client sent, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `pusher:ping`: answer with `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to the server's ping.
    Pong,
    /// `pusher:subscribe`.
    Subscribe(Subscribe),
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel to leave.
        channel: ChannelName,
    },
    /// `pusher:signin`: user authentication.
    Signin {
        /// `key:signature` over `socket_id::user::user_data`.
        auth: String,
        /// The exact `user_data` string that was signed.
        user_data: String,
    },
    /// A `client-*` event to relay to the channel's other subscribers.
    ClientEvent {
        /// The event name, starting with `client-`.
        event: String,
        /// The channel it is sent on.
        channel: ChannelName,
        /// The data as a string: a JSON string's contents, or the raw JSON text of any other value.
        data: String,
    },
}

/// The fields of a `pusher:subscribe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// The channel to join.
    pub channel: ChannelName,
    /// `key:signature`, empty or absent for public channels.
    pub auth: Option<String>,
    /// For presence channels, the exact `channel_data` string that was signed.
    pub channel_data: Option<String>,
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or not the JSON shape of a Pusher message.
    #[error("Invalid message: {0}")]
    Malformed(String),
    /// A `pusher:` or `pusher_internal:` event the server does not know.
    #[error("Unknown event {0:?}")]
    UnknownEvent(String),
    /// An event without the `client-` prefix sent by a client.
    #[error("Client event names must start with client-, got {0:?}")]
    NotAClientEvent(String),
    /// An event name longer than the limit.
    #[error("Event name is longer than {MAX_EVENT_NAME_LEN} characters")]
    EventNameTooLong,
    /// A channel name that failed validation; reported on the channel.
    #[error("Invalid channel name {channel:?}: {error}")]
    InvalidChannel {
        /// The raw name as sent.
        channel: String,
        /// What is wrong with it.
        error: ChannelNameError,
    },
}

impl MessageError {
    /// The Pusher code that goes with this error.
    pub fn code(&self) -> PusherCode {
        match self {
            Self::Malformed(_) | Self::UnknownEvent(_) | Self::InvalidChannel { .. } => {
                PusherCode::InvalidMessage
            }
            Self::NotAClientEvent(_) | Self::EventNameTooLong => PusherCode::ClientEventRejected,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(borrow, default)]
    channel_data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UnsubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SigninData<'a> {
    auth: String,
    #[serde(borrow)]
    user_data: &'a RawValue,
}

fn malformed(e: impl std::fmt::Display) -> MessageError {
    MessageError::Malformed(e.to_string())
}

/// Turns a JSON value that may be a string into that string's contents, or the raw JSON text otherwise.
/// Clients send `channel_data`, `user_data` and client-event `data` either way.
fn raw_to_string(raw: &RawValue) -> Result<String, MessageError> {
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(malformed)
    } else {
        Ok(text.to_owned())
    }
}

/// Parses a `data` field that must be an object, accepting it double-encoded as a string too.
fn parse_object<'a, T: Deserialize<'a>>(
    data: Option<&'a RawValue>,
    holder: &'a mut String,
    event: &str,
) -> Result<T, MessageError> {
    let raw = data.ok_or_else(|| malformed(format!("{event} needs data")))?;
    let text = raw.get();
    if text.starts_with('"') {
        *holder = serde_json::from_str::<String>(text).map_err(malformed)?;
        serde_json::from_str(holder).map_err(|e| malformed(format!("{event}: {e}")))
    } else {
        serde_json::from_str(text).map_err(|e| malformed(format!("{event}: {e}")))
    }
}

fn channel(raw: &str) -> Result<ChannelName, MessageError> {
    ChannelName::parse(raw).map_err(|error| MessageError::InvalidChannel {
        channel: raw.to_owned(),
        error,
    })
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let env: Envelope<'_> = serde_json::from_str(text).map_err(malformed)?;
        let mut holder = String::new();
        match &*env.event {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" => {
                let d: SubscribeData<'_> = parse_object(env.data, &mut holder, "pusher:subscribe")?;
                let channel_data = d.channel_data.map(raw_to_string).transpose()?;
                Ok(Self::Subscribe(Subscribe {
                    channel: channel(&d.channel)?,
                    auth: d.auth.filter(|a| !a.is_empty()),
                    channel_data,
                }))
            }
            "pusher:unsubscribe" => {
                let d: UnsubscribeData<'_> =
                    parse_object(env.data, &mut holder, "pusher:unsubscribe")?;
                Ok(Self::Unsubscribe {
                    channel: channel(&d.channel)?,
                })
            }
            "pusher:signin" => {
                let d: SigninData<'_> = parse_object(env.data, &mut holder, "pusher:signin")?;
                Ok(Self::Signin {
                    auth: d.auth,
                    user_data: raw_to_string(d.user_data)?,
                })
            }
            event if event.starts_with("client-") => {
                if event.len() > MAX_EVENT_NAME_LEN {
                    return Err(MessageError::EventNameTooLong);
                }
                let name = env
                    .channel
                    .ok_or_else(|| malformed("client event without channel"))?;
                let data = match env.data {
                    Some(raw) => raw_to_string(raw)?,
                    None => String::new(),
                };
                Ok(Self::ClientEvent {
                    event: event.to_owned(),
                    channel: channel(&name)?,
                    data,
                })
            }
            event if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {
                Err(MessageError::UnknownEvent(event.to_owned()))
            }
            event => Err(MessageError::NotAClientEvent(event.to_owned())),
        }
    }
}

/// A presence `channel_data`: who the subscriber is.
#[derive(Debug, Clone)]
pub struct PresenceData {
    /// The user id, as a string even when sent as a number.
    pub user_id: String,
    /// The user's info, as raw JSON, if given.
    pub user_info: Option<Box<RawValue>>,
}

/// A sign-in `user_data`: who the user is and whom they watch.
#[derive(Debug, Clone)]
pub struct UserData {
    /// The user id; never empty.
    pub id: String,
    /// The user's info, as raw JSON, if given.
    pub user_info: Option<Box<RawValue>>,
    /// Ids of users whose online status this user wants to follow.
    pub watchlist: Vec<String>,
}

/// Why `channel_data` or `user_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// Not a JSON object of the right shape.
    #[error("invalid {what}: {message}")]
    Malformed {
        /// `channel_data` or `user_data`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The user id is missing, empty or not a string or number.
    #[error("{0} must carry a non-empty user id")]
    MissingId(&'static str),
    /// The user id is too long.
    #[error("user id is longer than {MAX_USER_ID_LEN} characters")]
    IdTooLong,
}

#[derive(Deserialize)]
struct RawPresence<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawUser<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
    #[serde(default)]
    watchlist: Option<Vec<String>>,
}

/// Reads a user id sent as a JSON string or number.
fn user_id(raw: Option<&RawValue>, what: &'static str) -> Result<String, UserDataError> {
    let raw = raw.ok_or(UserDataError::MissingId(what))?;
    let id = match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(UserDataError::MissingId(what)),
    };
    if id.is_empty() {
        return Err(UserDataError::MissingId(what));
    }
    if id.chars().count() > MAX_USER_ID_LEN {
        return Err(UserDataError::IdTooLong);
    }
    Ok(id)
}

fn null_to_none(v: Option<Box<RawValue>>) -> Option<Box<RawValue>> {
    v.filter(|r| r.get() != "null")
}

impl PresenceData {
    /// Parses a presence `channel_data` string: `{"user_id": <string|number>, "user_info"?: <any>}`.
    pub fn parse(text: &str) -> Result<Self, UserDataError> {
        let raw: RawPresence<'_> =
            serde_json::from_str(text).map_err(|e| UserDataError::Malformed {
                what: "channel_data",
                message: e.to_string(),
            })?;
        Ok(Self {
            user_id: user_id(raw.user_id, "channel_data")?,
            user_info: null_to_none(raw.user_info),
        })
    }
}

impl UserData {
    /// Parses a sign-in `user_data` string: `{"id": <string>, "user_info"?: <any>, "watchlist"?: [..]}`.
    pub fn parse(text: &str) -> Result<Self, UserDataError> {
        let raw: RawUser<'_> =
            serde_json::from_str(text).map_err(|e| UserDataError::Malformed {
                what: "user_data",
                message: e.to_string(),
            })?;
        Ok(Self {
            id: user_id(raw.id, "user_data")?,
            user_info: null_to_none(raw.user_info),
            watchlist: raw.watchlist.unwrap_or_default(),
        })
    }
}

/// One presence member, as listed in `subscription_succeeded`.
#[derive(Debug, Clone, Copy)]
pub struct MemberView<'a> {
    /// The user id.
    pub user_id: &'a str,
    /// The user's info, if any.
    pub user_info: Option<&'a RawValue>,
}

/// The `type` of a `pusher:subscription_error`, as soketi and pusher-js name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionErrorKind {
    /// The signature was missing or wrong, or the socket may not join this channel.
    AuthError,
    /// A limit was hit: presence members, user info size.
    LimitReached,
    /// The request itself was bad: invalid name, malformed channel data.
    InvalidChannel,
}

impl SubscriptionErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::AuthError => "AuthError",
            Self::LimitReached => "LimitReached",
            Self::InvalidChannel => "InvalidChannel",
        }
    }
}

/// One entry of a `pusher_internal:watchlist_events` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchlistEvent {
    /// The listed users came online.
    Online,
    /// The listed users went offline.
    Offline,
}

/// A message from the server to a client.
#[derive(Debug, Clone, Copy)]
pub enum ServerMessage<'a> {
    /// `pusher:connection_established`.
    ConnectionEstablished {
        /// The socket's id.
        socket_id: &'a str,
        /// Seconds of silence after which the client should ping.
        activity_timeout: u64,
    },
    /// `pusher:error`, with an object `data` as the protocol documents it.
    Error {
        /// The code, if any.
        code: Option<PusherCode>,
        /// A human-readable message.
        message: &'a str,
    },
    /// `pusher:ping`: the server checks that a silent client is alive.
    Ping,
    /// `pusher:pong`: the answer to a client's ping.
    Pong,
    /// `pusher_internal:subscription_succeeded` on a non-presence channel.
    SubscriptionSucceeded {
        /// The channel joined.
        channel: &'a str,
    },
    /// `pusher_internal:subscription_succeeded` on a presence channel, with the roster.
    PresenceSubscriptionSucceeded {
        /// The channel joined.
        channel: &'a str,
        /// Every member, the subscriber included.
        members: &'a [MemberView<'a>],
    },
    /// `pusher:subscription_error`, channel-scoped so pusher-js surfaces it on the channel.
    SubscriptionError {
        /// The channel that was refused.
        channel: &'a str,
        /// The kind of refusal.
        kind: SubscriptionErrorKind,
        /// What went wrong.
        error: &'a str,
        /// The HTTP-like status: 401, 403 or 400.
        status: u16,
    },
    /// `pusher_internal:member_added`.
    MemberAdded {
        /// The presence channel.
        channel: &'a str,
        /// The member.
        member: MemberView<'a>,
    },
    /// `pusher_internal:member_removed`.
    MemberRemoved {
        /// The presence channel.
        channel: &'a str,
        /// The user who left.
        user_id: &'a str,
    },
    /// `pusher_internal:subscription_count`.
    SubscriptionCount {
        /// The channel.
        channel: &'a str,
        /// Its current number of subscriptions.
        count: usize,
    },
    /// `pusher:cache_miss`: a cache channel had nothing to replay.
    CacheMiss {
        /// The cache channel.
        channel: &'a str,
    },
    /// `pusher:signin_success`, echoing the signed `user_data`.
    SigninSuccess {
        /// The exact `user_data` string.
        user_data: &'a str,
    },
    /// `pusher_internal:watchlist_events`.
    Watchlist {
        /// Whether these users came online or went offline.
        event: WatchlistEvent,
        /// The users.
        user_ids: &'a [&'a str],
    },
    /// An app event on a channel (HTTP trigger or client event).
    ChannelEvent {
        /// The event name.
        event: &'a str,
        /// The channel.
        channel: &'a str,
        /// The data string, forwarded verbatim.
        data: &'a str,
        /// On presence client events, the sender's user id.
        user_id: Option<&'a str>,
    },
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[derive(Serialize)]
struct Presence<'a> {
    presence: PresenceBody<'a>,
}

#[derive(Serialize)]
struct PresenceBody<'a> {
    ids: Vec<&'a str>,
    hash: serde_json::Map<String, serde_json::Value>,
    count: usize,
}

fn info_value(info: Option<&RawValue>) -> serde_json::Value {
    info.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
}

impl ServerMessage<'_> {
    /// Encodes the message into the text payload of one WebSocket frame. Called once per message,
    /// never per recipient.
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.to_json())
    }

    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96);
        match *self {
            Self::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => {
                let mut data = String::from("{\"socket_id\":");
                push_json_str(&mut data, socket_id);
                let _ = write!(data, ",\"activity_timeout\":{activity_timeout}}}");
                envelope(&mut out, "pusher:connection_established", None, Some(&data));
            }
            Self::Error { code, message } => {
                out.push_str("{\"event\":\"pusher:error\",\"data\":{\"code\":");
                match code {
                    Some(c) => {
                        let _ = write!(out, "{}", c.code());
                    }
                    None => out.push_str("null"),
                }
                out.push_str(",\"message\":");
                push_json_str(&mut out, message);
                out.push_str("}}");
            }
            Self::Ping => out.push_str("{\"event\":\"pusher:ping\",\"data\":{}}"),
            Self::Pong => out.push_str("{\"event\":\"pusher:pong\",\"data\":{}}"),
            Self::SubscriptionSucceeded { channel } => {
                envelope(
                    &mut out,
                    "pusher_internal:subscription_succeeded",
                    Some(channel),
                    Some("{}"),
                );
            }
            Self::PresenceSubscriptionSucceeded { channel, members } => {
                let body = Presence {
                    presence: PresenceBody {
                        ids: members.iter().map(|m| m.user_id).collect(),
                        hash: members
                            .iter()
                            .map(|m| (m.user_id.to_owned(), info_value(m.user_info)))
                            .collect(),
                        count: members.len(),
                    },
                };
                let data = serde_json::to_string(&body).unwrap_or_default();
                envelope(
                    &mut out,
                    "pusher_internal:subscription_succeeded",
                    Some(channel),
                    Some(&data),
                );
            }
            Self::SubscriptionError {
                channel,
                kind,
                error,
                status,
            } => {
                out.push_str("{\"event\":\"pusher:subscription_error\",\"channel\":");
                push_json_str(&mut out, channel);
                out.push_str(",\"data\":{\"type\":");
                push_json_str(&mut out, kind.as_str());
                out.push_str(",\"error\":");
                push_json_str(&mut out, error);
                let _ = write!(out, ",\"status\":{status}}}}}");
            }
            Self::MemberAdded { channel, member } => {
                let mut data = String::from("{\"user_id\":");
                push_json_str(&mut data, member.user_id);
                if let Some(info) = member.user_info {
                    data.push_str(",\"user_info\":");
                    data.push_str(info.get());
                }
                data.push('}');
                envelope(
                    &mut out,
                    "pusher_internal:member_added",
                    Some(channel),
                    Some(&data),
                );
            }
            Self::MemberRemoved { channel, user_id } => {
                let mut data = String::from("{\"user_id\":");
                push_json_str(&mut data, user_id);
                data.push('}');
                envelope(
                    &mut out,
                    "pusher_internal:member_removed",
                    Some(channel),
                    Some(&data),
                );
            }
            Self::SubscriptionCount { channel, count } => {
                let data = format!("{{\"subscription_count\":{count}}}");
                envelope(
                    &mut out,
                    "pusher_internal:subscription_count",
                    Some(channel),
                    Some(&data),
                );
            }
            Self::CacheMiss { channel } => {
                envelope(&mut out, "pusher:cache_miss", Some(channel), None);
            }
            Self::SigninSuccess { user_data } => {
                out.push_str("{\"event\":\"pusher:signin_success\",\"data\":{\"user_data\":");
                push_json_str(&mut out, user_data);
                out.push_str("}}");
            }
            Self::Watchlist { event, user_ids } => {
                let name = match event {
                    WatchlistEvent::Online => "online",
                    WatchlistEvent::Offline => "offline",
                };
                let body = serde_json::json!({"events": [{"name": name, "user_ids": user_ids}]});
                envelope(
                    &mut out,
                    "pusher_internal:watchlist_events",
                    None,
                    Some(&body.to_string()),
                );
            }
            Self::ChannelEvent {
                event,
                channel,
                data,
                user_id,
            } => {
                out.reserve(event.len() + channel.len() + data.len() + 40);
                envelope(&mut out, event, Some(channel), Some(data));
                if let Some(uid) = user_id {
                    out.pop();
                    out.push_str(",\"user_id\":");
                    push_json_str(&mut out, uid);
                    out.push('}');
                }
            }
        }
        out
    }
}

/// Writes `{"event":..,"channel":..,"data":"<data as a JSON string>"}`.
fn envelope(out: &mut String, event: &str, channel: Option<&str>, data: Option<&str>) {
    out.push_str("{\"event\":");
    push_json_str(out, event);
    if let Some(c) = channel {
        out.push_str(",\"channel\":");
        push_json_str(out, c);
    }
    if let Some(d) = data {
        out.push_str(",\"data\":");
        push_json_str(out, d);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_json(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn parses_pusher_js_public_subscribe() {
        let m = ClientMessage::parse(
            r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#,
        )
        .unwrap();
        match m {
            ClientMessage::Subscribe(s) => {
                assert_eq!(s.channel.as_str(), "my-channel");
                assert_eq!(s.auth, None);
                assert_eq!(s.channel_data, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_channel_data_bytes_exactly() {
        let cd = r#"{"user_id": "fred", "user_info": {"key": "value"}}"#;
        let frame = json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"k:s","channel_data":cd}});
        let m = ClientMessage::parse(&frame.to_string()).unwrap();
        let ClientMessage::Subscribe(s) = m else {
            panic!()
        };
        assert_eq!(s.channel_data.as_deref(), Some(cd));
    }

    #[test]
    fn accepts_double_encoded_data() {
        let m =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#)
                .unwrap();
        assert!(matches!(m, ClientMessage::Subscribe(_)));
    }

    #[test]
    fn client_event_data_object_or_string() {
        let m = ClientMessage::parse(
            r#"{"event":"client-typing","channel":"private-a","data":{"x":1}}"#,
        )
        .unwrap();
        let ClientMessage::ClientEvent { data, .. } = m else {
            panic!()
        };
        assert_eq!(data, r#"{"x":1}"#);
        let m =
            ClientMessage::parse(r#"{"event":"client-typing","channel":"private-a","data":"hi"}"#)
                .unwrap();
        let ClientMessage::ClientEvent { data, .. } = m else {
            panic!()
        };
        assert_eq!(data, "hi");
    }

    #[test]
    fn refusals_have_codes() {
        let cases: [(&str, u16); 6] = [
            ("not json", 4300),
            (r#"{"data":{}}"#, 4300),
            (r#"{"event":"pusher:bogus"}"#, 4300),
            (r#"{"event":"hello","channel":"private-a"}"#, 4301),
            (
                r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#,
                4300,
            ),
            (r#"{"event":"pusher:subscribe"}"#, 4300),
        ];
        for (text, code) in cases {
            let e = ClientMessage::parse(text).unwrap_err();
            assert_eq!(e.code().code(), code, "{text}: {e}");
        }
    }

    #[test]
    fn presence_data_numeric_and_string_ids() {
        let p = PresenceData::parse(r#"{"user_id":10,"user_info":{"name":"A"}}"#).unwrap();
        assert_eq!(p.user_id, "10");
        assert_eq!(p.user_info.unwrap().get(), r#"{"name":"A"}"#);
        assert!(PresenceData::parse(r#"{"user_id":""}"#).is_err());
        assert!(PresenceData::parse(r#"{"user_info":{}}"#).is_err());
        assert!(PresenceData::parse(r#"{"user_id":true}"#).is_err());
        assert!(PresenceData::parse("[]").is_err());
    }

    #[test]
    fn user_data_needs_id() {
        let u = UserData::parse(r#"{"id":"12345","watchlist":["1","2"]}"#).unwrap();
        assert_eq!(u.id, "12345");
        assert_eq!(u.watchlist, vec!["1", "2"]);
        assert!(UserData::parse(r#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn handshake_matches_reference() {
        let b = ServerMessage::ConnectionEstablished {
            socket_id: "123.456",
            activity_timeout: 120,
        }
        .encode();
        assert_eq!(
            &b[..],
            br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
    }

    #[test]
    fn presence_succeeded_shape() {
        let info_a = RawValue::from_string(r#"{"name":"A"}"#.into()).unwrap();
        let members = [
            MemberView {
                user_id: "a",
                user_info: Some(&info_a),
            },
            MemberView {
                user_id: "b",
                user_info: None,
            },
        ];
        let b = ServerMessage::PresenceSubscriptionSucceeded {
            channel: "presence-example-channel",
            members: &members,
        }
        .encode();
        let v = parse_json(&b);
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["ids"], json!(["a", "b"]));
        assert_eq!(data["presence"]["hash"]["a"], json!({"name":"A"}));
        assert_eq!(data["presence"]["count"], 2);
    }

    #[test]
    fn channel_event_escapes_and_user_id() {
        let b = ServerMessage::ChannelEvent {
            event: "client-x",
            channel: "presence-a",
            data: "{\"t\":\"a\\\"b\nc\u{1}\"}",
            user_id: Some("7"),
        }
        .encode();
        let v = parse_json(&b);
        assert_eq!(v["data"], "{\"t\":\"a\\\"b\nc\u{1}\"}");
        assert_eq!(v["user_id"], "7");
        assert_eq!(v["channel"], "presence-a");
    }

    #[test]
    fn error_and_subscription_error_shapes() {
        let v = parse_json(
            &ServerMessage::Error {
                code: Some(PusherCode::AppNotFound),
                message: "App key x does not exist.",
            }
            .encode(),
        );
        assert_eq!(
            v,
            json!({"event":"pusher:error","data":{"code":4001,"message":"App key x does not exist."}})
        );
        let v = parse_json(
            &ServerMessage::SubscriptionError {
                channel: "private-a",
                kind: SubscriptionErrorKind::AuthError,
                error: "bad",
                status: 401,
            }
            .encode(),
        );
        assert_eq!(
            v["data"],
            json!({"type":"AuthError","error":"bad","status":401})
        );
        let v = parse_json(
            &ServerMessage::Watchlist {
                event: WatchlistEvent::Online,
                user_ids: &["1"],
            }
            .encode(),
        );
        let d: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(d, json!({"events":[{"name":"online","user_ids":["1"]}]}));
    }
}
