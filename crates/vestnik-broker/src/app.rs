//! Apps: credentials, switches and limits, and the [`AppStore`] the broker finds them in.
//!
//! An [`App`] is plain configuration, read once and shared as `Arc<App>`. The store is a trait with the
//! two lookups the broker needs, so a database-backed store can replace [`StaticAppStore`] later. This
//! module must never hold per-connection state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use vestnik_protocol::limits;
use vestnik_protocol::webhook::WebhookTarget;
use vestnik_protocol::AppSecret;

use crate::history::HistoryConfig;

/// One app: its credentials, switches and limits. Every field has a default, so a config file names
/// only what differs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct App {
    /// The app id used in the HTTP API path.
    pub id: String,
    /// The public key clients connect with.
    pub key: String,
    /// The secret that signs channel auth, sign-in and API requests; `Debug` redacts it.
    pub secret: AppSecret,
    /// The secret before the last rotation, still accepted until its grace ends (apps from a
    /// database only: a config file names one secret).
    #[serde(skip)]
    pub previous_secret: Option<PreviousSecret>,
    /// A disabled app refuses connections with 4003 and API calls with 403.
    pub enabled: bool,
    /// Most concurrent sockets for this app; 0 means no limit. Over it: 4004.
    pub max_connections: usize,
    /// Most messages (API events received plus messages delivered to sockets) per UTC day across
    /// the cluster; 0 means no quota. Over it: API triggers get 403 and client events 4301.
    pub max_messages_per_day: u64,
    /// Whether sockets may send client events.
    pub client_events: bool,
    /// Client events each socket may send per second.
    pub client_event_rate: u32,
    /// Largest event data in bytes, for API triggers (413) and client events (4301).
    pub max_event_bytes: usize,
    /// Most members (distinct users) in one presence channel.
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes.
    pub max_user_info_bytes: usize,
    /// Most channels in one trigger.
    pub max_channels_per_trigger: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Origins allowed to open WebSockets; empty allows any. `*.example.com` matches subdomains.
    pub allowed_origins: Vec<String>,
    /// Seconds a socket has to sign in before it is closed with 4009; 0 means sign-in is optional.
    pub signin_timeout: u64,
    /// Whether signed-in users receive watchlist events.
    pub watchlist: bool,
    /// Whether subscribers receive `pusher_internal:subscription_count` on non-presence channels.
    pub subscription_count: bool,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u64,
    /// Most channels one socket may join; 0 means no limit. Over it the subscribe gets a
    /// `pusher:subscription_error` of type `LimitReached` (status 403) and the socket stays open.
    pub max_channels_per_socket: usize,
    /// Signed API requests this app may make per second across this node (a token bucket holding one
    /// second's worth); 0 means no limit. Over it: 429 with `Retry-After`.
    pub api_rate_limit: u32,
    /// Where this app's webhooks go (`[[apps.webhooks]]`); none by default.
    pub webhooks: Vec<WebhookTarget>,
    /// Channel history and positions (`[apps.history]`): on by default, bounded; see
    /// docs/recovery.md.
    pub history: HistoryConfig,
}

impl Default for App {
    fn default() -> Self {
        Self {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
            previous_secret: None,
            enabled: true,
            max_connections: 0,
            max_messages_per_day: 0,
            client_events: true,
            client_event_rate: limits::CLIENT_EVENTS_PER_SECOND,
            max_event_bytes: limits::MAX_EVENT_BYTES,
            max_presence_members: limits::MAX_PRESENCE_MEMBERS,
            max_user_info_bytes: limits::MAX_USER_INFO_BYTES,
            max_channels_per_trigger: limits::MAX_CHANNELS_PER_TRIGGER,
            max_batch_events: limits::MAX_BATCH_EVENTS,
            allowed_origins: Vec::new(),
            signin_timeout: 0,
            watchlist: true,
            subscription_count: false,
            cache_ttl: limits::CACHE_TTL_SECS,
            max_channels_per_socket: limits::MAX_CHANNELS_PER_SOCKET,
            api_rate_limit: 0,
            webhooks: Vec::new(),
            history: HistoryConfig::default(),
        }
    }
}

/// A secret replaced by a rotation, accepted until `expires_at` so that servers signing with it can
/// be redeployed one by one.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    /// The old secret; `Debug` redacts it.
    pub secret: AppSecret,
    /// When the old secret stops being accepted.
    pub expires_at: SystemTime,
}

impl App {
    /// The secrets valid at `now`: the current one, then the previous one while its grace lasts.
    /// Every signature check (API, channel auth, sign-in) tries them in this order; webhooks and
    /// anything else the broker signs use the current one only.
    pub fn valid_secrets(&self, now: SystemTime) -> impl Iterator<Item = &AppSecret> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| now < p.expires_at)
            .map(|p| &p.secret);
        std::iter::once(&self.secret).chain(previous)
    }

    /// Runs the signature check `check` with each secret valid now, succeeding on the first that
    /// passes; when none does, the current secret's error is returned (the one a client whose
    /// server uses the current secret needs to see).
    pub fn verify_with<E>(&self, mut check: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        self.verify_with_secret(|secret| check(secret.expose()))
    }

    /// [`verify_with`](Self::verify_with), handing `check` each valid secret itself rather than its
    /// text, so it can reuse the secret's keyed HMAC state (the signed API's check).
    pub fn verify_with_secret<E>(
        &self,
        mut check: impl FnMut(&AppSecret) -> Result<(), E>,
    ) -> Result<(), E> {
        // The current secret first: the clock is read only when it fails and a rotation's
        // previous secret may still be in its grace.
        let first = match check(&self.secret) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(previous) = self.valid_secrets(SystemTime::now()).nth(1) {
            if check(previous).is_ok() {
                return Ok(());
            }
        }
        Err(first)
    }

    /// Whether a WebSocket upgrade from `origin` may proceed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        let Some(origin) = origin else {
            return false;
        };
        self.allowed_origins
            .iter()
            .any(|allowed| origin_matches(allowed, origin))
    }

    /// How long a sign-in may take, if sign-in is required.
    pub fn signin_deadline(&self) -> Option<Duration> {
        (self.signin_timeout > 0).then(|| Duration::from_secs(self.signin_timeout))
    }

    /// How long a cache channel keeps its last event.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl)
    }
}

/// `*` matches anything; `scheme://*.host` and `*.host` match any subdomain; anything else matches
/// exactly, ignoring case.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    if allowed == "*" || allowed.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some(star) = allowed.find("*.") else {
        return false;
    };
    let (prefix, suffix) = (&allowed[..star], &allowed[star + 1..]);
    let origin_l = origin.to_ascii_lowercase();
    let host_part = if prefix.is_empty() {
        origin_l
            .split_once("://")
            .map_or(origin_l.as_str(), |(_, h)| h)
    } else {
        match origin_l.strip_prefix(&prefix.to_ascii_lowercase()) {
            Some(rest) => rest,
            None => return false,
        }
    };
    host_part.len() > suffix.len() && host_part.ends_with(&suffix.to_ascii_lowercase())
}

/// Where the broker finds apps. Few methods on purpose: what the core needs, not what a store offers.
pub trait AppStore: Send + Sync + 'static {
    /// The app with this public key.
    fn by_key(&self, key: &str) -> Option<Arc<App>>;
    /// The app with this id.
    fn by_id(&self, id: &str) -> Option<Arc<App>>;
    /// Every app, for listings and shutdown.
    fn all(&self) -> Vec<Arc<App>>;
}

/// Why a set of apps cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppStoreError {
    /// No app was configured.
    #[error("no app is configured")]
    Empty,
    /// Two apps share an id or a key.
    #[error("two apps share the {what} {value:?}")]
    Duplicate {
        /// `id` or `key`.
        what: &'static str,
        /// The shared value.
        value: String,
    },
    /// One app's key is another app's id. The HTTP API accepts a key where `{app_id}` goes (Pushler's
    /// PHP SDK has no app id), so such a path would name two apps.
    #[error(
        "the key {value:?} of one app is the id of another; /apps/{value}/... would be ambiguous"
    )]
    KeyIsAnotherId {
        /// The shared value.
        value: String,
    },
    /// An app has an empty id, key or secret.
    #[error("app {index} has an empty {what}")]
    EmptyField {
        /// Position in the config.
        index: usize,
        /// `id`, `key` or `secret`.
        what: &'static str,
    },
}

/// Apps from the config file, indexed by key and by id.
#[derive(Debug, Default)]
pub struct StaticAppStore {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
    all: Vec<Arc<App>>,
}

impl StaticAppStore {
    /// Indexes `apps`, refusing duplicates and empty credentials.
    pub fn new(apps: Vec<App>) -> Result<Self, AppStoreError> {
        if apps.is_empty() {
            return Err(AppStoreError::Empty);
        }
        Self::index(apps)
    }

    /// Indexes `apps` as [`StaticAppStore::new`] does, but accepts none: a database may hold no app
    /// yet, and the live registry then serves nothing until one is created.
    pub fn index(apps: Vec<App>) -> Result<Self, AppStoreError> {
        let mut store = Self::default();
        for (index, app) in apps.into_iter().enumerate() {
            for (what, value) in [
                ("id", &*app.id),
                ("key", &*app.key),
                ("secret", &*app.secret),
            ] {
                if value.is_empty() {
                    return Err(AppStoreError::EmptyField { index, what });
                }
            }
            let app = Arc::new(app);
            if store.by_id.insert(app.id.clone(), app.clone()).is_some() {
                return Err(AppStoreError::Duplicate {
                    what: "id",
                    value: app.id.clone(),
                });
            }
            if store.by_key.insert(app.key.clone(), app.clone()).is_some() {
                return Err(AppStoreError::Duplicate {
                    what: "key",
                    value: app.key.clone(),
                });
            }
            store.all.push(app);
        }
        for app in &store.all {
            if store
                .by_id
                .get(&app.key)
                .is_some_and(|other| !Arc::ptr_eq(other, app))
            {
                return Err(AppStoreError::KeyIsAnotherId {
                    value: app.key.clone(),
                });
            }
        }
        Ok(store)
    }
}

impl AppStore for StaticAppStore {
    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }
    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }
    fn all(&self) -> Vec<Arc<App>> {
        self.all.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let app = App {
            secret: "very-s3cret-value".into(),
            ..App::default()
        };
        let debug = format!("{app:?}");
        assert!(!debug.contains("very-s3cret-value"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let pretty = format!("{:#?}", Arc::new(app));
        assert!(!pretty.contains("very-s3cret-value"), "{pretty}");
    }

    #[test]
    fn origins() {
        let app = App {
            allowed_origins: vec![
                "https://shop.example".into(),
                "https://*.example.com".into(),
                "*.test".into(),
            ],
            ..App::default()
        };
        assert!(app.origin_allowed(Some("https://shop.example")));
        assert!(app.origin_allowed(Some("https://a.example.com")));
        assert!(!app.origin_allowed(Some("https://example.com")));
        assert!(!app.origin_allowed(Some("http://a.example.com")));
        assert!(app.origin_allowed(Some("http://x.test")));
        assert!(!app.origin_allowed(Some("https://evil.example")));
        assert!(!app.origin_allowed(None));
        assert!(App::default().origin_allowed(None));
    }

    #[test]
    fn store_refuses_duplicates() {
        let a = App::default();
        let b = App {
            id: "2".into(),
            ..App::default()
        };
        assert!(matches!(
            StaticAppStore::new(vec![a.clone(), b]),
            Err(AppStoreError::Duplicate { what: "key", .. })
        ));
        // A key that is another app's id would make /apps/{segment} name two apps.
        let by_id = App {
            id: "shared".into(),
            key: "k1".into(),
            ..App::default()
        };
        let by_key = App {
            id: "other".into(),
            key: "shared".into(),
            ..App::default()
        };
        assert_eq!(
            StaticAppStore::new(vec![by_id, by_key]).unwrap_err(),
            AppStoreError::KeyIsAnotherId {
                value: "shared".into()
            }
        );
        // An app whose key equals its own id is unambiguous.
        let same = App {
            id: "same".into(),
            key: "same".into(),
            ..App::default()
        };
        assert!(StaticAppStore::new(vec![same]).is_ok());
        let s = StaticAppStore::new(vec![a]).unwrap();
        assert_eq!(s.by_key("app-key").unwrap().id, "app-id");
        assert!(s.by_id("nope").is_none());
        assert_eq!(
            StaticAppStore::new(vec![]).unwrap_err(),
            AppStoreError::Empty
        );
    }
}
