//! What the operator configures: the webhook targets of each app (`[[apps.webhooks]]`), the delivery
//! settings (`[webhooks]`), and their defaults, each with its source.
//!
//! This module only describes and validates settings. It must never open files, start tasks or
//! send anything: the service reads these values once at start and trusts them afterwards.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vestnik_protocol::AppSecret;

pub use vestnik_protocol::webhook::{EventType, WebhookTarget};

use crate::error::Error;

/// Default settings, each with where the number comes from.
pub mod defaults {
    /// Where the spool lives when no data dir is configured: next to the working directory, so a
    /// quick start keeps its pending webhooks across restarts without any setup.
    pub const DATA_DIR: &str = "./vestnik-data";
    /// Longest time an event waits for companions before its batch is sent: "max 250 ms or 20 events
    /// per POST" (Pusher support article on batch webhooks, reference B.13).
    pub const BATCH_MS: u64 = 250;
    /// Most events in one POST (same Pusher source as [`BATCH_MS`]).
    pub const BATCH_MAX: usize = 20;
    /// Upper bound on `batch_max`: every id of a batch is listed in one `X-Vestnik-Webhook-Id`
    /// header (37 bytes each), and common proxies refuse header lines over 8 KiB (nginx's
    /// `large_client_header_buffers`).
    pub const BATCH_MAX_LIMIT: usize = 100;
    /// How long `channel_vacated` and `member_removed` are held back, so a page reload does not
    /// flap: "delayed up to 3 s" (Pusher webhooks docs, reference B.13).
    pub const HOLD_MS: u64 = 3_000;
    /// How long a batch is retried before it becomes a dead letter: Pusher retries "for 5 minutes"
    /// (Pusher webhooks docs, reference B.13).
    pub const RETRY_WINDOW_SECS: u64 = 300;
    /// First retry delay; each further failure doubles it (exponential backoff, with jitter). Our
    /// choice: Pusher does not publish its schedule.
    pub const RETRY_INITIAL_MS: u64 = 1_000;
    /// Longest delay between two tries of one batch. Our choice: a receiver that comes back is
    /// found within a minute, and a 5-minute window still gets several tries.
    pub const RETRY_MAX_MS: u64 = 60_000;
    /// Requests in flight to one receiver URL. Our choice: enough to keep up with bursts, few enough
    /// not to exhaust a small PHP-FPM pool.
    pub const MAX_IN_FLIGHT: usize = 4;
    /// How long one request may take, connect to last body byte. Our choice (Pusher publishes none):
    /// short enough that a hung receiver does not hold a slot for long.
    pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
    /// Events the submit queue holds before `submit` starts dropping (and counting) them. Our
    /// choice: a few seconds of a busy app's events, about 10 MiB at worst.
    pub const QUEUE_CAPACITY: usize = 65_536;
}

/// A small set of [`EventType`]s, so that filtering an event costs one AND.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EventTypeSet(u8);

impl EventTypeSet {
    /// Adds `t`. Each `EventType` is a bit position (its discriminant, under 8), so the set fits a
    /// `u8`.
    pub(crate) fn insert(&mut self, t: EventType) {
        self.0 |= 1 << (t as u8);
    }

    /// Whether `t` is in the set: the one test per event and target on the planner's hot path.
    pub(crate) fn contains(self, t: EventType) -> bool {
        self.0 & (1 << (t as u8)) != 0
    }

    /// Both sets together: a target's kinds plus their hold partners, for what `submit` accepts.
    pub(crate) fn union(self, other: EventTypeSet) -> EventTypeSet {
        EventTypeSet(self.0 | other.0)
    }
}

impl FromIterator<EventType> for EventTypeSet {
    fn from_iter<I: IntoIterator<Item = EventType>>(iter: I) -> Self {
        let mut set = EventTypeSet::default();
        for t in iter {
            set.insert(t);
        }
        set
    }
}

/// Headers the sender sets itself; a target may not override them.
/// A configured `X-Pusher-Signature` would let the config forge what the receiver trusts, and a
/// configured `Content-Length` or `Host` would break the request, so these are refused at start.
pub(crate) const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "x-pusher-key",
    "x-pusher-signature",
    "x-vestnik-webhook-id",
    "x-vestnik-webhook-attempt",
];

/// Validation of a [`WebhookTarget`], which lives here because it needs URL and header parsing.
/// A trait rather than an inherent method because [`WebhookTarget`] is defined in
/// `vestnik-protocol`, which must stay free of the `http` crate; the server's config check calls
/// it.
pub trait ValidateTarget {
    /// Checks the URL and headers, so that a bad target fails at start, not at the first event.
    fn validate(&self) -> Result<(), Error>;
}

impl ValidateTarget for WebhookTarget {
    fn validate(&self) -> Result<(), Error> {
        let bad =
            |reason: String| Error::Config(format!("webhook target {:?}: {reason}", self.url));
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| bad(format!("invalid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the URL must start with http:// or https://".into())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host".into()));
        }
        if self.event_types.is_empty() {
            return Err(bad(
                "event_types is empty; omit it to receive every kind".into()
            ));
        }
        for (name, value) in &self.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("invalid header name {name:?}")))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(bad(format!("header {name:?} is set by the sender")));
            }
            http::HeaderValue::from_str(value)
                .map_err(|_| bad(format!("invalid value for header {name:?}")))?;
        }
        Ok(())
    }
}

/// Delivery settings shared by every app: the `[webhooks]` table.
///
/// Shared by every app on purpose: the spool, the queue and the retry policy are the node's, and
/// one app's receiver being slow must not change how another's is treated beyond sharing a lane
/// when they share a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Directory of the durable spool (`webhooks.redb` inside it); created when missing.
    pub data_dir: PathBuf,
    /// Longest wait, in milliseconds, before a partly filled batch is sent.
    pub batch_ms: u64,
    /// Most events in one POST (1 sends every event alone; at most 100).
    pub batch_max: usize,
    /// Milliseconds `channel_vacated` and `member_removed` are held back (0: no hold).
    pub hold_ms: u64,
    /// Seconds a batch is retried before it becomes a dead letter. The window starts again when the
    /// broker restarts, so downtime never turns pending events into dead letters.
    pub retry_window_secs: u64,
    /// First retry delay in milliseconds; doubled on each failure, with jitter.
    pub retry_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_max_ms: u64,
    /// Requests in flight to one receiver URL at most.
    pub max_in_flight: usize,
    /// Milliseconds one request may take before it counts as failed.
    pub request_timeout_ms: u64,
    /// Events `submit` may queue before it drops (and counts) them.
    pub queue_capacity: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(defaults::DATA_DIR),
            batch_ms: defaults::BATCH_MS,
            batch_max: defaults::BATCH_MAX,
            hold_ms: defaults::HOLD_MS,
            retry_window_secs: defaults::RETRY_WINDOW_SECS,
            retry_initial_ms: defaults::RETRY_INITIAL_MS,
            retry_max_ms: defaults::RETRY_MAX_MS,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            queue_capacity: defaults::QUEUE_CAPACITY,
        }
    }
}

impl WebhookSettings {
    /// Checks the numbers that would make delivery impossible (zero slots, zero batch size, …).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| Err(Error::Config(format!("[webhooks] {reason}")));
        if self.batch_max == 0 || self.batch_max > defaults::BATCH_MAX_LIMIT {
            return bad("batch_max must be between 1 and 100");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be at least 1");
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return bad("retry_initial_ms must be at least 1 and at most retry_max_ms");
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must not be empty");
        }
        Ok(())
    }
}

/// One app as the webhook service needs it: who it is, how to sign, and where to send.
///
/// `Debug` hides the secret.
///
/// Built by the server from its config; this crate keeps its own copy, so a
/// webhook never needs to look the app up in the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct AppHooks {
    /// The app id, as the broker passes it to `submit`.
    pub app_id: String,
    /// The app key, sent as `X-Pusher-Key`.
    pub key: String,
    /// The app secret, which signs every body (`X-Pusher-Signature`).
    pub secret: AppSecret,
    /// Where the app's webhooks go; empty means the app sends none.
    pub targets: Vec<WebhookTarget>,
}

impl std::fmt::Debug for AppHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHooks")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .field("targets", &self.targets)
            .finish()
    }
}

impl AppHooks {
    /// Checks every target of the app.
    pub fn validate(&self) -> Result<(), Error> {
        if self.app_id.is_empty() {
            return Err(Error::Config("an app has an empty id".into()));
        }
        self.targets.iter().try_for_each(WebhookTarget::validate)
    }

    /// The kinds some target wants, plus their hold partners (see [`EventType::partner`]): the
    /// events `submit` must accept for this app.
    /// Without the partners, a target that wants only `channel_vacated` would never see the
    /// `channel_occupied` that cancels a held vacate, and would get every reload's vacate.
    pub(crate) fn accepted_types(&self) -> EventTypeSet {
        let wanted: EventTypeSet = self
            .targets
            .iter()
            .flat_map(|t| t.event_types.iter().copied())
            .collect();
        let partners: EventTypeSet = EventType::ALL
            .into_iter()
            .filter(|t| wanted.contains(*t))
            .filter_map(EventType::partner)
            .collect();
        wanted.union(partners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct App {
        #[allow(dead_code)]
        id: String,
        #[serde(default)]
        webhooks: Vec<WebhookTarget>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        webhooks: WebhookSettings,
        apps: Vec<App>,
    }

    /// The TOML in `docs/webhooks.md` must parse into what it says; a drift would mislead
    /// operators.
    #[test]
    fn parses_the_documented_toml() {
        let file: File = toml::from_str(
            r#"
            [webhooks]
            data_dir = "/var/lib/vestnik"
            batch_ms = 100
            max_in_flight = 2

            [[apps]]
            id = "1001"

            [[apps.webhooks]]
            url = "https://shop.example/pusher/webhooks"
            event_types = ["channel_occupied", "channel_vacated"]
            channel_prefix = "private-orders-"
            headers = { Authorization = "Bearer s3cret" }

            [[apps.webhooks]]
            url = "http://127.0.0.1:8080/hooks"
            "#,
        )
        .expect("valid toml");
        assert_eq!(file.webhooks.batch_ms, 100);
        assert_eq!(file.webhooks.batch_max, defaults::BATCH_MAX);
        assert_eq!(file.webhooks.data_dir, PathBuf::from("/var/lib/vestnik"));
        let targets = &file.apps[0].webhooks;
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].event_types.len(), 2);
        assert_eq!(targets[0].headers["Authorization"], "Bearer s3cret");
        assert_eq!(
            targets[1],
            WebhookTarget::every_event("http://127.0.0.1:8080/hooks")
        );
        targets.iter().for_each(|t| t.validate().expect("valid"));
        file.webhooks.validate().expect("valid settings");
    }

    /// A typo in a key or an event kind must fail the start, not silently send nothing.
    #[test]
    fn unknown_keys_and_kinds_are_errors() {
        let unknown_key = toml::from_str::<WebhookTarget>("url = \"http://a\"\nfilter = \"x\"");
        assert!(unknown_key.is_err());
        let unknown_kind = toml::from_str::<WebhookTarget>(
            "url = \"http://a\"\nevent_types = [\"channel_existence\"]",
        );
        assert!(unknown_kind.is_err());
        assert!(toml::from_str::<WebhookSettings>("batch_size = 3").is_err());
    }

    #[test]
    fn validation_refuses_unusable_targets_and_settings() {
        let mut t = WebhookTarget::every_event("ftp://example.com/");
        assert!(t.validate().is_err());
        t.url = "http://example.com/hooks".into();
        t.validate().expect("valid");
        t.headers
            .insert("X-Pusher-Signature".into(), "forged".into());
        assert!(t.validate().is_err());
        t.headers.clear();
        t.headers.insert("bad header".into(), "x".into());
        assert!(t.validate().is_err());
        t.headers.clear();
        t.event_types.clear();
        assert!(t.validate().is_err());

        let s = WebhookSettings {
            batch_max: 0,
            ..WebhookSettings::default()
        };
        assert!(s.validate().is_err());
        let s = WebhookSettings {
            batch_max: 101,
            ..WebhookSettings::default()
        };
        assert!(s.validate().is_err());
        let s = WebhookSettings {
            max_in_flight: 0,
            ..WebhookSettings::default()
        };
        assert!(s.validate().is_err());
        WebhookSettings::default()
            .validate()
            .expect("defaults are valid");
    }

    /// Config is logged at start: neither the app secret nor a target's `Authorization` may print.
    #[test]
    fn debug_hides_secrets_and_header_values() {
        let mut target = WebhookTarget::every_event("http://a/");
        target
            .headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        let app = AppHooks {
            app_id: "1".into(),
            key: "k".into(),
            secret: "app-s3cret".into(),
            targets: vec![target],
        };
        let text = format!("{app:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("Authorization"));
    }

    /// A target that wants only vacates still makes `submit` accept occupies, or the hold could
    /// never cancel a vacate.
    #[test]
    fn filters_and_accepted_types() {
        let t = WebhookTarget {
            channel_prefix: Some("presence-".into()),
            channel_suffix: Some("-admin".into()),
            event_types: vec![EventType::ChannelVacated],
            ..WebhookTarget::every_event("http://a/")
        };
        assert!(t.matches_channel("presence-room-admin"));
        assert!(!t.matches_channel("presence-room"));
        assert!(!t.matches_channel("private-room-admin"));
        let app = AppHooks {
            app_id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
            targets: vec![t],
        };
        let accepted = app.accepted_types();
        assert!(accepted.contains(EventType::ChannelVacated));
        assert!(
            accepted.contains(EventType::ChannelOccupied),
            "the hold partner"
        );
        assert!(!accepted.contains(EventType::ClientEvent));
    }
}
