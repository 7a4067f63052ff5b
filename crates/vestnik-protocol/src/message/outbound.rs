//! What goes out on the WebSocket: a [`ServerMessage`] encoded into the text payload of one frame
//! (`Bytes`) exactly once, so one event can be shared by every recipient.
//!
//! Strings are escaped here, and raw JSON a client sent (a member's `user_info`) is written as it
//! came: re-parsing it could fail or change it. This module must never do IO, never serialise per
//! subscriber, and never substitute a value for one it cannot read.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::position::{push_position, push_recovery, Position, Recovery};
use crate::code::PusherCode;

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
        /// The channel's position when joined (a top-level field), where it has history.
        position: Option<Position<'a>>,
        /// The answer to a `recover`, in the data, when one was asked.
        recovery: Option<Recovery>,
    },
    /// `pusher_internal:subscription_succeeded` on a presence channel, with the roster.
    PresenceSubscriptionSucceeded {
        /// The channel joined.
        channel: &'a str,
        /// Every member, the subscriber included.
        members: &'a [MemberView<'a>],
        /// The channel's position when joined (a top-level field), where it has history.
        position: Option<Position<'a>>,
        /// The answer to a `recover`, in the data, when one was asked.
        recovery: Option<Recovery>,
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
        /// The event's place in its channel's history, where the channel has one.
        position: Option<Position<'a>>,
    },
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
            Self::Error { code, message } => error(&mut out, code, message),
            Self::Ping => out.push_str("{\"event\":\"pusher:ping\",\"data\":{}}"),
            Self::Pong => out.push_str("{\"event\":\"pusher:pong\",\"data\":{}}"),
            Self::SubscriptionSucceeded {
                channel,
                position,
                recovery,
            } => {
                let mut data = String::from("{");
                if let Some(r) = recovery {
                    push_recovery(&mut data, r);
                }
                data.push('}');
                succeeded(&mut out, channel, &data, position);
            }
            Self::PresenceSubscriptionSucceeded {
                channel,
                members,
                position,
                recovery,
            } => {
                let mut data = roster(members);
                if let Some(r) = recovery {
                    data.pop();
                    data.push(',');
                    push_recovery(&mut data, r);
                    data.push('}');
                }
                succeeded(&mut out, channel, &data, position);
            }
            Self::SubscriptionError {
                channel,
                kind,
                error,
                status,
            } => subscription_error(&mut out, channel, kind, error, status),
            Self::MemberAdded { channel, member } => member_added(&mut out, channel, member),
            Self::MemberRemoved { channel, user_id } => {
                let mut data = String::from("{\"user_id\":");
                push_json_str(&mut data, user_id);
                data.push('}');
                let event = "pusher_internal:member_removed";
                envelope(&mut out, event, Some(channel), Some(&data));
            }
            Self::SubscriptionCount { channel, count } => {
                let data = format!("{{\"subscription_count\":{count}}}");
                let event = "pusher_internal:subscription_count";
                envelope(&mut out, event, Some(channel), Some(&data));
            }
            Self::CacheMiss { channel } => {
                envelope(&mut out, "pusher:cache_miss", Some(channel), None);
            }
            Self::SigninSuccess { user_data } => {
                out.push_str("{\"event\":\"pusher:signin_success\",\"data\":{\"user_data\":");
                push_json_str(&mut out, user_data);
                out.push_str("}}");
            }
            Self::Watchlist { event, user_ids } => watchlist(&mut out, event, user_ids),
            Self::ChannelEvent {
                event,
                channel,
                data,
                user_id,
                position,
            } => {
                channel_event(&mut out, event, channel, data, user_id);
                if let Some(p) = position {
                    out.pop();
                    push_position(&mut out, p);
                    out.push('}');
                }
            }
        }
        out
    }
}

/// `pusher_internal:subscription_succeeded` with `data`, and the channel's position beside it.
fn succeeded(out: &mut String, channel: &str, data: &str, position: Option<Position<'_>>) {
    envelope(
        out,
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some(data),
    );
    if let Some(p) = position {
        out.pop();
        push_position(out, p);
        out.push('}');
    }
}

/// `pusher:error` with an object `data`: `{"code":N|null,"message":"…"}`.
fn error(out: &mut String, code: Option<PusherCode>, message: &str) {
    out.push_str("{\"event\":\"pusher:error\",\"data\":{\"code\":");
    match code {
        Some(c) => {
            let _ = write!(out, "{}", c.code());
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"message\":");
    push_json_str(out, message);
    out.push_str("}}");
}

/// `pusher:subscription_error` with an object `data`: `{"type":…,"error":…,"status":S}`.
fn subscription_error(
    out: &mut String,
    channel: &str,
    kind: SubscriptionErrorKind,
    error: &str,
    status: u16,
) {
    out.push_str("{\"event\":\"pusher:subscription_error\",\"channel\":");
    push_json_str(out, channel);
    out.push_str(",\"data\":{\"type\":");
    push_json_str(out, kind.as_str());
    out.push_str(",\"error\":");
    push_json_str(out, error);
    let _ = write!(out, ",\"status\":{status}}}}}");
}

/// The `data` of a presence `subscription_succeeded`:
/// `{"presence":{"ids":[…],"hash":{id: info, …},"count":N}}`. `ids` keeps the roster's order;
/// `hash` is sorted by id (one entry per id, the first wins), and each `info` is the member's raw
/// `user_info` as it came, `{}` when it gave none.
fn roster(members: &[MemberView<'_>]) -> String {
    let info_len: usize = members
        .iter()
        .map(|m| m.user_id.len() * 2 + m.user_info.map_or(2, |i| i.get().len()) + 8)
        .sum();
    let mut data = String::with_capacity(info_len + 48);
    data.push_str("{\"presence\":{\"ids\":[");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        push_json_str(&mut data, m.user_id);
    }
    data.push_str("],\"hash\":{");
    let mut by_id: Vec<&MemberView<'_>> = members.iter().collect();
    by_id.sort_by(|a, b| a.user_id.cmp(b.user_id));
    by_id.dedup_by(|later, first| later.user_id == first.user_id);
    for (i, m) in by_id.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        push_json_str(&mut data, m.user_id);
        data.push(':');
        data.push_str(m.user_info.map_or("{}", RawValue::get));
    }
    let _ = write!(data, "}},\"count\":{}}}}}", members.len());
    data
}

/// `pusher_internal:member_added` with `{"user_id":…,"user_info"?:<raw>}`.
fn member_added(out: &mut String, channel: &str, member: MemberView<'_>) {
    let mut data = String::from("{\"user_id\":");
    push_json_str(&mut data, member.user_id);
    if let Some(info) = member.user_info {
        data.push_str(",\"user_info\":");
        data.push_str(info.get());
    }
    data.push('}');
    let event = "pusher_internal:member_added";
    envelope(out, event, Some(channel), Some(&data));
}

/// `pusher_internal:watchlist_events` with one entry.
fn watchlist(out: &mut String, event: WatchlistEvent, user_ids: &[&str]) {
    let name = match event {
        WatchlistEvent::Online => "online",
        WatchlistEvent::Offline => "offline",
    };
    let body = serde_json::json!({"events": [{"name": name, "user_ids": user_ids}]});
    let event = "pusher_internal:watchlist_events";
    envelope(out, event, None, Some(&body.to_string()));
}

/// An app event, with the sender's `user_id` on presence client events.
fn channel_event(out: &mut String, event: &str, channel: &str, data: &str, user_id: Option<&str>) {
    // One allocation for the whole frame: the escapes of a JSON object carried as a string (a
    // quote becomes two bytes), the user id, and room for a position (`,"position":{…}`, about 50
    // bytes), which the caller may append.
    out.reserve(
        event.len()
            + channel.len()
            + data.len()
            + data.len() / 4
            + user_id.map_or(0, str::len)
            + 100,
    );
    envelope(out, event, Some(channel), Some(data));
    if let Some(uid) = user_id {
        out.pop();
        out.push_str(",\"user_id\":");
        push_json_str(out, uid);
        out.push('}');
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

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_json(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    /// The `data` string of a frame, checked to be JSON (at any depth) but not re-parsed.
    fn data_of(frame: &[u8]) -> String {
        let data = parse_json(frame)["data"].as_str().unwrap().to_owned();
        RawValue::from_string(data.clone()).expect("data is JSON");
        data
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
            position: None,
            recovery: None,
        }
        .encode();
        let v = parse_json(&b);
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(v["channel"], "presence-example-channel");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["ids"], json!(["a", "b"]));
        assert_eq!(data["presence"]["hash"]["a"], json!({"name":"A"}));
        assert_eq!(data["presence"]["hash"]["b"], json!({}));
        assert_eq!(data["presence"]["count"], 2);
    }

    #[test]
    fn presence_succeeded_bytes_and_hash_order() {
        let info = RawValue::from_string(r#"{"n":"\"q\""}"#.into()).unwrap();
        let members = [
            MemberView {
                user_id: "z",
                user_info: None,
            },
            MemberView {
                user_id: "a\"b",
                user_info: Some(&info),
            },
        ];
        let v = parse_json(
            &ServerMessage::PresenceSubscriptionSucceeded {
                channel: "presence-x",
                members: &members,
                position: None,
                recovery: None,
            }
            .encode(),
        );
        assert_eq!(
            v["data"].as_str().unwrap(),
            r#"{"presence":{"ids":["z","a\"b"],"hash":{"a\"b":{"n":"\"q\""},"z":{}},"count":2}}"#
        );
        let empty = ServerMessage::PresenceSubscriptionSucceeded {
            channel: "presence-x",
            members: &[],
            position: None,
            recovery: None,
        }
        .encode();
        assert_eq!(
            parse_json(&empty)["data"],
            r#"{"presence":{"ids":[],"hash":{},"count":0}}"#
        );
    }

    /// Issue 13, hole 4: a `user_info` deeper than serde_json re-parses was shown as `{}` to the
    /// joiner while `member_added` carried it. Both carry the member's info unchanged now.
    #[test]
    fn deep_user_info_is_carried_not_replaced() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let info = RawValue::from_string(deep.clone()).unwrap();
        let member = MemberView {
            user_id: "deep",
            user_info: Some(&info),
        };
        let joined = data_of(
            &ServerMessage::PresenceSubscriptionSucceeded {
                channel: "presence-x",
                members: &[member],
                position: None,
                recovery: None,
            }
            .encode(),
        );
        let added = data_of(
            &ServerMessage::MemberAdded {
                channel: "presence-x",
                member,
            }
            .encode(),
        );
        assert!(
            joined.contains(&format!(r#""hash":{{"deep":{deep}}}"#)),
            "{joined}"
        );
        assert!(
            added.contains(&format!(r#""user_info":{deep}}}"#)),
            "{added}"
        );
    }

    #[test]
    fn channel_event_escapes_and_user_id() {
        let b = ServerMessage::ChannelEvent {
            event: "client-x",
            channel: "presence-a",
            data: "{\"t\":\"a\\\"b\nc\u{1}\"}",
            user_id: Some("7"),
            position: None,
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

    #[test]
    fn member_and_count_shapes() {
        let info = RawValue::from_string(r#"{"a": 1}"#.into()).unwrap();
        let b = ServerMessage::MemberAdded {
            channel: "presence-x",
            member: MemberView {
                user_id: "1",
                user_info: Some(&info),
            },
        }
        .encode();
        assert_eq!(
            &b[..],
            br#"{"event":"pusher_internal:member_added","channel":"presence-x","data":"{\"user_id\":\"1\",\"user_info\":{\"a\": 1}}"}"#
        );
        let v = parse_json(
            &ServerMessage::MemberRemoved {
                channel: "presence-x",
                user_id: "1",
            }
            .encode(),
        );
        assert_eq!(v["data"], r#"{"user_id":"1"}"#);
        let v = parse_json(
            &ServerMessage::SubscriptionCount {
                channel: "c",
                count: 3,
            }
            .encode(),
        );
        assert_eq!(v["data"], r#"{"subscription_count":3}"#);
        assert_eq!(
            &ServerMessage::CacheMiss { channel: "cache-a" }.encode()[..],
            br#"{"event":"pusher:cache_miss","channel":"cache-a"}"#
        );
        assert_eq!(
            &ServerMessage::SigninSuccess {
                user_data: "{\"id\":\"1\"}"
            }
            .encode()[..],
            br#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"1\"}"}}"#
        );
    }
}
