//! Users: sign-in, the watchlist (who is online among the users a socket watches), and closing
//! every socket of a user.
//!
//! A user is online from its first signed-in socket to its last; watchers hear of both moments. The
//! user and watcher indexes are sharded maps; a user's shard lock is held from "last socket gone" to
//! "offline announced", so no sign-in slips in between. This module must never touch channels: a
//! user's channel memberships are the channel module's.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use vestnik_protocol::auth::verify_user;
use vestnik_protocol::limits::MAX_WATCHLIST;
use vestnik_protocol::message::{UserData, WatchlistEvent};
use vestnik_protocol::{PusherCode, ServerMessage, SocketId};

use super::{AppRuntime, Broker};
use crate::app::App;
use crate::connection::{Connection, ConnectionHandle, SignedInUser};
use crate::error::SigninError;

impl Broker {
    /// Signs a socket in as a user, replies `signin_success`, reports the watchlist's current state and
    /// tells the user's watchers that the user came online.
    pub fn signin(
        &self,
        conn: &ConnectionHandle,
        auth: &str,
        user_data: &str,
    ) -> Result<(), SigninError> {
        let app = conn.app().clone();
        // The secrets of the app as served now: a rotation after this socket connected applies.
        let current = self.current_app(&app);
        let socket_id = conn.socket_id().to_string();
        current.verify_with(|secret| verify_user(&app.key, secret, &socket_id, user_data, auth))?;
        // The user's info becomes a presence member's when it joins without channel_data, so it
        // is bounded here by the same limit as channel_data's.
        let data = UserData::parse(user_data, app.max_user_info_bytes)?;
        let mut st = conn.state.lock();
        if let Some(existing) = &st.user {
            if *existing.id != *data.id {
                return Err(SigninError::AlreadySignedIn);
            }
            drop(st);
            conn.send(ServerMessage::SigninSuccess { user_data }.encode());
            return Ok(());
        }
        let id: Arc<str> = Arc::from(data.id.as_str());
        // Distinct ids (UserData::parse keeps the first of each), so the limit counts users and
        // each watched user's change reaches this socket once.
        let mut ids = data.watchlist;
        let over_limit = ids.len() > MAX_WATCHLIST;
        ids.truncate(MAX_WATCHLIST);
        let watchlist: Vec<Arc<str>> = if app.watchlist {
            ids.iter().map(|s| Arc::from(s.as_str())).collect()
        } else {
            Vec::new()
        };
        st.user = Some(Box::new(SignedInUser {
            id: id.clone(),
            watchlist: watchlist.clone(),
            info: data.user_info,
        }));
        drop(st);
        // The socket is indexed under its user before `signin_success` goes out: a backend that
        // terminates the user as soon as the client reports the sign-in must find the socket (the
        // success can reach the client before this thread's next instruction).
        let rt = self.runtime(&app);
        {
            let mut sockets = rt.users.entry(id.clone()).or_default();
            sockets.push(conn.clone());
            if sockets.len() == 1 {
                notify_watchers(&rt, &id, WatchlistEvent::Online);
            }
        }
        conn.send(ServerMessage::SigninSuccess { user_data }.encode());
        if over_limit && app.watchlist {
            conn.send(
                ServerMessage::Error {
                    code: Some(PusherCode::WatchlistLimit),
                    message: "Watchlist limit exceeded; only the first 100 user ids are watched",
                }
                .encode(),
            );
        }
        watch(&rt, conn, &watchlist);
        Ok(())
    }

    /// Closes every socket signed in as `user_id` with 4009, on every node. Returns how many were on
    /// this node.
    pub fn terminate_user(&self, app: &App, user_id: &str) -> usize {
        if let Some(hook) = self.hook() {
            hook.terminate(app, user_id);
        }
        self.terminate_local(app, user_id)
    }

    /// Closes this node's sockets signed in as `user_id`; the cluster layer calls it for a
    /// terminate that came from another node.
    pub(crate) fn terminate_local(&self, app: &App, user_id: &str) -> usize {
        let rt = self.runtime(app);
        let sockets: Vec<ConnectionHandle> =
            rt.users.get(user_id).map(|v| v.clone()).unwrap_or_default();
        for conn in &sockets {
            conn.send_error_and_close(PusherCode::Unauthorized, "You got disconnected by the app.");
        }
        sockets.len()
    }
}

/// A freshly signed-in socket starts watching `watchlist`: it is indexed as a watcher of each id
/// and told at once which of them are online and which offline.
fn watch(rt: &AppRuntime, conn: &ConnectionHandle, watchlist: &[Arc<str>]) {
    if watchlist.is_empty() {
        return;
    }
    for watched in watchlist {
        rt.watchers
            .entry(watched.clone())
            .or_default()
            .push(conn.clone());
    }
    let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
        .iter()
        .map(|w| &**w)
        .partition(|w| rt.users.contains_key(*w));
    for (event, ids) in [
        (WatchlistEvent::Online, online),
        (WatchlistEvent::Offline, offline),
    ] {
        if !ids.is_empty() {
            conn.send(
                ServerMessage::Watchlist {
                    event,
                    user_ids: &ids,
                }
                .encode(),
            );
        }
    }
}

/// Tells every watcher of `user_id` that it came online or went offline.
fn notify_watchers(rt: &AppRuntime, user_id: &str, event: WatchlistEvent) {
    let Some(watchers) = rt.watchers.get(user_id) else {
        return;
    };
    let frame: Bytes = ServerMessage::Watchlist {
        event,
        user_ids: &[user_id],
    }
    .encode();
    for w in watchers.iter() {
        w.send_shared(&frame);
    }
}

/// Forgets one signed-in socket of a user; the user goes offline with its last socket.
pub(super) fn remove_user_socket(rt: &AppRuntime, conn: &Connection, user_id: &Arc<str>) {
    let Some(mut sockets) = rt.users.get_mut(user_id) else {
        return;
    };
    sockets.retain(|c| c.socket_id() != conn.socket_id());
    if !sockets.is_empty() {
        return;
    }
    // Still under the user's shard lock, so no sign-in can slip in between "last socket gone" and
    // "offline announced".
    notify_watchers(rt, user_id, WatchlistEvent::Offline);
    drop(sockets);
    rt.users.remove_if(user_id, |_, v| v.is_empty());
}

/// Removes `socket` from the list under `key`, and the list once it is empty.
pub(super) fn remove_from_list(
    map: &DashMap<Arc<str>, Vec<ConnectionHandle>>,
    key: &str,
    socket: SocketId,
) {
    let empty = match map.get_mut(key) {
        Some(mut list) => {
            list.retain(|c| c.socket_id() != socket);
            list.is_empty()
        }
        None => false,
    };
    if empty {
        map.remove_if(key, |_, v| v.is_empty());
    }
}
