//! What comes in on the WebSocket: one text frame parsed into a [`ClientMessage`], a closed enum
//! with validated fields, or a [`MessageError`] that maps to a Pusher code.
//!
//! Every message, and every `data` that carries fields, must be a JSON object: an array is
//! malformed even where serde alone would read it by position (see [`crate::json`]). The
//! `channel_data` and `user_data` strings are kept byte-exact for the signature check; their
//! contents are read by [`super::user_data`], after the signature. This module must never do IO,
//! never trust a field it has not validated, and never change the bytes that were signed.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::position::Recover;
use crate::channel::{ChannelName, ChannelNameError};
use crate::code::PusherCode;
use crate::json;
use crate::limits::MAX_EVENT_NAME_LEN;

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
    /// The last position the client saw on the channel, to be sent what it missed since.
    pub recover: Option<Recover>,
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or not the JSON shape of a Pusher message (an array where an object belongs
    /// included).
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

/// The outer shape every client frame shares. Fields borrow from the frame where they can, so a
/// client event's data is copied once, into the message, and not again per field.
#[derive(Deserialize)]
struct Envelope<'a> {
    /// The event name; `Cow` because a name with JSON escapes cannot be borrowed as is.
    #[serde(borrow)]
    event: Cow<'a, str>,
    /// Only client events carry a top-level channel; `pusher:` events put it inside `data`.
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    /// Kept raw: its shape depends on the event, and client-event data is forwarded as its text.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The `data` of `pusher:subscribe`.
#[derive(Deserialize)]
struct SubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    /// `key:signature` for private and presence channels; an empty string counts as none (pusher-js
    /// sends `""` for public channels).
    #[serde(default)]
    auth: Option<String>,
    /// Presence only: the member, kept as the exact bytes received, because the `auth` signs that
    /// string and re-encoding it would change what is verified.
    #[serde(borrow, default)]
    channel_data: Option<&'a RawValue>,
    #[serde(default)]
    recover: Option<json::Object<Recover>>,
}

/// The `data` of `pusher:unsubscribe`.
#[derive(Deserialize)]
struct UnsubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

/// The `data` of `pusher:signin` (user authentication).
#[derive(Deserialize)]
struct SigninData<'a> {
    auth: String,
    /// The user, kept raw for the same reason as `channel_data`: the signature covers its exact
    /// text.
    #[serde(borrow)]
    user_data: &'a RawValue,
}

/// Any shape problem is `Malformed` (`InvalidMessage`, 4300), with the parser's words for the log.
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

/// Parses a `data` field that must be an object, accepting it double-encoded as a string too; an
/// array (or any other value), encoded either way, is malformed.
fn parse_object<'a, T: Deserialize<'a>>(
    data: Option<&'a RawValue>,
    holder: &'a mut String,
    event: &str,
) -> Result<T, MessageError> {
    let raw = data.ok_or_else(|| malformed(format!("{event} needs data")))?;
    let text = raw.get();
    if text.starts_with('"') {
        *holder = serde_json::from_str::<String>(text).map_err(malformed)?;
        json::from_object_str(holder).map_err(|e| malformed(format!("{event}: {e}")))
    } else {
        json::from_object_str(text).map_err(|e| malformed(format!("{event}: {e}")))
    }
}

/// A channel name that fails validation is reported with the name itself, so the session can answer
/// with a `pusher:subscription_error` on that channel, which pusher-js surfaces to the app.
fn channel(raw: &str) -> Result<ChannelName, MessageError> {
    ChannelName::parse(raw).map_err(|error| MessageError::InvalidChannel {
        channel: raw.to_owned(),
        error,
    })
}

impl ClientMessage {
    /// Parses one text frame, which must be a JSON object.
    ///
    /// Dispatch is on the event name, in one place: the `pusher:` events this server understands,
    /// any `client-` event, then refusals that say which rule was broken (an unknown `pusher:`
    /// event versus an event that is neither ours nor a client's).
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let env: Envelope<'_> = json::from_object_str(text).map_err(malformed)?;
        match &*env.event {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" => Self::subscribe(env.data),
            "pusher:unsubscribe" => {
                let mut holder = String::new();
                let d: UnsubscribeData<'_> =
                    parse_object(env.data, &mut holder, "pusher:unsubscribe")?;
                Ok(Self::Unsubscribe {
                    channel: channel(&d.channel)?,
                })
            }
            "pusher:signin" => {
                let mut holder = String::new();
                let d: SigninData<'_> = parse_object(env.data, &mut holder, "pusher:signin")?;
                Ok(Self::Signin {
                    auth: d.auth,
                    user_data: raw_to_string(d.user_data)?,
                })
            }
            event if event.starts_with("client-") => Self::client_event(event, &env),
            event if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {
                Err(MessageError::UnknownEvent(event.to_owned()))
            }
            event => Err(MessageError::NotAClientEvent(event.to_owned())),
        }
    }

    /// `pusher:subscribe`: the channel is validated here, the `auth` only later by the broker,
    /// which knows the app's secret.
    fn subscribe(data: Option<&RawValue>) -> Result<Self, MessageError> {
        let mut holder = String::new();
        let d: SubscribeData<'_> = parse_object(data, &mut holder, "pusher:subscribe")?;
        let channel_data = d.channel_data.map(raw_to_string).transpose()?;
        Ok(Self::Subscribe(Subscribe {
            channel: channel(&d.channel)?,
            auth: d.auth.filter(|a| !a.is_empty()),
            channel_data,
            recover: d.recover.map(json::Object::into_inner),
        }))
    }

    /// A `client-` event: the name's length is checked here (Pusher's 200 characters); whether the
    /// socket may send it (channel kind, subscription, rate) is the broker's decision.
    fn client_event(event: &str, env: &Envelope<'_>) -> Result<Self, MessageError> {
        if event.len() > MAX_EVENT_NAME_LEN {
            return Err(MessageError::EventNameTooLong);
        }
        let name = env
            .channel
            .as_deref()
            .ok_or_else(|| malformed("client event without channel"))?;
        let data = match env.data {
            Some(raw) => raw_to_string(raw)?,
            None => String::new(),
        };
        Ok(Self::ClientEvent {
            event: event.to_owned(),
            channel: channel(name)?,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The frame pusher-js sends for a public channel, byte for byte.
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

    /// `channel_data` must come out as the exact text received, or presence signatures would fail.
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

    /// Some clients send `data` as a JSON string holding the object; both forms parse alike.
    #[test]
    fn accepts_double_encoded_data() {
        let m =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#)
                .unwrap();
        assert!(matches!(m, ClientMessage::Subscribe(_)));
    }

    /// Client-event data is forwarded as text: a string as its contents, an object as its JSON.
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
    fn client_event_data_may_still_be_an_array() {
        // Client-event data is the app's own payload: any JSON value, arrays included.
        let m = ClientMessage::parse(r#"{"event":"client-x","channel":"private-a","data":[1,2]}"#)
            .unwrap();
        let ClientMessage::ClientEvent { data, .. } = m else {
            panic!()
        };
        assert_eq!(data, "[1,2]");
    }

    /// Each refusal maps to the Pusher code the session sends back, so clients see the documented
    /// code.
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

    /// Issue 13, hole 2: serde maps an array onto a struct by position, so these were a pong, two
    /// subscriptions, an unsubscribe, a sign-in and a client event.
    #[test]
    fn arrays_are_not_messages() {
        let cases = [
            r#"["pusher:ping"]"#,
            r#"["pusher:subscribe",null,{"channel":"x"}]"#,
            r#"{"event":"pusher:subscribe","data":["x"]}"#,
            r#"{"event":"pusher:subscribe","data":"[\"x\"]"}"#,
            r#"{"event":"pusher:subscribe","data":["presence-x","k:s","{\"user_id\":\"1\"}"]}"#,
            r#"{"event":"pusher:unsubscribe","data":["x"]}"#,
            r#"{"event":"pusher:signin","data":["k:s","{\"id\":\"1\"}"]}"#,
            r#"["client-x","private-a","hi"]"#,
            r#"[]"#,
            r#""pusher:ping""#,
            "null",
        ];
        for text in cases {
            let e = ClientMessage::parse(text).unwrap_err();
            assert!(matches!(e, MessageError::Malformed(_)), "{text}: {e:?}");
            assert_eq!(e.code(), PusherCode::InvalidMessage, "{text}");
        }
    }
}
