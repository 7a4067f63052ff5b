//! The state every request handler shares: the broker, the configuration in force, the shutdown
//! signal, the webhook sender, the open sockets and the edge's rate limiters, built once at start.
//!
//! It sits low in the crate, below the router and every handler that reads it, and above only the
//! plain parts it is made of ([`crate::config`], [`crate::live`], [`crate::ratelimit`],
//! [`crate::shutdown`], [`crate::hooks`]). A WebSocket session does not get it: it takes the
//! broker and its own settings (see [`crate::ws::session::SessionContext`]). This module must never
//! import a handler, and its `Debug` must never print a secret (the configuration holds every app's).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vestnik_broker::adapter::Adapter;
use vestnik_broker::app::AppStoreError;
use vestnik_broker::{
    App, Broker, BrokerConfig, EventSink, LiveAppStore, NoEvents, PublishEvent, Tap,
};
use vestnik_protocol::api::{TriggerEvent, TriggerLimits};
use vestnik_webhooks::Webhooks;

use crate::config::Config;
use crate::hooks::WebhookSink;
use crate::live::LiveSockets;
use crate::ratelimit::{ApiLimiter, IpRateLimiter, SIGNIN_WINDOW_SECS};
use crate::shutdown::Shutdown;

/// What every request handler can reach. Cloning is cheap: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    /// The broker core.
    pub broker: Broker,
    /// The debug console's copy of the broker's events (see `http::console`).
    pub tap: Arc<Tap>,
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The shutdown signal.
    pub shutdown: Shutdown,
    /// The webhook sender, when some app has targets.
    pub webhooks: Option<Webhooks>,
    /// Whether the node accepts traffic: false while starting and once draining (`/ready`, and new
    /// upgrades are refused). See [`AppState::is_starting`].
    pub serving: Arc<AtomicBool>,
    /// The sockets open on this node, for the drain.
    pub sockets: LiveSockets,
    /// What every WebSocket session uses (the broker, the socket list, settings, counters).
    pub sessions: Arc<crate::ws::session::SessionContext>,
    /// New sockets per client IP.
    pub ip_limiter: IpRateLimiter,
    /// Console sign-in attempts per client IP per minute.
    pub signin_limiter: IpRateLimiter,
    /// Signed API requests per app.
    pub api_limiter: ApiLimiter,
    /// The cluster's adapter, once joined: asked before a trigger is published (see
    /// [`AppState::can_relay`]) and read by the metrics export for the losses it alone sees.
    pub backbone: Arc<OnceLock<Arc<dyn Adapter>>>,
    /// The apps served, changeable while the node runs (the broker reads the same store).
    pub apps: Arc<LiveAppStore>,
    /// The app database, once opened (`apps_url`); `None` while apps come from the config file.
    pub apps_db: Arc<OnceLock<Arc<dyn vestnik_apps::Store>>>,
    /// Failed admin authentications per client IP.
    pub admin_limiter: IpRateLimiter,
    /// Where usage is recorded (the app database, or the usage files), once opened at start.
    pub usage_ledger: Arc<OnceLock<crate::usage::Ledger>>,
}

impl AppState {
    /// Builds the broker from `config`, reporting channel happenings to `webhooks` if given (through
    /// the console's tap, which costs one atomic load while nobody watches). The node starts not
    /// serving; the server turns `serving` on once it has joined its cluster.
    ///
    /// The event sinks are chained: the broker reports to the console's tap, which forwards to the
    /// webhook sink (or to `NoEvents`), so the broker holds one `EventSink` and knows neither
    /// consumer.
    pub fn build(
        config: Config,
        shutdown: Shutdown,
        webhooks: Option<Webhooks>,
    ) -> Result<Self, AppStoreError> {
        let apps = Arc::new(LiveAppStore::new(config.apps.clone())?);
        let events: Arc<dyn EventSink> = match &webhooks {
            Some(hooks) => Arc::new(WebhookSink::new(hooks.clone())),
            None => Arc::new(NoEvents),
        };
        let tap = Arc::new(Tap::new(
            events,
            config.apps.iter().map(|a| a.id.clone()),
            config.console.stream_capacity,
        ));
        let events: Arc<dyn EventSink> = tap.clone();
        let broker = Broker::with_events(
            apps.clone(),
            BrokerConfig {
                max_connections: config.server.max_connections,
                outbox_capacity: config.server.outbox_capacity,
            },
            events,
        );
        let ip_limiter = IpRateLimiter::new(
            config.server.ip_connection_rate,
            Duration::from_secs(config.server.ip_connection_window),
        );
        let signin_limiter = IpRateLimiter::new(
            config.console.signin_attempts,
            Duration::from_secs(SIGNIN_WINDOW_SECS),
        );
        let admin_limiter = IpRateLimiter::new(
            config.admin.failed_attempts,
            Duration::from_secs(SIGNIN_WINDOW_SECS),
        );
        let sockets = LiveSockets::default();
        let sessions = Arc::new(crate::ws::session::SessionContext::new(
            broker.clone(),
            sockets.clone(),
            crate::ws::session::SessionSettings::from_config(&config.server),
            crate::ws::read_limits(&config.server),
        ));
        Ok(Self {
            apps,
            sessions,
            apps_db: Arc::default(),
            usage_ledger: Arc::default(),
            admin_limiter,
            broker,
            tap,
            config: Arc::new(config),
            shutdown,
            webhooks,
            serving: Arc::new(AtomicBool::new(false)),
            sockets,
            ip_limiter,
            signin_limiter,
            api_limiter: ApiLimiter::default(),
            backbone: Arc::default(),
        })
    }

    /// Whether the node is still starting: not serving yet, and not draining either (the drain turns
    /// `serving` off only after shutdown started). Upgrades and API calls are refused meanwhile.
    pub fn is_starting(&self) -> bool {
        !self.serving.load(Ordering::Relaxed) && !self.shutdown.token().is_cancelled()
    }

    /// Whether the node is draining: it was serving and shutdown has started.
    pub fn is_draining(&self) -> bool {
        !self.serving.load(Ordering::Relaxed) && !self.is_starting()
    }

    /// Whether events of about `bytes` bytes can be relayed to the other nodes now: the backbone
    /// is up, or they fit in the relay hold (always, on a single node). A trigger is refused with
    /// 503 before it is published when not, so a 200 never stands for an event this node already
    /// knows the other nodes will miss.
    pub fn can_relay(&self, bytes: usize) -> bool {
        self.backbone.get().is_none_or(|a| a.can_take(bytes))
    }

    /// Publishes a checked event (from the API or the console) through the broker: encoded once
    /// per channel there, never awaiting a subscriber. See [`publish_all`](Self::publish_all).
    pub async fn publish(&self, app: &Arc<App>, event: &TriggerEvent) {
        self.publish_all(app, std::slice::from_ref(event)).await;
    }

    /// Publishes checked events in order. In a cluster whose backbone keeps the history, each is
    /// numbered by the history store first: all are queued, and with `[cluster]
    /// durable_triggers` awaited together (one store round trip for a batch), so the 200 that
    /// follows stands for events that are in the store and survive this node's death (without
    /// it, this returns once they are queued). Two exceptions answer
    /// sooner, so a client never times out and retries an event that will still go out (a
    /// duplicate): while the backbone is unreachable the events are only queued (they go out
    /// unnumbered at once, as the store fails fast), and the wait never exceeds
    /// [`NUMBERING_WAIT`], below the shortest official SDK timeout.
    pub async fn publish_all(&self, app: &Arc<App>, events: &[TriggerEvent]) {
        let mut queued = Vec::with_capacity(events.len());
        for event in events {
            let numbering = self
                .broker
                .queue_numbered(
                    app,
                    &PublishEvent {
                        name: &event.name,
                        data: &event.data,
                        channels: &event.channels,
                        except: event.socket_id,
                    },
                )
                .await;
            queued.push(numbering);
        }
        if !self.config.cluster.durable_triggers
            || self.backbone.get().is_some_and(|a| !a.is_connected())
        {
            return;
        }
        let all = async {
            for numbering in queued {
                numbering.done().await;
            }
        };
        if tokio::time::timeout(NUMBERING_WAIT, all).await.is_err() {
            tracing::warn!(
                "a trigger waited {NUMBERING_WAIT:?} for its events' positions; answered while they are still queued"
            );
        }
    }
}

/// The longest a trigger waits for its events' positions before it is answered anyway (the events
/// stay queued and go out): below the 5 s default timeout of the pusher Python SDK, the shortest
/// of the official SDKs', so a slow history store never turns into a client retry.
pub const NUMBERING_WAIT: Duration = Duration::from_secs(3);

/// The limits an API body of `app` is checked against, in the protocol crate's terms.
pub fn trigger_limits(app: &App) -> TriggerLimits {
    TriggerLimits {
        max_event_bytes: app.max_event_bytes,
        max_channels_per_trigger: app.max_channels_per_trigger,
        max_batch_events: app.max_batch_events,
    }
}

impl fmt::Debug for AppState {
    /// Names the apps and the node's condition, never the configuration itself: it holds every
    /// app's secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let apps: Vec<&str> = self.config.apps.iter().map(|a| a.id.as_str()).collect();
        f.debug_struct("AppState")
            .field("apps", &apps)
            .field("serving", &self.serving.load(Ordering::Relaxed))
            .field("sockets", &self.sockets.len())
            .field("webhooks", &self.webhooks.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12's rule for the server state: `{:?}` and `{:#?}` name the apps, never a secret.
    #[test]
    fn debug_never_prints_a_secret() {
        let mut config = Config::default();
        config.apps[0].secret = "s3cret-that-must-not-print".into();
        let state = AppState::build(config, Shutdown::new(), None).unwrap();
        let shown = format!("{state:?} {state:#?}");
        assert!(shown.contains(&state.config.apps[0].id), "{shown}");
        assert!(!shown.contains("s3cret-that-must-not-print"), "{shown}");
    }

    /// The three conditions `/ready`, the upgrade and the API check follow from `serving` and the
    /// shutdown token in this order, and never overlap.
    #[test]
    fn starting_then_serving_then_draining() {
        let state = AppState::build(Config::default(), Shutdown::new(), None).unwrap();
        assert!(state.is_starting() && !state.is_draining());
        state.serving.store(true, Ordering::Relaxed);
        assert!(!state.is_starting() && !state.is_draining());
        state.shutdown.trigger();
        state.serving.store(false, Ordering::Relaxed);
        assert!(!state.is_starting() && state.is_draining());
    }
}
