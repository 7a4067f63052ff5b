//! When each event is sent and to whom: the vacate hold, target filters and batching, as a state
//! machine over events and instants.
//!
//! `channel_vacated` and `member_removed` wait `hold_ms`; an `channel_occupied` / `member_added` for
//! the same channel (and user) inside that window cancels both, so a page reload does not flap.
//! Released events are copied into one batch per matching target, which is ready at `batch_max`
//! events or `batch_ms` after its first event. This module must never do IO, read the clock or
//! spawn: the caller passes the time, which keeps every rule unit-testable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vestnik_protocol::ChannelName;

use crate::config::{AppHooks, EventType, EventTypeSet, WebhookTarget};
use crate::event::{new_event_id, WebhookEvent};
use crate::runtime::Shared;
use crate::spool::StoredEvent;
use crate::stats::AppCounters;

/// Timing rules of the planner, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanRules {
    /// How long vacates and removals are held.
    pub hold: Duration,
    /// How long a batch may wait for more events.
    pub batch_window: Duration,
    /// Most events in a batch.
    pub batch_max: usize,
}

/// A batch that is ready to be spooled: every event for one target of one app.
#[derive(Debug)]
pub(crate) struct ReadyBatch {
    /// Index of the app in the planner's app list.
    pub app: usize,
    /// The target itself (its URL and headers), as it was when the events were batched: a change
    /// of the app's targets since then does not redirect them.
    pub to: Arc<WebhookTarget>,
    /// The events, in the order they were released.
    pub events: Vec<StoredEvent>,
}

/// What a held event is keyed by: the channel, and the user for presence removals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HoldKey {
    /// The app's index, so two apps with a channel of the same name never cancel each other's
    /// holds.
    app: usize,
    channel: ChannelName,
    /// `Some` for member events: a removal is cancelled only by the same user coming back, not by
    /// another member joining.
    user_id: Option<String>,
}

/// An event waiting out its hold.
#[derive(Debug)]
struct Held {
    /// Matches the entry in `hold_queue` that will release it; a hold cancelled and started again
    /// gets a new generation, so the stale queue entry is skipped instead of releasing the new hold
    /// early.
    generation: u64,
    /// Assigned when the event arrived, so the id's UUID v7 time is when it happened, not when
    /// released.
    id: String,
    event: WebhookEvent,
}

/// One configured target as the planner sees it: the kinds it wants, for a cheap bit test per
/// event.
#[derive(Debug)]
struct Route {
    types: EventTypeSet,
    /// The target itself, for its channel filter and, when a batch is ready, its URL and headers.
    target: Arc<WebhookTarget>,
}

/// The open batch for one target.
#[derive(Debug, Default)]
struct Buffer {
    events: Vec<StoredEvent>,
    /// When its first event arrived; the batch window counts from here, so a steady trickle of
    /// events still leaves every `batch_window`.
    opened: Option<Instant>,
}

/// One app's targets and their open batches; `routes[i]` and `buffers[i]` belong together.
#[derive(Debug)]
struct AppPlan {
    routes: Vec<Route>,
    buffers: Vec<Buffer>,
    /// The app's counters, moved as events are held, suppressed and released.
    counters: Arc<AppCounters>,
    /// The version of the app's entry the routes were built from (see `Planner::sync`).
    version: u64,
}

impl AppPlan {
    /// Routes to `targets`, with empty batches.
    fn new(targets: &[Arc<WebhookTarget>], counters: Arc<AppCounters>, version: u64) -> Self {
        Self {
            routes: targets
                .iter()
                .map(|t| Route {
                    types: t.event_types.iter().copied().collect(),
                    target: Arc::clone(t),
                })
                .collect(),
            buffers: targets.iter().map(|_| Buffer::default()).collect(),
            counters,
            version,
        }
    }
}

/// The hold and batching state of every app.
#[derive(Debug)]
pub(crate) struct Planner {
    rules: PlanRules,
    /// Indexed by the app index the service gives each submission.
    apps: Vec<AppPlan>,
    /// Events in their hold, at most one per key: a second vacate for a held key is suppressed.
    held: HashMap<HoldKey, Held>,
    /// Hold deadlines in arrival order. Every hold lasts the same time, so this queue is sorted;
    /// entries whose generation no longer matches `held` were cancelled and are skipped.
    hold_queue: VecDeque<(Instant, HoldKey, u64)>,
    next_generation: u64,
    /// Batches that filled up during `submit`, handed out by the next `take_ready`.
    ready: Vec<ReadyBatch>,
    /// The app table's generation the plans were last brought up to.
    seen: u64,
}

impl Planner {
    /// A planner for `apps`, whose counters are `counters` (same order).
    pub(crate) fn new(apps: &[AppHooks], counters: &[Arc<AppCounters>], rules: PlanRules) -> Self {
        let apps = apps
            .iter()
            .zip(counters)
            .map(|(app, counters)| {
                let targets: Vec<_> = app.targets.iter().cloned().map(Arc::new).collect();
                AppPlan::new(&targets, Arc::clone(counters), 0)
            })
            .collect();
        Self {
            rules,
            apps,
            held: HashMap::new(),
            hold_queue: VecDeque::new(),
            next_generation: 0,
            ready: Vec::new(),
            seen: 0,
        }
    }

    /// Brings the plans up to the apps set and removed since the last call (one atomic load when
    /// nothing changed). A changed app's open batches are closed first, for the targets they were
    /// meant for; a removed app keeps no route, so its later and held events go nowhere.
    pub(crate) fn sync(&mut self, shared: &Shared) {
        let generation = shared.generation();
        if generation == self.seen {
            return;
        }
        self.seen = generation;
        for index in 0..shared.app_slots() {
            let entry = shared.app_at(index);
            let version = entry.as_ref().map_or(u64::MAX, |e| e.version);
            if self.apps.get(index).is_some_and(|p| p.version == version) {
                continue;
            }
            self.close_batches(index);
            let counters = match (&entry, self.apps.get(index)) {
                (Some(e), _) => Arc::clone(&e.counters),
                (None, Some(p)) => Arc::clone(&p.counters),
                (None, None) => Arc::default(),
            };
            let targets = entry.as_ref().map_or(&[][..], |e| &e.targets[..]);
            let plan = AppPlan::new(targets, counters, version);
            if index < self.apps.len() {
                self.apps[index] = plan;
            } else {
                self.apps.push(plan);
            }
        }
    }

    /// Moves the app's open batches to the ready list.
    fn close_batches(&mut self, app: usize) {
        let Some(plan) = self.apps.get_mut(app) else {
            return;
        };
        for (target, buffer) in plan.buffers.iter_mut().enumerate() {
            if !buffer.events.is_empty() {
                buffer.opened = None;
                self.ready.push(ReadyBatch {
                    app,
                    to: Arc::clone(&plan.routes[target].target),
                    events: std::mem::take(&mut buffer.events),
                });
            }
        }
    }

    /// Takes in one event of app `app` at `now`; `unix_ms` stamps its id.
    /// Vacates and removals are held (when the hold is not zero); an occupy or add that finds a
    /// held partner cancels both and counts them as suppressed; everything else is released at
    /// once. Events of kinds no target wants never get here: `Webhooks::submit` filters them first.
    pub(crate) fn submit(&mut self, app: usize, event: WebhookEvent, now: Instant, unix_ms: u64) {
        let Some(plan) = self.apps.get(app) else {
            return;
        };
        let counters = Arc::clone(&plan.counters);
        match event.kind() {
            EventType::ChannelVacated | EventType::MemberRemoved if !self.rules.hold.is_zero() => {
                let key = hold_key(app, &event);
                if self.held.contains_key(&key) {
                    // A second vacate without an occupy in between says nothing new.
                    counters.suppressed(1);
                    counters.unqueue(1);
                    return;
                }
                let generation = self.next_generation;
                self.next_generation += 1;
                self.hold_queue
                    .push_back((now + self.rules.hold, key.clone(), generation));
                let id = new_event_id(unix_ms);
                self.held.insert(
                    key,
                    Held {
                        generation,
                        id,
                        event,
                    },
                );
            }
            EventType::ChannelOccupied | EventType::MemberAdded => {
                if self.held.remove(&hold_key(app, &event)).is_some() {
                    // The reload case: the held leave and this join both vanish.
                    counters.suppressed(2);
                    counters.unqueue(2);
                    return;
                }
                self.release(app, new_event_id(unix_ms), &event, now);
            }
            EventType::ChannelVacated
            | EventType::MemberRemoved
            | EventType::ClientEvent
            | EventType::CacheMiss
            | EventType::SubscriptionCount => {
                self.release(app, new_event_id(unix_ms), &event, now);
            }
        }
    }

    /// Drops the vacate or removal held for `event`'s channel (and user), if any, sending nothing:
    /// another node has the channel or the member now and has reported it. Counted as suppressed.
    pub(crate) fn cancel_held(&mut self, app: usize, event: &WebhookEvent) {
        let Some(plan) = self.apps.get(app) else {
            return;
        };
        if self.held.remove(&hold_key(app, event)).is_some() {
            plan.counters.suppressed(1);
            plan.counters.unqueue(1);
        }
    }

    /// Releases every held event whose hold has ended by `now`.
    pub(crate) fn release_due(&mut self, now: Instant) {
        while let Some((deadline, _, _)) = self.hold_queue.front() {
            if *deadline > now {
                break;
            }
            let (_, key, generation) = self.hold_queue.pop_front().expect("front exists");
            self.release_held(key, generation, now);
        }
    }

    /// Releases every held event now. At shutdown, held leaves are sent rather than dropped: once
    /// the broker has stopped, the channel really is empty, and a dropped vacate would leave the
    /// receiver believing it is occupied.
    pub(crate) fn release_all(&mut self, now: Instant) {
        while let Some((_, key, generation)) = self.hold_queue.pop_front() {
            self.release_held(key, generation, now);
        }
    }

    /// Releases one hold if it is still the current one for its key (see `Held::generation`).
    fn release_held(&mut self, key: HoldKey, generation: u64, now: Instant) {
        let current = self.held.get(&key).map(|h| h.generation);
        if current != Some(generation) {
            return; // cancelled, or replaced by a later hold
        }
        let held = self.held.remove(&key).expect("checked above");
        self.release(key.app, held.id, &held.event, now);
    }

    /// Copies a released event into the batch of every matching target.
    fn release(&mut self, app: usize, id: String, event: &WebhookEvent, now: Instant) {
        let plan = &mut self.apps[app];
        plan.counters.unqueue(1);
        let kind = event.kind();
        let channel = event.channel().as_str();
        let mut json: Option<String> = None;
        for (index, route) in plan.routes.iter().enumerate() {
            if !route.types.contains(kind) || !route.target.matches_channel(channel) {
                continue;
            }
            let json = json.get_or_insert_with(|| event.to_json(&id)).clone();
            let buffer = &mut plan.buffers[index];
            buffer.opened.get_or_insert(now);
            buffer.events.push(StoredEvent {
                id: id.clone(),
                json,
            });
            if buffer.events.len() >= self.rules.batch_max {
                buffer.opened = None;
                self.ready.push(ReadyBatch {
                    app,
                    to: Arc::clone(&route.target),
                    events: std::mem::take(&mut buffer.events),
                });
            }
        }
    }

    /// Takes the batches that are full or whose window has passed; with `everything`, takes every
    /// non-empty batch (at shutdown).
    /// A batch is one target's, never mixed: each target has its own URL, signature and headers.
    pub(crate) fn take_ready(&mut self, now: Instant, everything: bool) -> Vec<ReadyBatch> {
        let mut ready = std::mem::take(&mut self.ready);
        for (app, plan) in self.apps.iter_mut().enumerate() {
            for (target, buffer) in plan.buffers.iter_mut().enumerate() {
                let due = buffer
                    .opened
                    .is_some_and(|opened| opened + self.rules.batch_window <= now);
                if !buffer.events.is_empty() && (due || everything) {
                    buffer.opened = None;
                    ready.push(ReadyBatch {
                        app,
                        to: Arc::clone(&plan.routes[target].target),
                        events: std::mem::take(&mut buffer.events),
                    });
                }
            }
        }
        ready
    }

    /// When the planner next has something to do: a hold ends or a batch window closes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let hold = self.hold_queue.front().map(|(deadline, _, _)| *deadline);
        let batch = self
            .apps
            .iter()
            .flat_map(|plan| plan.buffers.iter())
            .filter_map(|b| b.opened)
            .min()
            .map(|opened| opened + self.rules.batch_window);
        match (hold, batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Events currently held back.
    #[cfg(test)]
    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }
}

/// The key that pairs a leave with the join that cancels it: channel for occupancy events, channel
/// and user for member events, as Pusher's own hold does.
fn hold_key(app: usize, event: &WebhookEvent) -> HoldKey {
    let user_id = match event {
        WebhookEvent::MemberAdded { user_id, .. } | WebhookEvent::MemberRemoved { user_id, .. } => {
            Some(user_id.clone())
        }
        WebhookEvent::ChannelOccupied { .. }
        | WebhookEvent::ChannelVacated { .. }
        | WebhookEvent::ClientEvent { .. }
        | WebhookEvent::CacheMiss { .. }
        | WebhookEvent::SubscriptionCount { .. } => None,
    };
    HoldKey {
        app,
        channel: event.channel().clone(),
        user_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(3_000);
    const WINDOW: Duration = Duration::from_millis(250);

    fn planner(targets: Vec<WebhookTarget>, batch_max: usize) -> (Planner, Arc<AppCounters>) {
        let app = AppHooks {
            app_id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
            targets,
        };
        let counters = Arc::new(AppCounters::default());
        let rules = PlanRules {
            hold: HOLD,
            batch_window: WINDOW,
            batch_max,
        };
        let planner = Planner::new(&[app], std::slice::from_ref(&counters), rules);
        (planner, counters)
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).expect("valid")
    }

    fn names(batches: &[ReadyBatch]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| {
                b.events
                    .iter()
                    .map(|e| {
                        let v: serde_json::Value = serde_json::from_str(&e.json).expect("json");
                        v["name"].as_str().expect("name").to_owned()
                    })
                    .collect()
            })
            .collect()
    }

    /// Pusher's "max 250 ms or 20 events": a batch leaves as soon as either limit is reached.
    #[test]
    fn batch_is_ready_at_max_or_after_the_window() {
        let (mut p, _) = planner(vec![WebhookTarget::every_event("http://a/")], 3);
        let t0 = Instant::now();
        for _ in 0..4 {
            p.submit(0, WebhookEvent::CacheMiss { channel: ch("c") }, t0, 1);
        }
        let full = p.take_ready(t0, false);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].events.len(), 3);
        assert_eq!(p.next_deadline(), Some(t0 + WINDOW));
        assert!(p
            .take_ready(t0 + WINDOW - Duration::from_millis(1), false)
            .is_empty());
        let late = p.take_ready(t0 + WINDOW, false);
        assert_eq!(late[0].events.len(), 1);
        assert_eq!(p.next_deadline(), None);
    }

    /// A vacate with no re-occupation is delivered, just `hold` late: the hold delays, never drops.
    #[test]
    fn vacate_is_held_then_released() {
        let (mut p, counters) = planner(vec![WebhookTarget::every_event("http://a/")], 20);
        let t0 = Instant::now();
        counters.enqueue(1);
        p.submit(0, WebhookEvent::ChannelVacated { channel: ch("c") }, t0, 1);
        assert_eq!(p.held_len(), 1);
        assert_eq!(p.next_deadline(), Some(t0 + HOLD));
        p.release_due(t0 + HOLD - Duration::from_millis(1));
        assert!(p.take_ready(t0 + HOLD, true).is_empty());
        p.release_due(t0 + HOLD);
        assert_eq!(p.held_len(), 0);
        let ready = p.take_ready(t0 + HOLD, true);
        assert_eq!(names(&ready), vec![vec!["channel_vacated".to_owned()]]);
        assert_eq!(counters.snapshot("1").queued, 0);
    }

    /// The page-reload case the hold exists for: leave then join within the hold sends nothing.
    #[test]
    fn reoccupation_inside_the_hold_cancels_both() {
        let (mut p, counters) = planner(vec![WebhookTarget::every_event("http://a/")], 20);
        let t0 = Instant::now();
        let user =
            |kind: fn(ChannelName, String) -> WebhookEvent| kind(ch("presence-c"), "u".into());
        counters.enqueue(4);
        p.submit(0, WebhookEvent::ChannelVacated { channel: ch("c") }, t0, 1);
        let removed = user(|channel, user_id| WebhookEvent::MemberRemoved { channel, user_id });
        p.submit(0, removed, t0, 1);
        p.submit(
            0,
            WebhookEvent::ChannelOccupied { channel: ch("c") },
            t0 + WINDOW,
            1,
        );
        let added = user(|channel, user_id| WebhookEvent::MemberAdded { channel, user_id });
        p.submit(0, added, t0 + WINDOW, 1);
        p.release_due(t0 + HOLD * 2);
        assert!(p.take_ready(t0 + HOLD * 2, true).is_empty());
        let stats = counters.snapshot("1");
        assert_eq!(stats.suppressed, 4);
        assert_eq!(stats.queued, 0);
    }

    /// A cluster's node learns that the member or the channel is back on another node, which has
    /// sent `member_added` / `channel_occupied` itself: the held leave is dropped and nothing is
    /// sent here; another user's held removal, and a leave held after the cancel, are untouched.
    #[test]
    fn a_cancel_from_another_node_drops_the_held_leave_and_sends_nothing() {
        let (mut p, counters) = planner(vec![WebhookTarget::every_event("http://a/")], 20);
        let t0 = Instant::now();
        let member = |user: &str, added: bool| {
            let (channel, user_id) = (ch("presence-c"), user.to_owned());
            if added {
                WebhookEvent::MemberAdded { channel, user_id }
            } else {
                WebhookEvent::MemberRemoved { channel, user_id }
            }
        };
        counters.enqueue(3);
        p.submit(0, member("a", false), t0, 1);
        p.submit(0, member("b", false), t0, 1);
        p.submit(0, WebhookEvent::ChannelVacated { channel: ch("c") }, t0, 1);
        p.cancel_held(0, &member("a", true));
        p.cancel_held(0, &WebhookEvent::ChannelOccupied { channel: ch("c") });
        // A cancel with nothing held is a no-op.
        p.cancel_held(0, &member("z", true));
        p.release_due(t0 + HOLD);
        let ready = p.take_ready(t0 + HOLD, true);
        assert_eq!(names(&ready), vec![vec!["member_removed".to_owned()]]);
        let stats = counters.snapshot("1");
        assert_eq!((stats.suppressed, stats.queued), (2, 0));
    }

    /// Holds are keyed per user on presence channels: one user joining must not hide another's
    /// leave.
    #[test]
    fn a_different_user_does_not_cancel_a_removal() {
        let (mut p, _) = planner(vec![WebhookTarget::every_event("http://a/")], 20);
        let t0 = Instant::now();
        let removed = WebhookEvent::MemberRemoved {
            channel: ch("presence-c"),
            user_id: "a".into(),
        };
        p.submit(0, removed, t0, 1);
        let added = WebhookEvent::MemberAdded {
            channel: ch("presence-c"),
            user_id: "b".into(),
        };
        p.submit(0, added, t0, 1);
        p.release_all(t0);
        let ready = p.take_ready(t0, true);
        assert_eq!(
            names(&ready),
            vec![vec!["member_added".to_owned(), "member_removed".to_owned()]]
        );
    }

    /// Guards the generation check: the stale queue entry of a cancelled hold must not release a
    /// newer hold of the same key early.
    #[test]
    fn a_vacate_held_again_after_cancellation_uses_its_own_deadline() {
        let (mut p, _) = planner(vec![WebhookTarget::every_event("http://a/")], 20);
        let t0 = Instant::now();
        let vacate = || WebhookEvent::ChannelVacated { channel: ch("c") };
        p.submit(0, vacate(), t0, 1);
        p.submit(0, WebhookEvent::ChannelOccupied { channel: ch("c") }, t0, 1);
        let t1 = t0 + Duration::from_millis(2_000);
        p.submit(0, vacate(), t1, 1);
        p.release_due(t0 + HOLD);
        assert_eq!(
            p.held_len(),
            1,
            "the stale deadline must not release the new hold"
        );
        p.release_due(t1 + HOLD);
        assert_eq!(p.take_ready(t1 + HOLD, true).len(), 1);
    }

    /// Each target gets only its kinds and channels, and one event matching two targets goes into
    /// both.
    #[test]
    fn targets_filter_by_kind_prefix_and_suffix() {
        let only_added = WebhookTarget {
            event_types: vec![EventType::MemberAdded],
            ..WebhookTarget::every_event("http://a/")
        };
        let presence = WebhookTarget {
            channel_prefix: Some("presence-".into()),
            ..WebhookTarget::every_event("http://b/")
        };
        let admin = WebhookTarget {
            channel_suffix: Some("-admin".into()),
            ..WebhookTarget::every_event("http://c/")
        };
        let (mut p, _) = planner(vec![only_added, presence, admin], 20);
        let t0 = Instant::now();
        let added = WebhookEvent::MemberAdded {
            channel: ch("presence-room"),
            user_id: "1".into(),
        };
        p.submit(0, added, t0, 1);
        p.submit(
            0,
            WebhookEvent::CacheMiss {
                channel: ch("cache-x-admin"),
            },
            t0,
            1,
        );
        p.submit(
            0,
            WebhookEvent::CacheMiss {
                channel: ch("other"),
            },
            t0,
            1,
        );
        let mut ready = p.take_ready(t0, true);
        ready.sort_by(|a, b| a.to.url.cmp(&b.to.url));
        let got: Vec<(&str, usize)> = ready
            .iter()
            .map(|b| (b.to.url.as_str(), b.events.len()))
            .collect();
        assert_eq!(
            got,
            vec![("http://a/", 1), ("http://b/", 1), ("http://c/", 1)]
        );
        assert_eq!(
            ready[0].events[0].id, ready[1].events[0].id,
            "one event, one id, whichever target gets it"
        );
    }
}
