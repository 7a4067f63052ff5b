//! The console tap: a live copy of one app's [`BrokerEvent`]s for the debug console, at no cost to the
//! broker when nobody watches.
//!
//! [`Tap`] is an [`EventSink`] that wraps the real sink (webhooks): every event goes to the inner sink
//! first, unchanged. Only when a console watches the event's app is it turned into one JSON record
//! (serialised once, whatever the number of consoles) and sent on that app's
//! `tokio::sync::broadcast` channel. Without a watcher the cost is one relaxed atomic load: no lock, no
//! allocation, no lookup. A console that reads too slowly loses the oldest records (the broadcast
//! channel overwrites them) and learns how many it lost; the broker never waits for it. This module must
//! never block or await while the broker calls it, and takes its one lock (a read lock, for the
//! lookup of the app's channel) only while some console watches.
//!
//! Apps come and go while the node runs (an app database, `SIGHUP`), so an app's side of the tap is
//! made on the first [`Tap::watch`] of it, not fixed at construction: an app created at runtime can
//! be watched like one from the config file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::broadcast;
use vestnik_protocol::ChannelName;

use crate::app::App;
use crate::events::{BrokerEvent, EventSink};

/// One app's side of the tap.
#[derive(Debug)]
struct AppTap {
    /// JSON records, shared by every console of the app.
    sender: broadcast::Sender<Bytes>,
    /// Consoles watching this app.
    watchers: AtomicUsize,
    /// Records consoles of this app lost because they read too slowly.
    dropped: AtomicU64,
}

impl AppTap {
    /// An app's side of the tap, with room for `capacity` records per console.
    fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            watchers: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

/// The console tap over the broker's events. Build it once, hand it to the broker as its sink, and
/// call [`Tap::watch`] for each console.
pub struct Tap {
    inner: Arc<dyn EventSink>,
    /// Consoles watching any app: the one check on the hot path.
    watching: Arc<AtomicUsize>,
    /// Each app's side, made on its first watch (or at construction). Read only while some console
    /// watches; written only by [`Tap::watch`] for an app not seen before.
    apps: RwLock<HashMap<String, Arc<AppTap>>>,
    /// Records a console may fall behind, for the apps added later.
    capacity: usize,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("watching", &self.watching.load(Ordering::Relaxed))
            .field("apps", &self.apps.read().len())
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// A tap in front of `inner`, ready for `app_ids` (any other app gets its side on its first
    /// watch). Each console may fall `capacity` records behind before it starts losing the oldest
    /// ones.
    pub fn new<I>(inner: Arc<dyn EventSink>, app_ids: I, capacity: usize) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let apps = app_ids
            .into_iter()
            .map(|id| (id.into(), Arc::new(AppTap::new(capacity))))
            .collect();
        Self {
            inner,
            watching: Arc::new(AtomicUsize::new(0)),
            apps: RwLock::new(apps),
            capacity,
        }
    }

    /// Starts watching `app_id`'s events. Records flow from now on until the returned [`TapWatch`]
    /// is dropped. The caller decides which apps may be watched (the console: the app of a valid
    /// session, which the node serves); an app's side, once made, stays for the node's life (one
    /// broadcast channel per app ever watched).
    pub fn watch(&self, app_id: &str) -> TapWatch {
        let found = self.apps.read().get(app_id).cloned();
        let app = found.unwrap_or_else(|| {
            self.apps
                .write()
                .entry(app_id.to_owned())
                .or_insert_with(|| Arc::new(AppTap::new(self.capacity)))
                .clone()
        });
        let rx = app.sender.subscribe();
        app.watchers.fetch_add(1, Ordering::AcqRel);
        self.watching.fetch_add(1, Ordering::AcqRel);
        TapWatch {
            rx,
            app,
            watching: self.watching.clone(),
        }
    }

    /// Consoles watching any app right now.
    pub fn watchers(&self) -> usize {
        self.watching.load(Ordering::Relaxed)
    }

    /// Records the consoles of `app_id` lost by reading too slowly, since the start.
    pub fn dropped(&self, app_id: &str) -> u64 {
        self.apps
            .read()
            .get(app_id)
            .map_or(0, |a| a.dropped.load(Ordering::Relaxed))
    }
}

impl EventSink for Tap {
    fn on_event(&self, app: &App, event: BrokerEvent<'_>) {
        self.inner.on_event(app, event);
        if self.watching.load(Ordering::Relaxed) == 0 {
            return;
        }
        // The read lock is held for the lookup only, never while serialising or sending.
        let Some(tap) = self.apps.read().get(&app.id).cloned() else {
            return;
        };
        if tap.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(record) = TapRecord::of(event) else {
            return;
        };
        // A record is plain strings and numbers, so serialising it cannot fail.
        if let Ok(json) = serde_json::to_vec(&record) {
            // Err only means the last console left in between: nothing to do.
            let _ = tap.sender.send(Bytes::from(json));
        }
    }
}

/// What a console receives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapItem {
    /// One event as a JSON object (see `docs/console.md` for its fields).
    Record(Bytes),
    /// This console read too slowly and lost this many records.
    Lagged(u64),
}

/// One console's view of an app's events; stops the flow when dropped.
#[derive(Debug)]
pub struct TapWatch {
    rx: broadcast::Receiver<Bytes>,
    app: Arc<AppTap>,
    watching: Arc<AtomicUsize>,
}

impl TapWatch {
    /// The next record, or how many were lost since the last one. Cancel-safe.
    pub async fn recv(&mut self) -> TapItem {
        match self.rx.recv().await {
            Ok(json) => TapItem::Record(json),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.app.dropped.fetch_add(n, Ordering::Relaxed);
                TapItem::Lagged(n)
            }
            // The tap owns the sender and outlives every watch; should it go, nothing more comes.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

impl Drop for TapWatch {
    fn drop(&mut self) {
        self.app.watchers.fetch_sub(1, Ordering::AcqRel);
        self.watching.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The JSON shape of one event on the console's stream.
#[derive(Debug, Serialize)]
struct TapRecord<'a> {
    /// Milliseconds since the Unix epoch.
    at: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipients: Option<usize>,
}

impl<'a> TapRecord<'a> {
    /// The record for `event`, or `None` for what the console leaves out: subscription counts, which
    /// repeat the subscriptions it already shows.
    fn of(event: BrokerEvent<'a>) -> Option<Self> {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let bare = |kind, channel: &'a ChannelName| TapRecord {
            at,
            kind,
            channel: channel.as_str(),
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
            recipients: None,
        };
        Some(match event {
            BrokerEvent::ChannelOccupied { channel } => bare("occupied", channel),
            BrokerEvent::ChannelVacated { channel } => bare("vacated", channel),
            BrokerEvent::MemberAdded { channel, user_id } => TapRecord {
                user_id: Some(user_id),
                ..bare("member_added", channel)
            },
            BrokerEvent::MemberRemoved { channel, user_id } => TapRecord {
                user_id: Some(user_id),
                ..bare("member_removed", channel)
            },
            BrokerEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => TapRecord {
                event: Some(event),
                data: Some(data),
                socket_id: Some(socket_id.to_string()),
                user_id,
                ..bare("client_event", channel)
            },
            BrokerEvent::CacheMiss { channel } => bare("cache_miss", channel),
            BrokerEvent::SubscriptionCount { .. }
            | BrokerEvent::MemberJoinedElsewhere { .. }
            | BrokerEvent::OccupiedElsewhere { .. } => return None,
            BrokerEvent::Subscribed {
                channel,
                socket_id,
                user_id,
            } => TapRecord {
                socket_id: Some(socket_id.to_string()),
                user_id,
                ..bare("subscribed", channel)
            },
            BrokerEvent::Unsubscribed { channel, socket_id } => TapRecord {
                socket_id: Some(socket_id.to_string()),
                ..bare("unsubscribed", channel)
            },
            BrokerEvent::Published {
                channel,
                event,
                data,
                recipients,
            } => TapRecord {
                event: Some(event),
                data: Some(data),
                recipients: Some(recipients),
                ..bare("trigger", channel)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NoEvents;

    fn app(id: &str) -> App {
        App {
            id: id.into(),
            ..App::default()
        }
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn published<'a>(channel: &'a ChannelName, event: &'a str) -> BrokerEvent<'a> {
        BrokerEvent::Published {
            channel,
            event,
            data: "{\"n\":1}",
            recipients: 2,
        }
    }

    fn record(item: TapItem) -> serde_json::Value {
        match item {
            TapItem::Record(json) => serde_json::from_slice(&json).unwrap(),
            TapItem::Lagged(n) => panic!("lagged {n}"),
        }
    }

    /// Counts what reaches the inner sink, to prove the tap forwards everything.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl EventSink for Counter {
        fn on_event(&self, _app: &App, _event: BrokerEvent<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_watcher_gets_its_apps_events_as_json() {
        let tap = Tap::new(Arc::new(NoEvents), ["a", "b"], 16);
        let mut watch = tap.watch("a");
        tap.on_event(&app("b"), published(&ch("other"), "e"));
        tap.on_event(&app("a"), published(&ch("orders"), "created"));
        let got = record(watch.recv().await);
        assert_eq!(got["type"], "trigger");
        assert_eq!(got["channel"], "orders");
        assert_eq!(got["event"], "created");
        assert_eq!(got["data"], "{\"n\":1}");
        assert_eq!(got["recipients"], 2);
        assert!(got["at"].as_u64().unwrap() > 0);
        assert!(got.get("socket_id").is_none());
    }

    #[tokio::test]
    async fn subscriptions_carry_the_socket_and_user() {
        let tap = Tap::new(Arc::new(NoEvents), ["a"], 16);
        let mut watch = tap.watch("a");
        let socket_id = vestnik_protocol::SocketId::new(12, 34);
        tap.on_event(
            &app("a"),
            BrokerEvent::Subscribed {
                channel: &ch("presence-room"),
                socket_id,
                user_id: Some("u1"),
            },
        );
        tap.on_event(
            &app("a"),
            BrokerEvent::SubscriptionCount {
                channel: &ch("presence-room"),
                count: 1,
            },
        );
        tap.on_event(
            &app("a"),
            BrokerEvent::Unsubscribed {
                channel: &ch("presence-room"),
                socket_id,
            },
        );
        let sub = record(watch.recv().await);
        assert_eq!(sub["type"], "subscribed");
        assert_eq!(sub["socket_id"], "12.34");
        assert_eq!(sub["user_id"], "u1");
        // The subscription count is left out: the next record is the unsubscription.
        let unsub = record(watch.recv().await);
        assert_eq!(unsub["type"], "unsubscribed");
        assert!(unsub.get("user_id").is_none());
    }

    #[tokio::test]
    async fn the_inner_sink_gets_everything_watched_or_not() {
        let counter = Arc::new(Counter::default());
        let tap = Tap::new(counter.clone(), ["a"], 16);
        tap.on_event(&app("a"), published(&ch("c"), "e"));
        let watch = tap.watch("a");
        tap.on_event(&app("a"), published(&ch("c"), "e"));
        tap.on_event(&app("unknown"), published(&ch("c"), "e"));
        drop(watch);
        assert_eq!(counter.0.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_slow_watcher_loses_the_oldest_and_is_told_how_many() {
        let tap = Tap::new(Arc::new(NoEvents), ["a"], 4);
        let mut watch = tap.watch("a");
        let names: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
        for name in &names {
            tap.on_event(&app("a"), published(&ch("c"), name));
        }
        assert_eq!(watch.recv().await, TapItem::Lagged(6));
        assert_eq!(record(watch.recv().await)["event"], "e6");
        assert_eq!(tap.dropped("a"), 6);
    }

    #[test]
    fn watching_is_counted_and_released() {
        let tap = Tap::new(Arc::new(NoEvents), ["a"], 4);
        let w1 = tap.watch("a");
        let w2 = tap.watch("a");
        assert_eq!(tap.watchers(), 2);
        drop(w1);
        drop(w2);
        assert_eq!(tap.watchers(), 0);
        // With nobody watching nothing is queued: a new watcher starts empty.
        tap.on_event(&app("a"), published(&ch("c"), "e"));
        let mut w3 = tap.watch("a");
        tap.on_event(&app("a"), published(&ch("c"), "after"));
        let item = futures_now(w3.recv());
        assert_eq!(record(item)["event"], "after");
    }

    /// An app the tap was not built with (created while the node runs) can be watched: its side is
    /// made on the first watch, and its events flow from then on.
    #[tokio::test]
    async fn an_app_added_later_can_be_watched() {
        let tap = Tap::new(Arc::new(NoEvents), ["a"], 4);
        tap.on_event(&app("new"), published(&ch("c"), "before"));
        let mut watch = tap.watch("new");
        tap.on_event(&app("new"), published(&ch("c"), "after"));
        assert_eq!(record(watch.recv().await)["event"], "after");
        assert_eq!(tap.dropped("new"), 0);
        drop(watch);
        assert_eq!(tap.watchers(), 0);
    }

    /// Polls a future that must already be ready.
    fn futures_now<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
