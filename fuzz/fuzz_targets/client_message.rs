//! Fuzzes everything a client can put in a WebSocket text frame.
//!
//! - `ClientMessage::parse` on the input (lossy UTF-8), and the field parsers `PresenceData::parse`,
//!   `UserData::parse`, `ChannelName::parse` and `SocketId::parse` on the same text.
//! - For every successful parse, the strings it yielded are encoded back into the server messages that
//!   carry them (`ChannelEvent`, `MemberAdded`, `PresenceSubscriptionSucceeded`, `SigninSuccess`, ...)
//!   and the output must be valid JSON whose fields round-trip those strings exactly.
//!
//! Any panic, or any failed assertion below, is a bug in vestnik-protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use vestnik_protocol::channel::SERVER_TO_USER_PREFIX;
use vestnik_protocol::limits::MAX_USER_INFO_BYTES;
use vestnik_protocol::message::{MemberView, PresenceData, UserData};
use vestnik_protocol::{ChannelKind, ChannelName, ClientMessage, ServerMessage, SocketId};

/// Parses an encoded frame; it must be a JSON object.
fn frame(bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "encoder produced invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    });
    assert!(v.is_object(), "frame is not an object: {v}");
    v
}

/// Checks that `text` is syntactically valid JSON (at any depth, numbers of any size) and returns its
/// value when serde_json can represent it (it refuses numbers out of f64 range, which the broker
/// forwards verbatim like any JSON text, so those are not bugs).
fn inner(text: &str) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    serde::de::IgnoredAny::deserialize(&mut de)
        .and_then(|_| de.end())
        .unwrap_or_else(|e| panic!("encoded data is not JSON ({e}): {text:?}"));
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    Value::deserialize(&mut de).ok()
}

/// The `data` of a frame, which must be a JSON string.
fn data_str(v: &Value) -> &str {
    v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a string: {v}"))
}

/// Encodes a channel event carrying `event`, `channel`, `data` (and `user_id`) and checks that each
/// string comes back unchanged.
fn check_channel_event(event: &str, channel: &str, data: &str, user_id: Option<&str>) {
    let msg = ServerMessage::ChannelEvent {
        event,
        channel,
        data,
        user_id,
        position: None,
    };
    let bytes = msg.encode();
    assert_eq!(&bytes[..], msg.to_json().as_bytes(), "encode != to_json");
    let v = frame(&bytes);
    assert_eq!(v["event"].as_str(), Some(event), "event did not round-trip");
    assert_eq!(v["channel"].as_str(), Some(channel), "channel did not round-trip");
    assert_eq!(data_str(&v), data, "data did not round-trip");
    match user_id {
        Some(uid) => assert_eq!(v["user_id"].as_str(), Some(uid), "user_id did not round-trip"),
        None => assert!(v.get("user_id").is_none(), "unexpected user_id: {v}"),
    }
}

fn check_channel_name(text: &str) {
    let Ok(name) = ChannelName::parse(text) else {
        return;
    };
    assert_eq!(name.as_str(), text);
    assert_eq!(name.to_string(), text);
    assert!(!text.is_empty() && text.len() <= vestnik_protocol::limits::MAX_CHANNEL_NAME_LEN);
    // Parsing is idempotent and agrees on kind and cache flag.
    let again = ChannelName::parse(name.as_str()).expect("a valid name must parse again");
    assert_eq!(again.kind(), name.kind());
    assert_eq!(again.is_cache(), name.is_cache());
    match name.kind() {
        ChannelKind::ServerToUser => {
            let uid = name
                .server_to_user_id()
                .expect("server-to-user channel has a user id");
            assert!(!uid.is_empty());
            assert_eq!(format!("{SERVER_TO_USER_PREFIX}{uid}"), text);
            let rebuilt = ChannelName::server_to_user(uid).expect("rebuild server-to-user name");
            assert_eq!(rebuilt, name);
        }
        ChannelKind::Private | ChannelKind::Encrypted => {
            assert!(text.starts_with("private-"));
            assert!(name.server_to_user_id().is_none());
        }
        ChannelKind::Presence => {
            assert!(text.starts_with("presence-"));
            assert!(name.server_to_user_id().is_none());
        }
        ChannelKind::Public => {
            assert!(!text.starts_with('#'), "a public channel name starts with #");
            assert!(name.server_to_user_id().is_none());
        }
    }
    // A valid name never needs escaping in JSON, but check the encoders anyway.
    let v = frame(&ServerMessage::SubscriptionSucceeded {
        channel: text,
        position: None,
        recovery: None,
    }.encode());
    assert_eq!(v["channel"].as_str(), Some(text));
}

fn check_socket_id(text: &str) {
    let Ok(id) = SocketId::parse(text) else {
        return;
    };
    let shown = id.to_string();
    assert_eq!(SocketId::parse(&shown), Ok(id), "socket id did not round-trip");
    // Every accepted id matches the SDKs' regex ^\d+\.\d+$.
    let (a, b) = text.split_once('.').expect("accepted socket id has a dot");
    assert!(!a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()), "{text:?}");
    assert!(!b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()), "{text:?}");
    let v = frame(
        &ServerMessage::ConnectionEstablished {
            socket_id: &shown,
            activity_timeout: 120,
        }
        .encode(),
    );
    let hs = inner(data_str(&v)).expect("handshake data is plain JSON");
    assert_eq!(hs["socket_id"].as_str(), Some(shown.as_str()));
}

/// Checks a parsed presence `channel_data` and encodes the messages that carry it.
fn check_presence(channel: &str, p: &PresenceData) {
    assert!(!p.user_id.is_empty());
    assert!(p.user_id.chars().count() <= vestnik_protocol::limits::MAX_USER_ID_LEN);
    assert!(p.user_info.as_ref().map_or(0, |i| i.get().len()) <= MAX_USER_INFO_BYTES);
    let member = MemberView {
        user_id: &p.user_id,
        user_info: p.user_info.as_deref(),
    };
    let v = frame(&ServerMessage::MemberAdded { channel, member }.encode());
    assert_eq!(v["channel"].as_str(), Some(channel));
    if let Some(inner) = inner(data_str(&v)) {
        assert_eq!(inner["user_id"].as_str(), Some(p.user_id.as_str()));
        match &p.user_info {
            Some(info) => {
                let want = self::inner(info.get()).expect("user_info parsed once, parses again");
                assert_eq!(inner["user_info"], want, "user_info did not round-trip");
            }
            None => assert!(inner.get("user_info").is_none()),
        }
    }

    let v = frame(
        &ServerMessage::MemberRemoved {
            channel,
            user_id: &p.user_id,
        }
        .encode(),
    );
    let removed = inner(data_str(&v)).expect("member_removed data is plain JSON");
    assert_eq!(removed["user_id"].as_str(), Some(p.user_id.as_str()));

    let members = [member, MemberView { user_id: "other", user_info: None }];
    let v = frame(
        &ServerMessage::PresenceSubscriptionSucceeded {
            channel,
            members: &members,
            position: None,
            recovery: None,
        }
        .encode(),
    );
    let roster = inner(data_str(&v)).expect("subscription_succeeded data is plain JSON");
    let presence = &roster["presence"];
    assert_eq!(presence["count"], 2);
    assert_eq!(presence["ids"][0].as_str(), Some(p.user_id.as_str()));
    assert!(presence["hash"].get(p.user_id.as_str()).is_some());
}

/// Checks a parsed sign-in `user_data` and encodes the messages that carry it.
fn check_user(raw: &str, u: &UserData) {
    assert!(!u.id.is_empty());
    assert!(u.user_info.as_ref().map_or(0, |i| i.get().len()) <= MAX_USER_INFO_BYTES);
    let v = frame(&ServerMessage::SigninSuccess { user_data: raw }.encode());
    assert_eq!(v["data"]["user_data"].as_str(), Some(raw), "user_data did not round-trip");
    let ids: Vec<&str> = u.watchlist.iter().map(String::as_str).collect();
    let v = frame(
        &ServerMessage::Watchlist {
            event: vestnik_protocol::message::WatchlistEvent::Online,
            user_ids: &ids,
        }
        .encode(),
    );
    let list = inner(data_str(&v)).expect("watchlist data is plain JSON");
    let got: Vec<&str> = list["events"][0]["user_ids"]
        .as_array()
        .expect("user_ids array")
        .iter()
        .map(|x| x.as_str().expect("user id string"))
        .collect();
    assert_eq!(got, ids);
    if let Ok(name) = ChannelName::server_to_user(&u.id) {
        assert_eq!(name.server_to_user_id(), Some(u.id.as_str()));
    }
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let text: &str = &text;

    check_channel_name(text);
    check_socket_id(text);
    if let Ok(p) = PresenceData::parse(text, MAX_USER_INFO_BYTES) {
        check_presence("presence-fuzz", &p);
    }
    if let Ok(u) = UserData::parse(text, MAX_USER_INFO_BYTES) {
        check_user(text, &u);
    }

    // Any string at all must survive the event encoder (data, event and channel are escaped).
    check_channel_event(text, text, text, Some(text));
    let _ = ServerMessage::Error {
        code: None,
        message: text,
    }
    .encode();

    let Ok(msg) = ClientMessage::parse(text) else {
        return;
    };
    match msg {
        ClientMessage::Ping | ClientMessage::Pong => {}
        ClientMessage::Subscribe(s) => {
            let channel = s.channel.as_str();
            check_channel_name(channel);
            assert_ne!(s.auth.as_deref(), Some(""), "empty auth must become None");
            if let Some(cd) = &s.channel_data {
                check_channel_event("pusher_internal:fuzz", channel, cd, None);
                if let Ok(p) = PresenceData::parse(cd, MAX_USER_INFO_BYTES) {
                    check_presence(channel, &p);
                }
            }
            if let Some(auth) = &s.auth {
                check_channel_event("pusher_internal:fuzz", channel, auth, None);
            }
        }
        ClientMessage::Unsubscribe { channel } => check_channel_name(channel.as_str()),
        ClientMessage::Signin { auth, user_data } => {
            check_channel_event("pusher:signin", "signin", &auth, None);
            if let Ok(u) = UserData::parse(&user_data, MAX_USER_INFO_BYTES) {
                check_user(&user_data, &u);
            }
        }
        ClientMessage::ClientEvent {
            event,
            channel,
            data,
        } => {
            assert!(event.starts_with("client-"));
            assert!(event.len() <= vestnik_protocol::limits::MAX_EVENT_NAME_LEN);
            check_channel_name(channel.as_str());
            check_channel_event(&event, channel.as_str(), &data, None);
            check_channel_event(&event, channel.as_str(), &data, Some("user-1"));
        }
    }
});
