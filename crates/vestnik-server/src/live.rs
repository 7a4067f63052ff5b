//! The sockets open on this node, so that the drain can close them a batch at a time.
//!
//! The broker core counts sockets but does not list them (it has no need to); the drain does, so the
//! edge keeps this small set of handles. A session registers itself once admitted and its
//! [`Registration`] removes it when the session ends, whichever way it ends. This module must never
//! close a socket itself, and never hold its lock while touching an outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use vestnik_broker::ConnectionHandle;
use vestnik_protocol::SocketId;

/// The set and its wake-up, shared by every clone of [`LiveSockets`].
#[derive(Debug, Default)]
struct Inner {
    /// Every admitted socket's handle, by socket id.
    sockets: Mutex<HashMap<SocketId, ConnectionHandle>>,
    /// Woken when the last socket goes, so the drain moves on at once.
    emptied: Notify,
}

/// The open sockets of this node.
#[derive(Debug, Clone, Default)]
pub struct LiveSockets {
    /// Shared: the sessions register here, the drain reads here.
    inner: Arc<Inner>,
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

    /// Resolves once no socket is open.
    pub async fn wait_empty(&self) {
        loop {
            let emptied = self.inner.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a socket leaving in between still wakes us.
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// The set's lock, taken for one short operation at a time and never while touching an outbox.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, ConnectionHandle>> {
        // The map holds plain handles and no invariant spans a panic: keep using it.
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket's place in [`LiveSockets`], removed on drop.
#[derive(Debug)]
pub struct Registration {
    /// The set to leave on drop.
    sockets: LiveSockets,
    /// This socket's id in it.
    id: SocketId,
}

impl Drop for Registration {
    /// Leaves the set, and wakes the drain if the set is now empty (after the lock is released).
    fn drop(&mut self) {
        let empty = {
            let mut sockets = self.sockets.lock();
            sockets.remove(&self.id);
            sockets.is_empty()
        };
        if empty {
            self.sockets.inner.emptied.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vestnik_broker::{App, Broker, BrokerConfig, StaticAppStore};

    use super::*;

    /// The drain's wait ends as soon as the last registration drops, with no polling.
    #[tokio::test]
    async fn lists_sockets_and_wakes_the_drain_when_the_last_goes() {
        let store = StaticAppStore::new(vec![App::default()]).unwrap();
        let broker = Broker::new(Arc::new(store), BrokerConfig::default());
        let app = broker.apps().all()[0].clone();
        let live = LiveSockets::default();
        let a = live.register(&broker.connect(app.clone()).unwrap());
        let b = live.register(&broker.connect(app).unwrap());
        assert_eq!(live.snapshot().len(), 2);
        let waiter = tokio::spawn({
            let live = live.clone();
            async move { live.wait_empty().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one socket is still open");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when the last socket went")
            .unwrap();
        assert!(live.is_empty());
    }
}
