//! Apps that change while the node runs: the app database's change feed (`apps_url`) and the config
//! file's reload on `SIGHUP`, applied to the node's [`LiveAppStore`], with the sockets of a
//! disabled app closed with 4003 and those of a deleted app with 4001.
//!
//! The feed keeps its own snapshot in memory, so no lookup ever waits on the database; while the
//! database is unreachable the node keeps serving the apps it knows, logs it once, and exports
//! `vestnik_apps_store_up 0`. This module must never print a secret or a database password, and
//! closes sockets only through their ordinary close path ([`ConnectionHandle::send_error_and_close`]).
//!
//! # Layout
//! - this file: [`record_to_app`], [`apply`], [`open`] and the feed task;
//! - [`ops`]: the admin operations in JSON terms, shared by `/admin/apps` and the CLI;
//! - [`cli`]: `vestnik apps …`, the same operations from the command line.

pub mod cli;
pub mod ops;

use tokio::task::JoinHandle;
use tracing::{info, warn};
use vestnik_apps::{AppRecord, Change, ChangeFeed, FeedOptions, FeedState, StoreError};
use vestnik_broker::{App, AppChange, PreviousSecret};

use crate::config::DatabaseUrl;
use crate::state::AppState;

/// The broker's view of a catalogue record: the same names, the same defaults.
pub fn record_to_app(r: &AppRecord) -> App {
    let n = |v: u32| v as usize;
    App {
        id: r.id.clone(),
        key: r.key.clone(),
        secret: r.secret.clone(),
        previous_secret: r.previous_secret.as_ref().map(|p| PreviousSecret {
            secret: p.secret.clone(),
            expires_at: p.expires_at,
        }),
        enabled: r.enabled,
        max_connections: connection_cap(r),
        max_messages_per_day: r.quotas.max_messages_per_day,
        client_events: r.options.client_events,
        client_event_rate: r.limits.client_event_rate,
        max_event_bytes: n(r.limits.max_event_bytes),
        max_presence_members: n(r.limits.max_presence_members),
        max_user_info_bytes: n(r.limits.max_user_info_bytes),
        max_channels_per_trigger: n(r.limits.max_channels_per_trigger),
        max_batch_events: n(r.limits.max_batch_events),
        allowed_origins: r.options.allowed_origins.clone(),
        signin_timeout: u64::from(r.options.signin_timeout),
        watchlist: r.options.watchlist,
        subscription_count: r.options.subscription_count,
        cache_ttl: u64::from(r.options.cache_ttl),
        max_channels_per_socket: n(r.limits.max_channels_per_socket),
        api_rate_limit: r.limits.api_rate_limit,
        webhooks: r.webhooks.clone(),
        history: Default::default(),
    }
}

/// The broker's `max_connections` for a record: the smaller of the limit and the cluster-wide
/// quota, 0 (no cap) only when neither is set. The broker already counts an app's sockets across
/// the cluster (this node's plus the other nodes' from their heartbeats), so the quota holds across
/// nodes, to within one heartbeat of a burst on several nodes at once; over it a socket gets 4004.
fn connection_cap(r: &AppRecord) -> usize {
    let limit = u64::from(r.limits.max_connections);
    let cap = match (limit, r.quotas.max_connections) {
        (0, q) => q,
        (l, 0) => l,
        (l, q) => l.min(q),
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Acts on one change of the served apps: logs it and closes the sockets it ends (4003 for a
/// disabled app, 4001 for a deleted one or one whose key changed). `source` names where the change
/// came from, for the log.
pub fn apply(state: &AppState, change: &AppChange, source: &str) {
    let code = change.close_code();
    let closed = match (code, change.previous()) {
        (Some(code), Some(old)) => {
            let sockets: Vec<_> = state
                .sockets
                .snapshot()
                .into_iter()
                .filter(|c| c.app().id == old.id && c.app().key == old.key)
                .collect();
            for conn in &sockets {
                conn.send_error_and_close(code, code.default_message());
            }
            sockets.len()
        }
        _ => 0,
    };
    follow_webhooks(state, change);
    let what = match change {
        AppChange::Added(_) => "added",
        AppChange::Changed { new, .. } if !new.enabled => "changed (disabled)",
        AppChange::Changed { .. } => "changed",
        AppChange::Removed(_) => "removed",
    };
    info!(
        app_id = change.id(),
        source,
        closed_sockets = closed,
        close_code = code.map(|c| c.code()),
        "app {what}"
    );
}

/// Keeps the webhook sender's targets in step with the served apps: an enabled app with targets
/// sends to them, signed with its current secret (after a rotation, the new one); a disabled or
/// deleted app, or one whose targets were emptied, sends nothing more, and what it still had to
/// send is dead-lettered (see [`vestnik_webhooks::Webhooks::remove_app`]).
fn follow_webhooks(state: &AppState, change: &AppChange) {
    let Some(hooks) = &state.webhooks else {
        return;
    };
    let app = match change {
        AppChange::Added(app) | AppChange::Changed { new: app, .. } => app,
        AppChange::Removed(app) => {
            hooks.remove_app(&app.id);
            return;
        }
    };
    if !app.enabled || app.webhooks.is_empty() {
        hooks.remove_app(&app.id);
        return;
    }
    let targets = vestnik_webhooks::AppHooks {
        app_id: app.id.clone(),
        key: app.key.clone(),
        secret: app.secret.clone(),
        targets: app.webhooks.clone(),
    };
    if let Err(e) = hooks.set_app(&targets) {
        warn!(app_id = %app.id, "webhook targets not applied: {e}");
    }
}

/// Opens the app database, brings its schema up to date, serves its apps in place of the config
/// file's and follows its changes until shutdown. Fails when the database cannot be read at
/// start: a node must not serve a guessed set of apps.
pub async fn open(state: &AppState, url: &DatabaseUrl) -> Result<JoinHandle<()>, StoreError> {
    let store = vestnik_apps::open(url.expose()).await?;
    let migrated = store.migrate().await?;
    if migrated.from != migrated.to {
        info!(
            from = migrated.from,
            to = migrated.to,
            "app schema migrated"
        );
    }
    let feed = store.watch(FeedOptions::default()).await?;
    let snapshot = feed.snapshot();
    let apps: Vec<App> = snapshot.apps.iter().map(|r| record_to_app(r)).collect();
    let count = apps.len();
    match state.apps.replace(apps) {
        Ok(changes) => changes.iter().for_each(|c| apply(state, c, "database")),
        Err(e) => warn!("the app database's apps cannot all be served: {e}"),
    }
    for r in &snapshot.rejected {
        warn!(app_id = %r.id, reason = %r.reason, "app row not served");
    }
    let _ = state.apps_db.set(store);
    metrics::gauge!("vestnik_apps_store_up").set(1.0);
    info!(
        apps = count,
        revision = snapshot.revision,
        url = %url.redacted(),
        "apps from the database"
    );
    Ok(tokio::spawn(follow(state.clone(), feed)))
}

/// Applies the feed's changes until shutdown, and reports its state in the log and in
/// `vestnik_apps_store_up`.
async fn follow(state: AppState, mut feed: ChangeFeed) {
    let mut states = feed.state_changes();
    let stop = state.shutdown.token();
    loop {
        tokio::select! {
            change = feed.recv() => match change {
                Some(change) => apply_feed(&state, change),
                None => break,
            },
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = states.borrow_and_update().clone();
                match now {
                    FeedState::Up => {
                        metrics::gauge!("vestnik_apps_store_up").set(1.0);
                        info!("app database reachable again; caught up");
                    }
                    FeedState::Down { reason, .. } => {
                        metrics::gauge!("vestnik_apps_store_up").set(0.0);
                        warn!(%reason, "app database unreachable; serving the apps known");
                    }
                }
            }
            () = stop.cancelled() => break,
        }
    }
}

/// One feed change into the live store.
fn apply_feed(state: &AppState, change: Change) {
    let changes = match change {
        Change::Upsert(record) => match state.apps.upsert(record_to_app(&record)) {
            Ok(c) => c.into_iter().collect(),
            Err(e) => {
                warn!(app_id = %record.id, "app change not served: {e}");
                Vec::new()
            }
        },
        Change::Delete { id } => state.apps.remove(&id).into_iter().collect(),
        Change::Resync(snapshot) => {
            let apps = snapshot.apps.iter().map(|r| record_to_app(r)).collect();
            match state.apps.replace(apps) {
                Ok(c) => c,
                Err(e) => {
                    warn!("app resync not served: {e}");
                    Vec::new()
                }
            }
        }
    };
    for c in &changes {
        apply(state, c, "database");
    }
}

/// Replaces the served apps by `apps` (a `SIGHUP` reload of the config file). Refused whole, the
/// old set kept, when the new set cannot be served.
pub fn reload(state: &AppState, apps: Vec<App>) {
    if state.apps_db.get().is_some() {
        warn!("SIGHUP: apps come from the database (apps_url); nothing reloaded");
        return;
    }
    match state.apps.replace(apps) {
        Ok(changes) => {
            info!(changes = changes.len(), "SIGHUP: apps reloaded");
            changes.iter().for_each(|c| apply(state, c, "config"));
        }
        Err(e) => warn!("SIGHUP: apps not reloaded, keeping the old ones: {e}"),
    }
}
