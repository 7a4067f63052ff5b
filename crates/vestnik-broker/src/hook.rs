//! [`ClusterHook`]: what the broker tells the rest of the cluster and asks of it, in the broker's own
//! words.
//!
//! The broker calls the hook at the moments that matter to other nodes (an API event, a client
//! event, a channel's first or last subscriber here, a user's first or last socket here, a
//! terminate) and asks it what one node cannot know alone (members, subscribers and sockets
//! elsewhere). The cluster layer ([`crate::cluster`]) implements it over an adapter; centrifuge's
//! `Broker` interface under its `Node` is the model. A one-node broker holds no hook and takes none
//! of these branches.
//!
//! This module must never name a cluster wire message, and an implementation must never block or
//! await on the synchronous methods: they run on the publish and subscribe paths, some under a
//! channel's shard lock (the hook's own locks come after it in the lock order).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::value::RawValue;
use vestnik_protocol::{ChannelName, SocketId};

use crate::adapter::{Appended, HistoryStore};
use crate::app::App;
use crate::broker::PublishEvent;

/// Members of a presence channel on other nodes: user id and user info.
pub type RemoteMembers = Vec<(Arc<str>, Option<Box<RawValue>>)>;

/// The future of a cluster-wide question; it resolves within the cluster's query timeout.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A client event as it is relayed to the other nodes.
#[derive(Debug, Clone, Copy)]
pub struct RelayedClientEvent<'a> {
    /// The channel.
    pub channel: &'a ChannelName,
    /// The event name.
    pub event: &'a str,
    /// The data string, forwarded verbatim.
    pub data: &'a str,
    /// The sender, never sent its own event back.
    pub socket_id: SocketId,
    /// The sender's user id on presence channels.
    pub user_id: Option<&'a str>,
}

/// The cluster as the broker sees it. Every method is cheap and non-blocking except the two
/// queries, which the broker awaits only from the HTTP API's channel queries.
pub trait ClusterHook: Send + Sync + 'static {
    /// An API event was published here: the other nodes fan it out to their sockets, at the
    /// positions the history store gave it (one per channel, `None` where it got none; empty
    /// for none at all).
    fn published(&self, app: &App, event: &PublishEvent<'_>, positions: &[Option<Appended>]);

    /// A socket here sent a client event: the other nodes fan it out to their sockets, at
    /// `position` if the history store gave it one.
    fn client_event(&self, app: &App, event: &RelayedClientEvent<'_>, position: Option<&Appended>);

    /// The backbone's history store, when positions and history are cluster-wide.
    fn history_store(&self) -> Option<&Arc<dyn HistoryStore>> {
        None
    }

    /// Every socket signed in as `user_id` is to be closed, on every node.
    fn terminate(&self, app: &App, user_id: &str);

    /// The channel got its first subscriber on this node. Returns whether another node had one
    /// already (then the channel was occupied before, and `channel_occupied` is not reported).
    fn occupied(&self, app: &App, channel: &ChannelName) -> bool;

    /// The channel lost its last subscriber on this node. Returns whether another node still has one
    /// (then the channel stays occupied, and `channel_vacated` is not reported).
    fn vacated(&self, app: &App, channel: &ChannelName) -> bool;

    /// A socket is about to subscribe to `channel`: what to await first so that an event
    /// published after its `subscription_succeeded` reaches this node (interest routing: the
    /// backbone confirmed the channel's route shard). `None`: nothing to wait for. Never blocks;
    /// the future resolves within a bounded time.
    fn subscribe_ready(&self, app: &App, channel: &ChannelName) -> Option<HookFuture<'static, ()>> {
        let _ = (app, channel);
        None
    }

    /// A user's first socket on this node joined a presence channel.
    fn member_joined(
        &self,
        app: &App,
        channel: &ChannelName,
        user_id: &str,
        info: Option<&RawValue>,
    );

    /// A user's last socket on this node left a presence channel.
    fn member_left(&self, app: &App, channel: &ChannelName, user_id: &str);

    /// The members of a presence channel on other nodes.
    fn remote_members(&self, app: &App, channel: &str) -> RemoteMembers;

    /// Whether another node has `user_id` in the presence channel.
    fn has_remote_member(&self, app: &App, channel: &str, user_id: &str) -> bool;

    /// Sockets of `app` on other nodes, for the app's connection quota.
    fn remote_sockets(&self, app: &App) -> usize;

    /// The channel's subscription count summed over the other nodes that answer in time.
    fn remote_subscriptions<'a>(
        &'a self,
        app: &'a App,
        channel: &'a ChannelName,
    ) -> HookFuture<'a, usize>;

    /// Occupied channels with `prefix` on the other nodes that answer in time, with their summed
    /// subscription counts (a channel may appear more than once; the caller adds them up).
    fn remote_channels<'a>(
        &'a self,
        app: &'a App,
        prefix: &'a str,
    ) -> HookFuture<'a, Vec<(String, usize)>>;
}
