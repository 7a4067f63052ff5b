//! What nodes say to each other: one [`Envelope`] per adapter message, JSON-encoded once by the
//! sender. Payloads carry the event data as the string the publisher sent, so a receiving node
//! encodes each event once for all its local sockets, exactly as a local publish does.
//!
//! Relays (`Publish`, `ClientEvent`, `Terminate`) are numbered per origin, and every other
//! message carries the number of the last relay its sender sent before it (`Envelope::seq`), so a
//! receiver can tell when it missed relays and ask for them again (see `replay`).
//!
//! This module must never act on a message; it only defines and (de)serialises them.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use vestnik_protocol::ChannelName;

use crate::adapter::{Appended, NodeId};
use crate::broker::{LocalCached, LocalSnapshot};

/// One message on the backbone, with its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node.
    pub from: NodeId,
    /// For a relay, its number in the sender's relay sequence (from 1); for any other message,
    /// the number of the last relay the sender sent before it (0: none yet). A receiver whose
    /// last delivered relay from `from` is lower has missed some and asks for them.
    #[serde(default)]
    pub seq: u64,
    /// The lane a relay's `seq` counts in: absent for the all-nodes lane, the route shard for a
    /// channel event sent to the nodes listening to that shard (see `replay::Lane`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<u32>,
    /// What it says.
    pub msg: Msg,
}

/// A position from the history store, as relays carry it: `[epoch, offset]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePosition(pub String, pub u64);

impl WirePosition {
    /// The wire form of `p`.
    pub fn of(p: &Appended) -> Self {
        Self(p.epoch.to_string(), p.offset)
    }

    /// The position as the broker takes it.
    pub fn into_appended(self) -> Appended {
        Appended {
            epoch: std::sync::Arc::from(self.0),
            offset: self.1,
        }
    }
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

impl CacheEntry {
    /// The entry as the broker keeps it, once its channel name is checked.
    pub fn into_local(self, channel: ChannelName) -> LocalCached {
        LocalCached {
            app: self.app,
            channel,
            frame: Bytes::from(self.frame),
            data: self.data,
            ttl: Duration::from_millis(self.ttl_ms),
        }
    }
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
    /// Nothing but an answer: sent after this node's new route shard subscriptions, its round
    /// trip through every live node proves that their backbone servers know the interest (see
    /// `ClusterNode::reach_loop`).
    Ping,
}

/// A node's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Channel names with local subscription counts.
    Channels(Vec<(String, usize)>),
    /// A local subscription count (0 when the channel is not occupied there).
    Channel(usize),
    /// The answer to [`Query::Ping`].
    Pong,
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
        /// The positions the history store gave, one per channel in `channels` (`None` where a
        /// channel got none); empty when none got one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        positions: Vec<Option<WirePosition>>,
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
        /// The position the history store gave, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<WirePosition>,
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
    /// I am alive; these are my socket counts per app, and my message counts of the UTC day.
    Heartbeat {
        /// (app id, sockets) pairs.
        connections: Vec<(String, usize)>,
        /// The UTC day (Unix time of its midnight) `messages` counts; absent from older nodes.
        #[serde(default)]
        day: i64,
        /// (app id, messages the sender counted on `day`, of which in the usage ledger), for the
        /// daily message quota; absent from older nodes.
        #[serde(default)]
        messages: Vec<(String, u64, u64)>,
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
        /// The last relay number of each route-shard lane the sender used recently, so a node
        /// back from an outage sees the tail it missed on the lanes it listens to.
        #[serde(default)]
        lanes: Vec<(u32, u64)>,
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
    /// Please send me again your relays numbered above `after`: I missed some (I was
    /// reconnecting while you sent them).
    Resend {
        /// The last of your relays I delivered.
        after: u64,
        /// The lane they are in (absent: the all-nodes lane).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lane: Option<u32>,
    },
    /// Your relays up to `upto` (above the `after` you asked for) are older than my replay log
    /// keeps: count them as lost and go on after `upto`. The rest follows as the relays themselves.
    Missed {
        /// The last relay that cannot be sent again.
        upto: u64,
        /// The lane they are in (absent: the all-nodes lane).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lane: Option<u32>,
    },
}

impl Msg {
    /// The `Sync` that carries a node's whole state, from the broker's snapshot of it.
    pub fn sync_of(snapshot: LocalSnapshot, lanes: Vec<(u32, u64)>) -> Self {
        let LocalSnapshot {
            members,
            channels,
            cache,
        } = snapshot;
        let members = members
            .into_iter()
            .map(|m| SyncMember {
                app: m.app,
                channel: m.channel.to_string(),
                user_id: m.user_id,
                info: m.info,
            })
            .collect();
        let channels = channels
            .into_iter()
            .map(|(app, channel)| (app, channel.to_string()))
            .collect();
        let cache = cache
            .into_iter()
            .map(|c| CacheEntry {
                app: c.app,
                channel: c.channel.to_string(),
                frame: String::from_utf8_lossy(&c.frame).into_owned(),
                data: c.data,
                ttl_ms: u64::try_from(c.ttl.as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        Msg::Sync {
            members,
            channels,
            cache,
            lanes,
        }
    }

    /// Whether this is a relay: a message every node acts on for its sockets, numbered per origin
    /// so that none is missed, repeated or reordered across a backbone restart.
    pub fn is_relay(&self) -> bool {
        match self {
            Msg::Publish { .. } | Msg::ClientEvent { .. } | Msg::Terminate { .. } => true,
            Msg::MemberJoined(_)
            | Msg::MemberLeft { .. }
            | Msg::Heartbeat { .. }
            | Msg::Hello
            | Msg::Sync { .. }
            | Msg::Occupied { .. }
            | Msg::Vacated { .. }
            | Msg::Draining
            | Msg::Leaving
            | Msg::Query { .. }
            | Msg::Reply { .. }
            | Msg::Resend { .. }
            | Msg::Missed { .. } => false,
        }
    }
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
            seq: 3,
            lane: None,
            msg: Msg::MemberJoined(SyncMember {
                app: "a".into(),
                channel: "presence-x".into(),
                user_id: "1".into(),
                info: Some(r#"{"name":"A"}"#.into()),
            }),
        };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        assert_eq!(Envelope::decode(b"nope"), None);
        // A node from before numbering sends no `seq`: it reads as 0.
        let old = br#"{"from":1,"msg":"Hello"}"#;
        assert_eq!(Envelope::decode(old).map(|e| e.seq), Some(0));
        // A shard relay names its lane; an all-nodes message leaves it out, as before.
        let routed = Envelope {
            from: 1,
            seq: 9,
            lane: Some(12),
            msg: Msg::Resend {
                after: 4,
                lane: Some(12),
            },
        };
        assert_eq!(Envelope::decode(&routed.encode()), Some(routed));
        let plain = Envelope {
            from: 1,
            seq: 2,
            lane: None,
            msg: Msg::Hello,
        };
        assert!(!String::from_utf8_lossy(&plain.encode()).contains("lane"));
    }

    /// A heartbeat from a node that counts no messages (an older build) still decodes, with no
    /// day and no message counts; a current one carries them.
    #[test]
    fn heartbeats_with_and_without_message_counts() {
        let old = br#"{"from":1,"msg":{"Heartbeat":{"connections":[["a",2]]}}}"#;
        let msg = Envelope::decode(old).map(|e| e.msg);
        assert_eq!(
            msg,
            Some(Msg::Heartbeat {
                connections: vec![("a".into(), 2)],
                day: 0,
                messages: Vec::new(),
            })
        );
        let now = Envelope {
            from: 2,
            seq: 0,
            lane: None,
            msg: Msg::Heartbeat {
                connections: Vec::new(),
                day: 86_400,
                messages: vec![("a".into(), 7, 5)],
            },
        };
        assert_eq!(Envelope::decode(&now.encode()), Some(now));
    }
}
