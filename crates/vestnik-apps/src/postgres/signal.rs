//! The PostgreSQL change signal: a `LISTEN vestnik_apps` connection in its own task, forwarding the
//! id in each notification. `LISTEN` is set up before the feed reads its snapshot, so a change that
//! commits in between is still heard. This module must never reconnect on its own: a lost
//! connection ends the task and the feed decides when to try again.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::feed::{FeedOptions, Loaded, Signal, Source, Wake};
use crate::store::Snapshot;

/// The notification channel the triggers use.
const CHANNEL: &str = "vestnik_apps";

/// Wake-ups a signal may queue before it waits for the feed; notifications are small and the feed
/// takes them as fast as it can reload.
const SIGNAL_QUEUE: usize = 256;

/// The feed's view of a PostgreSQL store.
pub(crate) struct PgSource {
    /// The store's pool; `listen` takes a dedicated connection from its options, not a pooled one.
    pool: PgPool,
}

impl PgSource {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// What a notification's payload says: `{"id": "..", "revision": n}`, or `{"id": null}` after a
/// TRUNCATE.
/// Written by the table's trigger with `pg_notify`.
#[derive(serde::Deserialize)]
struct Payload {
    id: Option<String>,
    /// The catalogue revision of the change; 0 when absent (older payloads), which never lowers the
    /// feed's revision.
    #[serde(default)]
    revision: u64,
}

impl Source for PgSource {
    type Listening = PgListener;

    /// Opens the `LISTEN` connection before the snapshot is read (see the module docs).
    async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // A lost connection ends the signal; the feed reconnects with its own backoff and resyncs.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// The signal task: forwards each notification as a wake-up until the connection is lost or the
    /// feed drops the signal. An unreadable payload becomes a full reload rather than a missed
    /// change. A lost connection is sent as [`Wake::Lost`] and ends the task; the feed owns
    /// reconnecting. Blocking on a full queue is fine here: the feed drains it, and while it is
    /// full PostgreSQL buffers the notifications.
    fn follow(&self, mut listener: PgListener, _revision: u64, _options: FeedOptions) -> Signal {
        let (tx, wakes) = mpsc::channel(SIGNAL_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let wake = match listener.try_recv().await {
                    Ok(Some(n)) => match serde_json::from_str::<Payload>(n.payload()) {
                        Ok(Payload {
                            id: Some(id),
                            revision,
                        }) => Wake::Ids {
                            ids: vec![id],
                            revision,
                        },
                        Ok(Payload { id: None, .. }) => Wake::Everything,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable app catalogue notification; reloading everything");
                            Wake::Everything
                        }
                    },
                    Ok(None) => {
                        Wake::Lost(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "the LISTEN connection was lost",
                        ))))
                    }
                    Err(e) => Wake::Lost(e.into()),
                };
                let lost = matches!(wake, Wake::Lost(_));
                if tx.send(wake).await.is_err() || lost {
                    return;
                }
            }
        });
        Signal { wakes, task }
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        super::load_all(&self.pool).await
    }

    async fn load(&self, ids: Vec<String>) -> Result<Vec<(String, Loaded)>, StoreError> {
        super::load(&self.pool, ids).await
    }
}
