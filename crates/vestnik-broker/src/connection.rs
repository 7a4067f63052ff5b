//! The core's view of a socket: a [`ConnectionHandle`] with its id, app, state and [`Outbox`]
//! (see [`crate::outbox`]), through which the core talks to the socket. This module must never do IO
//! and never hold its lock across an `.await`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use vestnik_protocol::{ChannelName, PusherCode, SocketId};

use crate::app::App;
pub use crate::outbox::{CloseRequest, DirectWrite, Drained, Outbox, PushError, Pushed, Sent};

/// A signed-in user on a socket.
#[derive(Debug, Clone)]
pub struct SignedInUser {
    /// The user id from `user_data`.
    pub id: Arc<str>,
    /// Users this socket watches.
    pub watchlist: Vec<Arc<str>>,
    /// The user's info, shared in presence channels joined without `channel_data`.
    pub info: Option<Box<serde_json::value::RawValue>>,
}

/// Token bucket for client events.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            tokens: f64::from(per_second),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available. The bucket holds one second's worth.
    pub(crate) fn try_take(&mut self, per_second: u32, now: Instant) -> bool {
        let rate = f64::from(per_second);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Mutable state of a socket, guarded by one lock that is never held while a registry lock is taken
/// by someone else first (see docs/architecture.md for the lock order).
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// Channels joined, with the presence user id for presence channels.
    pub(crate) channels: SocketChannels,
    /// The signed-in user, if any.
    pub(crate) user: Option<Box<SignedInUser>>,
    /// Client event limiter, created on the first client event.
    pub(crate) rate: Option<Box<RateLimiter>>,
    /// Set once the broker has removed the socket everywhere.
    pub(crate) disconnected: bool,
}

/// One socket as the core sees it.
#[derive(Debug)]
pub struct Connection {
    socket_id: SocketId,
    app: Arc<App>,
    outbox: Outbox,
    pub(crate) state: Mutex<ConnectionState>,
}

/// A shared handle on a socket: cheap to clone, held by every channel the socket joined.
pub type ConnectionHandle = Arc<Connection>;

impl Connection {
    pub(crate) fn new(socket_id: SocketId, app: Arc<App>, outbox_capacity: usize) -> Self {
        Self {
            socket_id,
            app,
            outbox: Outbox::new(outbox_capacity),
            state: Mutex::new(ConnectionState {
                channels: SocketChannels::default(),
                user: None,
                rate: None,
                disconnected: false,
            }),
        }
    }

    /// The socket's id.
    pub fn socket_id(&self) -> SocketId {
        self.socket_id
    }

    /// The app the socket belongs to.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The socket's outbound queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The signed-in user's id, if the socket signed in.
    pub fn user_id(&self) -> Option<Arc<str>> {
        self.state.lock().user.as_ref().map(|u| u.id.clone())
    }

    /// Number of channels joined.
    pub fn channel_count(&self) -> usize {
        self.state.lock().channels.len()
    }

    /// Queues a frame for this socket; a full queue closes it (see [`Outbox::push`]).
    pub fn send(&self, frame: Bytes) {
        // A refused push has already asked the writer to close the socket; nothing more to do here.
        let _ = self.outbox.push(frame);
    }

    /// Queues a frame shared with other sockets (a fan-out's), cloning it only if it has to wait.
    pub fn send_shared(&self, frame: &Bytes) {
        let _ = self.outbox.push_shared(frame);
    }

    /// Sends `pusher:error` with `code` and `message`, then closes the socket with the same code.
    pub fn send_error_and_close(&self, code: PusherCode, message: &str) {
        self.send(
            vestnik_protocol::ServerMessage::Error {
                code: Some(code),
                message,
            }
            .encode(),
        );
        self.outbox.close(code, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_refills() {
        let start = Instant::now();
        let mut r = RateLimiter {
            tokens: 2.0,
            last: start,
        };
        assert!(r.try_take(2, start));
        assert!(r.try_take(2, start));
        assert!(!r.try_take(2, start));
        assert!(r.try_take(2, start + std::time::Duration::from_millis(600)));
    }
}

/// The channels a socket has joined, each with the presence user id it joined as. A socket joins
/// few channels (100 at most by default), so they are kept in a small vector, searched in order:
/// one allocation of 40 bytes for a socket's one channel rather than a hash table's 180. Past
/// [`SocketChannels::FEW`] (an app whose cap is raised or off) it becomes a hash map, so joining
/// stays O(1).
#[derive(Debug)]
pub(crate) enum SocketChannels {
    /// Up to `FEW` channels, in the order joined.
    Few(Vec<(ChannelName, Option<Arc<str>>)>),
    /// More.
    Many(HashMap<ChannelName, Option<Arc<str>>>),
}

impl Default for SocketChannels {
    fn default() -> Self {
        SocketChannels::Few(Vec::new())
    }
}

impl SocketChannels {
    /// Above this many channels the vector becomes a hash map.
    const FEW: usize = 32;

    /// Whether the socket has joined `channel`.
    pub(crate) fn contains_key(&self, channel: &ChannelName) -> bool {
        match self {
            SocketChannels::Few(v) => v.iter().any(|(c, _)| c == channel),
            SocketChannels::Many(m) => m.contains_key(channel),
        }
    }

    /// The user `channel` was joined as (`Some(None)` for a channel without members), or `None`
    /// when the socket has not joined it.
    pub(crate) fn get(&self, channel: &ChannelName) -> Option<&Option<Arc<str>>> {
        match self {
            SocketChannels::Few(v) => v.iter().find(|(c, _)| c == channel).map(|(_, u)| u),
            SocketChannels::Many(m) => m.get(channel),
        }
    }

    /// How many channels the socket has joined.
    pub(crate) fn len(&self) -> usize {
        match self {
            SocketChannels::Few(v) => v.len(),
            SocketChannels::Many(m) => m.len(),
        }
    }

    /// Records `channel` as joined (as `user`), replacing an earlier record of it.
    pub(crate) fn insert(&mut self, channel: ChannelName, user: Option<Arc<str>>) {
        match self {
            SocketChannels::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(c, _)| *c == channel) {
                    slot.1 = user;
                } else if v.len() < Self::FEW {
                    // Most sockets join one channel: the first allocation is for one (a plain
                    // push would make room for four), and growth doubles from there.
                    if v.capacity() == 0 {
                        v.reserve_exact(1);
                    }
                    v.push((channel, user));
                } else {
                    let mut m: HashMap<_, _> = v.drain(..).collect();
                    m.insert(channel, user);
                    *self = SocketChannels::Many(m);
                }
            }
            SocketChannels::Many(m) => {
                m.insert(channel, user);
            }
        }
    }

    /// Forgets `channel`; returns the user it was joined as, if it was joined.
    pub(crate) fn remove(&mut self, channel: &ChannelName) -> Option<Option<Arc<str>>> {
        match self {
            SocketChannels::Few(v) => {
                let i = v.iter().position(|(c, _)| c == channel)?;
                let (_, user) = v.swap_remove(i);
                if v.is_empty() {
                    // An idle socket that left its channels keeps no allocation.
                    *v = Vec::new();
                }
                Some(user)
            }
            SocketChannels::Many(m) => m.remove(channel),
        }
    }

    /// The channels joined.
    pub(crate) fn names(&self) -> Vec<ChannelName> {
        match self {
            SocketChannels::Few(v) => v.iter().map(|(c, _)| c.clone()).collect(),
            SocketChannels::Many(m) => m.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod socket_channels_tests {
    use super::*;

    fn name(i: usize) -> ChannelName {
        ChannelName::parse(&format!("ch-{i}")).unwrap()
    }

    #[test]
    fn joins_and_leaves_across_the_switch_to_a_map() {
        let mut c = SocketChannels::default();
        for i in 0..50 {
            c.insert(name(i), (i % 2 == 0).then(|| Arc::from("u")));
            c.insert(name(i), (i % 2 == 0).then(|| Arc::from("u")));
            assert_eq!(c.len(), i + 1);
        }
        assert!(matches!(c, SocketChannels::Many(_)));
        assert!(c.contains_key(&name(49)) && !c.contains_key(&name(50)));
        assert_eq!(c.remove(&name(2)), Some(Some(Arc::from("u"))));
        assert_eq!(c.remove(&name(3)), Some(None));
        assert_eq!(c.remove(&name(3)), None);
        assert_eq!(c.names().len(), 48);

        let mut few = SocketChannels::default();
        few.insert(name(1), None);
        few.insert(name(2), None);
        assert_eq!(few.remove(&name(1)), Some(None));
        assert_eq!(few.names(), vec![name(2)]);
        assert_eq!(few.remove(&name(2)), Some(None));
        assert!(matches!(&few, SocketChannels::Few(v) if v.capacity() == 0));
    }
}
