//! The sockets open on this node, so that the drain can close them a batch at a time.
//!
//! The broker core counts sockets but does not list them (it has no need to); the drain does, so the
//! edge keeps this small set of handles. A session registers itself once admitted and its
//! [`Registration`] removes it when the session ends, whichever way it ends. This module must never
//! close a socket itself, and never hold its lock while touching an outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use vestnik_broker::ConnectionHandle;
use vestnik_protocol::SocketId;

/// The open sockets of this node.
#[derive(Debug, Clone, Default)]
pub struct LiveSockets {
    inner: Arc<Mutex<HashMap<SocketId, ConnectionHandle>>>,
}

impl LiveSockets {
    /// Adds a socket; it is removed when the returned registration is dropped.
    pub fn register(&self, conn: &ConnectionHandle) -> Registration {
        self.lock().insert(conn.socket_id(), conn.clone());
        Registration {
            sockets: self.clone(),
            id: conn.socket_id(),
        }
    }

    /// A copy of every open socket's handle (the lock is released before this returns).
    pub fn snapshot(&self) -> Vec<ConnectionHandle> {
        self.lock().values().cloned().collect()
    }

    /// Number of open sockets.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, ConnectionHandle>> {
        // The map holds plain handles and no invariant spans a panic: keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket's place in [`LiveSockets`], removed on drop.
#[derive(Debug)]
pub struct Registration {
    sockets: LiveSockets,
    id: SocketId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.id);
    }
}
