//! [`LiveAppStore`]: the apps a node serves, changeable while it runs.
//!
//! Lookups read one index under a short read lock (a hash lookup and an `Arc` clone), so the hot
//! path never waits on a database or a file; a change builds a new index beside the old one and
//! swaps it in. Changes come from the edge (a database's change feed, a `SIGHUP` reload of the
//! config file) and each reports an [`AppChange`], which tells the edge what to do with the app's
//! open sockets ([`AppChange::close_code`]). This module must never close a socket or do IO itself:
//! the edge that owns the sockets does, through the connections' ordinary close path.

use std::sync::Arc;

use parking_lot::RwLock;
use vestnik_protocol::PusherCode;

use crate::app::{App, AppStore, AppStoreError, StaticAppStore};

/// What one change did to an app, for the edge to act on and log.
#[derive(Debug, Clone)]
pub enum AppChange {
    /// A new app: live at once.
    Added(Arc<App>),
    /// An app changed: new work (sockets, triggers, subscriptions) uses `new`.
    Changed {
        /// The version served until now.
        old: Arc<App>,
        /// The version served from now on.
        new: Arc<App>,
    },
    /// An app is gone.
    Removed(Arc<App>),
}

impl AppChange {
    /// The app's id.
    pub fn id(&self) -> &str {
        match self {
            AppChange::Added(app) | AppChange::Removed(app) => &app.id,
            AppChange::Changed { new, .. } => &new.id,
        }
    }

    /// With which code the sockets of the app as it was must be closed, if at all: 4001 when it is
    /// gone (or its key changed, so the key they connected with no longer exists), 4003 when it was
    /// enabled and is now disabled. A changed limit closes nothing: it applies to new work.
    pub fn close_code(&self) -> Option<PusherCode> {
        match self {
            AppChange::Added(_) => None,
            AppChange::Removed(_) => Some(PusherCode::AppNotFound),
            AppChange::Changed { old, new } if old.key != new.key => Some(PusherCode::AppNotFound),
            AppChange::Changed { new, .. } if !new.enabled => Some(PusherCode::AppDisabled),
            AppChange::Changed { .. } => None,
        }
    }

    /// The app whose sockets [`AppChange::close_code`] applies to: the version they connected to.
    pub fn previous(&self) -> Option<&Arc<App>> {
        match self {
            AppChange::Added(_) => None,
            AppChange::Changed { old, .. } => Some(old),
            AppChange::Removed(app) => Some(app),
        }
    }
}

/// The apps served by a node, swapped as a whole on every change.
#[derive(Debug)]
pub struct LiveAppStore {
    /// The current index; replaced, never edited in place.
    current: RwLock<Arc<StaticAppStore>>,
}

impl LiveAppStore {
    /// Serves `apps` (from the config file: at least one, checked as [`StaticAppStore::new`]).
    pub fn new(apps: Vec<App>) -> Result<Self, AppStoreError> {
        Ok(Self {
            current: RwLock::new(Arc::new(StaticAppStore::new(apps)?)),
        })
    }

    /// The index in force; the lock is held only for the `Arc` clone.
    fn index(&self) -> Arc<StaticAppStore> {
        self.current.read().clone()
    }

    /// Replaces every app by `apps` (a reload or a full snapshot), which may be empty, and returns
    /// what changed, by id. Refused whole, serving the old set, when `apps` cannot be indexed.
    pub fn replace(&self, apps: Vec<App>) -> Result<Vec<AppChange>, AppStoreError> {
        let next = Arc::new(StaticAppStore::index(apps)?);
        let old = std::mem::replace(&mut *self.current.write(), next.clone());
        let mut changes = Vec::new();
        for app in old.all() {
            match next.by_id(&app.id) {
                None => changes.push(AppChange::Removed(app)),
                Some(new) if *new != *app => changes.push(AppChange::Changed { old: app, new }),
                Some(_) => {}
            }
        }
        for app in next.all() {
            if old.by_id(&app.id).is_none() {
                changes.push(AppChange::Added(app));
            }
        }
        Ok(changes)
    }

    /// Serves `app` in place of the app with its id (or as a new one). `None` when it is the same
    /// as the one served. Refused, serving the old set, when its key is another app's id or key.
    pub fn upsert(&self, app: App) -> Result<Option<AppChange>, AppStoreError> {
        let mut current = self.current.write();
        let old = current.by_id(&app.id);
        if old.as_deref() == Some(&app) {
            return Ok(None);
        }
        let mut apps: Vec<App> = current
            .all()
            .iter()
            .filter(|a| a.id != app.id)
            .map(|a| App::clone(a))
            .collect();
        let id = app.id.clone();
        apps.push(app);
        let next = StaticAppStore::index(apps)?;
        let new = next.by_id(&id).expect("the app was just indexed");
        *current = Arc::new(next);
        drop(current);
        Ok(Some(match old {
            None => AppChange::Added(new),
            Some(old) => AppChange::Changed { old, new },
        }))
    }

    /// Stops serving the app with this id; `None` when no app has it.
    pub fn remove(&self, id: &str) -> Option<AppChange> {
        let mut current = self.current.write();
        let old = current.by_id(id)?;
        let apps: Vec<App> = current
            .all()
            .iter()
            .filter(|a| a.id != id)
            .map(|a| App::clone(a))
            .collect();
        *current = Arc::new(StaticAppStore::index(apps).expect("a subset of a valid set is valid"));
        Some(AppChange::Removed(old))
    }
}

impl AppStore for LiveAppStore {
    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.current.read().by_key(key)
    }
    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.current.read().by_id(id)
    }
    fn all(&self) -> Vec<Arc<App>> {
        self.index().all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, key: &str) -> App {
        App {
            id: id.into(),
            key: key.into(),
            ..App::default()
        }
    }

    /// Each kind of change says what happens to the app's sockets: none for a new app or a new
    /// limit, 4003 for a disable, 4001 for a removal or a changed key.
    #[test]
    fn changes_and_their_close_codes() {
        let store = LiveAppStore::new(vec![app("1", "k1")]).unwrap();
        let added = store.upsert(app("2", "k2")).unwrap().unwrap();
        assert!(matches!(added, AppChange::Added(_)) && added.close_code().is_none());
        assert_eq!(store.by_key("k2").unwrap().id, "2");
        assert!(store.upsert(app("2", "k2")).unwrap().is_none(), "same app");
        let limited = App {
            max_event_bytes: 5,
            ..app("2", "k2")
        };
        let changed = store.upsert(limited).unwrap().unwrap();
        assert!(changed.close_code().is_none());
        assert_eq!(store.by_id("2").unwrap().max_event_bytes, 5);
        let off = App {
            enabled: false,
            ..app("2", "k2")
        };
        let disabled = store.upsert(off).unwrap().unwrap();
        assert_eq!(disabled.close_code(), Some(PusherCode::AppDisabled));
        let rekeyed = store.upsert(app("2", "k3")).unwrap().unwrap();
        assert_eq!(rekeyed.close_code(), Some(PusherCode::AppNotFound));
        assert!(store.by_key("k2").is_none() && store.by_key("k3").is_some());
        let removed = store.remove("2").unwrap();
        assert_eq!(removed.close_code(), Some(PusherCode::AppNotFound));
        assert!(store.by_id("2").is_none() && store.remove("2").is_none());
    }

    /// A change that would make `/apps/{segment}` name two apps is refused and the old set stays.
    #[test]
    fn a_conflicting_upsert_keeps_the_old_set() {
        let store = LiveAppStore::new(vec![app("1", "k1")]).unwrap();
        assert!(store.upsert(app("2", "1")).is_err());
        assert_eq!(store.all().len(), 1);
    }

    /// A replace reports additions, changes and removals by id, and may leave no app at all.
    #[test]
    fn replace_reports_the_difference() {
        let store = LiveAppStore::new(vec![app("1", "k1"), app("2", "k2")]).unwrap();
        let off = App {
            enabled: false,
            ..app("2", "k2")
        };
        let mut changes = store.replace(vec![off, app("3", "k3")]).unwrap();
        changes.sort_by(|a, b| a.id().cmp(b.id()));
        let codes: Vec<_> = changes.iter().map(|c| (c.id(), c.close_code())).collect();
        assert_eq!(
            codes,
            [
                ("1", Some(PusherCode::AppNotFound)),
                ("2", Some(PusherCode::AppDisabled)),
                ("3", None)
            ]
        );
        assert_eq!(store.replace(Vec::new()).unwrap().len(), 2);
        assert!(store.all().is_empty());
    }
}
