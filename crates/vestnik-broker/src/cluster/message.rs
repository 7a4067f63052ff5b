//! What nodes say to each other: one [`Envelope`] per adapter message, JSON-encoded once by the
//! sender. Payloads carry the event data as the string the publisher sent, so a receiving node
//! encodes each event once for all its local sockets, exactly as a local publish does.
//!
//! This module must never act on a message; it only defines and (de)serialises them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::adapter::NodeId;

/// One message on the backbone, with its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node.
    pub from: NodeId,
    /// What it says.
    pub msg: Msg,
}

/// A presence member as replicated between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncMember {
    /// App id.
    pub app: String,
    /// Presence channel.
    pub channel: String,
    /// User id.
    pub user_id: String,
    /// User info as raw JSON text.
    pub info: Option<String>,
}

/// A cache channel's last event, as one node hands it to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// App id.
    pub app: String,
    /// Cache channel.
    pub channel: String,
    /// The encoded frame, replayed as is.
    pub frame: String,
    /// The data string, for `info=cache`.
    pub data: String,
    /// Milliseconds it has left to live.
    pub ttl_ms: u64,
}

/// A question one node asks all others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Query {
    /// Occupied channels of an app with a prefix, and their local subscription counts.
    Channels {
        /// App id.
        app: String,
        /// Name prefix.
        prefix: String,
    },
    /// One channel's local subscription count.
    Channel {
        /// App id.
        app: String,
        /// Channel name.
        channel: String,
    },
}

/// A node's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Channel names with local subscription counts.
    Channels(Vec<(String, usize)>),
    /// A local subscription count (0 when the channel is not occupied there).
    Channel(usize),
}

/// The messages of the cluster protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// An API event to fan out locally (and cache on cache channels).
    Publish {
        /// App id.
        app: String,
        /// Channel names.
        channels: Vec<String>,
        /// Event name.
        name: String,
        /// Data string.
        data: String,
        /// Socket id to leave out.
        except: Option<String>,
    },
    /// A client event to fan out locally, never to its sender.
    ClientEvent {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// Event name.
        event: String,
        /// Data string.
        data: String,
        /// The sender's socket id.
        except: String,
        /// The sender's user id on presence channels.
        user_id: Option<String>,
    },
    /// Close every local socket signed in as this user.
    Terminate {
        /// App id.
        app: String,
        /// User id.
        user_id: String,
    },
    /// The sender's first socket of a user joined a presence channel.
    MemberJoined(SyncMember),
    /// The sender's last socket of a user left a presence channel.
    MemberLeft {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// User id.
        user_id: String,
    },
    /// I am alive; these are my socket counts per app.
    Heartbeat {
        /// (app id, sockets) pairs.
        connections: Vec<(String, usize)>,
    },
    /// I just (re)connected: send me your state.
    Hello,
    /// My whole state, replacing what you knew of me.
    Sync {
        /// Every member whose socket is on the sender.
        members: Vec<SyncMember>,
        /// Every (app, channel) with a subscriber on the sender.
        #[serde(default)]
        channels: Vec<(String, String)>,
        /// The sender's cache-channel events, so a node that starts late can replay them too.
        #[serde(default)]
        cache: Vec<CacheEntry>,
    },
    /// The sender got its first subscriber on a channel.
    Occupied {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
    },
    /// The sender lost its last subscriber on a channel.
    Vacated {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
    },
    /// I am draining (lame duck): my sockets are being closed and will reconnect elsewhere, so do not
    /// count them against app quotas any more. `Leaving` follows once the drain is over.
    Draining,
    /// I am shutting down: forget me now rather than after the heartbeat timeout.
    Leaving,
    /// Please answer this query to me.
    Query {
        /// Correlation id.
        id: u64,
        /// The question.
        query: Query,
    },
    /// The answer to query `id`.
    Reply {
        /// Correlation id.
        id: u64,
        /// The answer.
        answer: Answer,
    },
}

impl Envelope {
    /// Encodes the envelope once, for the adapter.
    pub fn encode(&self) -> Bytes {
        // Serialising plain data (strings, numbers, vectors) into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(self).expect("cluster messages are plain data"))
    }

    /// Decodes an envelope; `None` for anything malformed (logged by the caller).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Envelope {
            from: 7,
            msg: Msg::MemberJoined(SyncMember {
                app: "a".into(),
                channel: "presence-x".into(),
                user_id: "1".into(),
                info: Some(r#"{"name":"A"}"#.into()),
            }),
        };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        assert_eq!(Envelope::decode(b"nope"), None);
    }
}
