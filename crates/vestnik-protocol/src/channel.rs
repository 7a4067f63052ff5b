//! Channel names: validated once at the edge, then trusted.
//!
//! A [`ChannelName`] can only be built through [`ChannelName::parse`], which checks the charset and the
//! length and works out the channel's kind from its prefix. The rest of the broker never looks at a
//! prefix again. This module must never allocate per lookup: names are cheap `Arc<str>` clones.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::limits::MAX_CHANNEL_NAME_LEN;

/// The prefix of the channel a signed-in user receives server-to-user events on.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What kind of channel a name denotes, from its prefix (Pusher channel docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// No prefix: anyone may subscribe.
    Public,
    /// `private-`: subscription needs a signature over `socket_id:channel`.
    Private,
    /// `private-encrypted-`: authorised like private; data is end-to-end encrypted and relayed untouched.
    Encrypted,
    /// `presence-`: authorised with `channel_data`; members are tracked.
    Presence,
    /// `#server-to-user-{id}`: only the socket signed in as that user may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Whether subscribing needs an `auth` signature.
    pub const fn needs_auth(self) -> bool {
        matches!(self, Self::Private | Self::Encrypted | Self::Presence)
    }

    /// Whether sockets may send client events on channels of this kind. Encrypted channels are excluded
    /// because Pusher's libraries cannot encrypt client events, so anything sent there is a mistake.
    pub const fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("channel name is longer than {MAX_CHANNEL_NAME_LEN} characters")]
    TooLong,
    /// The name holds a character outside `[A-Za-z0-9_\-=@,.;]`.
    #[error("channel name {0:?} contains characters outside [A-Za-z0-9_-=@,.;]")]
    InvalidCharacter(String),
    /// The name starts with a prefix but has nothing after it.
    #[error("channel name {0:?} has an empty name after its prefix")]
    EmptyAfterPrefix(String),
}

/// A validated channel name with its kind and cache flag.
///
/// Equality and hashing look at the name only, so a `ChannelName` can key a map and be looked up by
/// `&str`.
#[derive(Clone)]
pub struct ChannelName {
    /// Shared, not copied: one name is held by the registry, every subscription and every broker
    /// event, and cloning a `ChannelName` is a reference-count increment.
    name: Arc<str>,
    /// Worked out once from the prefix, so the hot paths never look at the string again.
    kind: ChannelKind,
    /// Whether the name carries a `cache-` form.
    cache: bool,
}

/// Pusher's channel-name charset, byte by byte: names are ASCII, so a multi-byte character is
/// refused without decoding.
fn valid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

impl ChannelName {
    /// Validates `name` and works out its kind.
    ///
    /// Accepts the Pusher charset `[A-Za-z0-9_\-=@,.;]`, at most [`MAX_CHANNEL_NAME_LEN`] bytes, and the
    /// one reserved form `#server-to-user-{id}`.
    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong);
        }
        let (body, server_to_user) = match name.strip_prefix(SERVER_TO_USER_PREFIX) {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        if !body.bytes().all(valid_char) {
            return Err(ChannelNameError::InvalidCharacter(name.to_owned()));
        }
        let (kind, cache, rest) = if server_to_user {
            (ChannelKind::ServerToUser, false, body)
        } else {
            classify(body)
        };
        if rest.is_empty() {
            return Err(ChannelNameError::EmptyAfterPrefix(name.to_owned()));
        }
        Ok(Self {
            name: Arc::from(name),
            kind,
            cache,
        })
    }

    /// The name as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Whether this is a cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
    /// `presence-cache-`), which replays its last event to new subscribers.
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// For `#server-to-user-{id}`, the user id; otherwise `None`.
    pub fn server_to_user_id(&self) -> Option<&str> {
        match self.kind {
            ChannelKind::ServerToUser => self.name.strip_prefix(SERVER_TO_USER_PREFIX),
            ChannelKind::Public
            | ChannelKind::Private
            | ChannelKind::Encrypted
            | ChannelKind::Presence => None,
        }
    }

    /// The `#server-to-user-{id}` channel of a user.
    pub fn server_to_user(user_id: &str) -> Result<Self, ChannelNameError> {
        Self::parse(&format!("{SERVER_TO_USER_PREFIX}{user_id}"))
    }
}

/// Splits a name into kind, cache flag and what follows the prefix. Longest prefixes first.
///
/// The order matters: `private-encrypted-` must be tried before `private-`, or an encrypted channel
/// would be taken for a private one named `encrypted-…` and its payloads sent in the clear.
fn classify(name: &str) -> (ChannelKind, bool, &str) {
    const PREFIXES: [(&str, ChannelKind, bool); 7] = [
        ("private-encrypted-cache-", ChannelKind::Encrypted, true),
        ("private-encrypted-", ChannelKind::Encrypted, false),
        ("private-cache-", ChannelKind::Private, true),
        ("private-", ChannelKind::Private, false),
        ("presence-cache-", ChannelKind::Presence, true),
        ("presence-", ChannelKind::Presence, false),
        ("cache-", ChannelKind::Public, true),
    ];
    for (prefix, kind, cache) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (kind, cache, rest);
        }
    }
    (ChannelKind::Public, false, name)
}

/// By name only: the kind and the cache flag follow from the name, so comparing them adds nothing.
impl PartialEq for ChannelName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ChannelName {}
/// Hashes exactly what `Borrow<str>` exposes, so a map keyed by `ChannelName` is found by `&str`.
impl Hash for ChannelName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}
impl Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.name
    }
}
impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}
impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix, including the longest-first cases, maps to its kind and cache flag.
    #[test]
    fn kinds_from_prefixes() {
        let cases = [
            ("orders", ChannelKind::Public, false),
            ("cache-orders", ChannelKind::Public, true),
            ("private-user-1", ChannelKind::Private, false),
            ("private-cache-x", ChannelKind::Private, true),
            ("private-encrypted-x", ChannelKind::Encrypted, false),
            ("private-encrypted-cache-x", ChannelKind::Encrypted, true),
            ("presence-room", ChannelKind::Presence, false),
            ("presence-cache-room", ChannelKind::Presence, true),
            ("#server-to-user-42", ChannelKind::ServerToUser, false),
        ];
        for (name, kind, cache) in cases {
            let c = ChannelName::parse(name).unwrap();
            assert_eq!(c.kind(), kind, "{name}");
            assert_eq!(c.is_cache(), cache, "{name}");
        }
    }

    /// The whole documented charset is accepted, so a name that works on Pusher works here.
    #[test]
    fn every_allowed_punctuation_is_accepted() {
        assert!(ChannelName::parse("-azAZ9_=@,.;").is_ok());
    }

    /// Each way a name is refused has its own error, and the error quotes the name, so a client
    /// sees which channel and why.
    #[test]
    fn refusals() {
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::parse(&"a".repeat(201)),
            Err(ChannelNameError::TooLong)
        );
        assert!(ChannelName::parse(&"a".repeat(200)).is_ok());
        for bad in ["a b", "a:b", "#x", "x#", "é", "a/b", "#server-to-user-a b"] {
            assert!(
                matches!(
                    ChannelName::parse(bad),
                    Err(ChannelNameError::InvalidCharacter(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            ChannelName::parse("private-"),
            Err(ChannelNameError::EmptyAfterPrefix(_))
        ));
        assert!(matches!(
            ChannelName::parse("#server-to-user-"),
            Err(ChannelNameError::EmptyAfterPrefix(_))
        ));
    }

    /// The reserved `#server-to-user-` form round-trips to its user id, and only that form has one.
    #[test]
    fn server_to_user_id() {
        let c = ChannelName::server_to_user("42").unwrap();
        assert_eq!(c.as_str(), "#server-to-user-42");
        assert_eq!(c.server_to_user_id(), Some("42"));
        assert_eq!(
            ChannelName::parse("private-a").unwrap().server_to_user_id(),
            None
        );
    }
}
