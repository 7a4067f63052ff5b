//! Channel authorisation and user sign-in: what an app's auth endpoint answers to pusher-js.
//!
//! Only the string to sign is built here; the HMAC is `vestnik_protocol::auth`'s. Every function
//! checks the socket id and channel name first, so an endpoint that passes user input along gets a
//! typed refusal instead of a signature the broker would reject later. This module never decides
//! who may join what: that is the application's rule, checked before it calls these.

use serde::Serialize;
use serde_json::Value;
use vestnik_protocol::auth::{sign_channel, sign_user};
use vestnik_protocol::{ChannelKind, ChannelName, SocketId};

use crate::Error;

/// One presence member: the `channel_data` of a presence subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceMember {
    /// The member's id, unique in the channel.
    pub user_id: String,
    /// Whatever the other members should see (name, avatar…); may be omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Value>,
}

/// The JSON an auth endpoint answers for a channel: `{"auth": "key:sig"}`, plus `channel_data` for
/// presence channels (the exact string that was signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAuth {
    /// `key:hex-signature`.
    pub auth: String,
    /// The signed member data, for presence channels only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// The JSON a user-authentication endpoint answers: `{"auth", "user_data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAuth {
    /// `key:hex-signature`.
    pub auth: String,
    /// The signed user data, as a JSON string.
    pub user_data: String,
}

/// Signs a subscription to a private or presence channel for `socket_id`.
///
/// Presence channels need `member`; other channels refuse one. Public channels need no
/// authorisation, so asking for one is an error too (it hides a mistake in the caller).
pub fn authorize_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    member: Option<&PresenceMember>,
) -> Result<ChannelAuth, Error> {
    SocketId::parse(socket_id)?;
    let name = ChannelName::parse(channel)?;
    let channel_data = match (name.kind(), member) {
        (ChannelKind::Presence, Some(m)) => Some(serde_json::to_string(m)?),
        (ChannelKind::Presence, None) => {
            return Err(Error::PresenceData(
                "presence channels need the member's user_id",
            ))
        }
        (ChannelKind::Private | ChannelKind::Encrypted, None) => None,
        (ChannelKind::Private | ChannelKind::Encrypted, Some(_)) => {
            return Err(Error::PresenceData(
                "only presence channels take member data",
            ))
        }
        (ChannelKind::Public | ChannelKind::ServerToUser, _) => {
            return Err(Error::PresenceData(
                "only private and presence channels are authorised",
            ))
        }
    };
    let auth = sign_channel(key, secret, socket_id, channel, channel_data.as_deref());
    Ok(ChannelAuth { auth, channel_data })
}

/// Signs a user sign-in (`pusher.signin()`) for `socket_id`. `user` must be an object with a
/// non-empty string `id` (Pusher's user-authentication docs).
pub fn authenticate_user(
    key: &str,
    secret: &str,
    socket_id: &str,
    user: &Value,
) -> Result<UserAuth, Error> {
    SocketId::parse(socket_id)?;
    match user.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => {}
        _ => return Err(Error::PresenceData("user data needs a non-empty string id")),
    }
    let user_data = serde_json::to_string(user)?;
    let auth = sign_user(key, secret, socket_id, &user_data);
    Ok(UserAuth { auth, user_data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Pusher's documentation vectors (key 278d425bdf160c739803, secret 7ad3773142a6692b25b8).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    /// The reference vector from Pusher's auth docs: a private channel signature must match it
    /// exactly.
    #[test]
    fn private_channel_matches_the_docs() {
        let a = authorize_channel(KEY, SECRET, "1234.1234", "private-foobar", None).unwrap();
        assert_eq!(
            a.auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"auth": a.auth.clone()})
        );
    }

    /// The signature covers `channel_data` as sent, so the string signed and the string returned
    /// must be the same bytes; re-encoding it would break pusher-js's subscribe.
    #[test]
    fn presence_channel_signs_the_exact_channel_data() {
        let m = PresenceMember {
            user_id: "10".into(),
            user_info: Some(json!({"name": "Mr. Pusher"})),
        };
        let a = authorize_channel(KEY, SECRET, "1234.1234", "presence-foobar", Some(&m)).unwrap();
        let cd = a.channel_data.clone().unwrap();
        assert_eq!(cd, r#"{"user_id":"10","user_info":{"name":"Mr. Pusher"}}"#);
        assert!(vestnik_protocol::auth::verify_channel(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(&cd),
            &a.auth
        )
        .is_ok());
    }

    /// The user-authentication reference vector, for `pusher:signin`.
    #[test]
    fn user_sign_in_matches_the_docs() {
        let u = authenticate_user(KEY, SECRET, "1234.1234", &json!({"id": "12345"})).unwrap();
        assert_eq!(u.user_data, r#"{"id":"12345"}"#);
        assert!(u
            .auth
            .ends_with("4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"));
    }

    /// Refused locally with a typed error, before anything is signed: a malformed socket id, an
    /// invalid channel name, a presence channel without member data (or member data for another
    /// kind), a user without an `id`.
    #[test]
    fn refusals() {
        assert!(matches!(
            authorize_channel(KEY, SECRET, "12341234", "private-a", None),
            Err(Error::SocketId(_))
        ));
        assert!(matches!(
            authorize_channel(KEY, SECRET, "1.1", "private-a b", None),
            Err(Error::Channel(_))
        ));
        assert!(matches!(
            authorize_channel(KEY, SECRET, "1.1", "presence-a", None),
            Err(Error::PresenceData(_))
        ));
        assert!(matches!(
            authorize_channel(KEY, SECRET, "1.1", "public-a", None),
            Err(Error::PresenceData(_))
        ));
        assert!(matches!(
            authenticate_user(KEY, SECRET, "1.1", &json!({"name": "x"})),
            Err(Error::PresenceData(_))
        ));
    }
}
