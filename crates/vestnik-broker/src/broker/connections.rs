//! Admitting sockets and forgetting them: the node's cap, the app's cluster-wide quota, and the
//! clean-up of every channel, roster and user index a socket was in.
//!
//! This module must never send a frame of its own: departures are announced by the channel and user
//! steps it calls.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vestnik_protocol::{ChannelName, SocketId};

use super::channels::leave;
use super::users::{remove_from_list, remove_user_socket};
use super::Broker;
use crate::app::App;
use crate::connection::{Connection, ConnectionHandle};
use crate::error::ConnectError;

impl Broker {
    /// Admits a new socket for `app`, or says which code to close it with.
    pub fn connect(&self, app: Arc<App>) -> Result<ConnectionHandle, ConnectError> {
        if !app.enabled {
            return Err(ConnectError::AppDisabled);
        }
        let node = &self.inner.connections;
        let cap = self.inner.config.max_connections;
        if node.fetch_add(1, Ordering::AcqRel) >= cap && cap > 0 {
            node.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectError::OverCapacity);
        }
        let rt = self.runtime(&app);
        // The quota counts the whole cluster: other nodes' sockets come from their heartbeats.
        let remote = match (app.max_connections, self.hook()) {
            (0, _) | (_, None) => 0,
            (_, Some(hook)) => hook.remote_sockets(&app),
        };
        let here = rt.connections.fetch_add(1, Ordering::AcqRel);
        if here + remote >= app.max_connections && app.max_connections > 0 {
            rt.connections.fetch_sub(1, Ordering::AcqRel);
            node.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectError::AppOverQuota);
        }
        rt.usage.connections(here as u64 + 1);
        let socket_id = SocketId::new(
            rand::random_range(1..SocketId::MAX_PART),
            rand::random_range(1..SocketId::MAX_PART),
        );
        Ok(Arc::new(Connection::new(
            socket_id,
            app,
            self.inner.config.outbox_capacity,
        )))
    }

    /// Removes a socket from every channel, roster and user index, announcing departures. Call once
    /// when the socket is gone; later calls do nothing.
    pub fn disconnect(&self, conn: &ConnectionHandle) {
        let rt = self.runtime(conn.app());
        let mut st = conn.state.lock();
        if st.disconnected {
            return;
        }
        st.disconnected = true;
        let channels: Vec<ChannelName> = st.channels.names();
        for channel in &channels {
            leave(self, conn, &rt, &mut st, channel);
        }
        let user = st.user.take();
        drop(st);
        if let Some(user) = user {
            remove_user_socket(&rt, conn, &user.id);
            for watched in &user.watchlist {
                remove_from_list(&rt.watchers, watched, conn.socket_id());
            }
        }
        rt.connections.fetch_sub(1, Ordering::AcqRel);
        self.inner.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
