//! The bridge from the broker's [`BrokerEvent`]s to the durable webhook sender.
//!
//! The broker knows nothing of webhooks or disks; this sink turns the happenings it reports into
//! Pusher webhook events and hands them to [`Webhooks::submit`], which never blocks. Apps without
//! targets cost one read lock and one map lookup. This module must never wait on delivery.

use vestnik_broker::{App, BrokerEvent, EventSink};
use vestnik_webhooks::{AppHooks, EventType, WebhookEvent, Webhooks};

use crate::config::Config;

/// Forwards broker events to the webhook sender.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    /// The started sender; `submit` only queues.
    hooks: Webhooks,
}

impl WebhookSink {
    /// A sink over a started sender.
    pub fn new(hooks: Webhooks) -> Self {
        Self { hooks }
    }
}

/// The webhook targets of every app, in the sender's terms.
///
/// Apps without targets are left out, so the webhook service is not started at all when no app
/// has one (see [`crate::server::run`]) and no spool file appears for a broker that sends none.
pub fn app_hooks(config: &Config) -> Vec<AppHooks> {
    config
        .apps
        .iter()
        .filter(|a| !a.webhooks.is_empty())
        .map(|a| AppHooks {
            app_id: a.id.clone(),
            key: a.key.clone(),
            secret: a.secret.clone(),
            targets: a.webhooks.clone(),
        })
        .collect()
}

impl EventSink for WebhookSink {
    /// Turns one broker happening into a webhook event for the app's targets that want it; never
    /// waits (the sender's queue is bounded and drops, counted, when full).
    ///
    /// One check before any allocation: a target of the app, as the sender has them now, wants
    /// this kind (hold partners included). The sender's table, not `app.webhooks`, decides: a
    /// socket holds the app as it connected, and targets set live since then apply to it too.
    /// Only then is the event built, copying the client event's data, so a busy app without
    /// client-event webhooks pays nothing per client event.
    fn on_event(&self, app: &App, event: BrokerEvent<'_>) {
        // Another node has the member or the channel now: what this node holds back for them is
        // void (see `Webhooks::cancel_held`). Nothing is sent for these.
        match event {
            BrokerEvent::MemberJoinedElsewhere { channel, user_id } => {
                let added = WebhookEvent::MemberAdded {
                    channel: channel.clone(),
                    user_id: user_id.to_owned(),
                };
                return self.hooks.cancel_held(&app.id, &added);
            }
            BrokerEvent::OccupiedElsewhere { channel } => {
                let occupied = WebhookEvent::ChannelOccupied {
                    channel: channel.clone(),
                };
                return self.hooks.cancel_held(&app.id, &occupied);
            }
            _ => {}
        }
        let kind = match event {
            BrokerEvent::ChannelOccupied { .. } => EventType::ChannelOccupied,
            BrokerEvent::ChannelVacated { .. } => EventType::ChannelVacated,
            BrokerEvent::MemberAdded { .. } => EventType::MemberAdded,
            BrokerEvent::MemberRemoved { .. } => EventType::MemberRemoved,
            BrokerEvent::ClientEvent { .. } => EventType::ClientEvent,
            BrokerEvent::CacheMiss { .. } => EventType::CacheMiss,
            BrokerEvent::SubscriptionCount { .. } => EventType::SubscriptionCount,
            BrokerEvent::Subscribed { .. }
            | BrokerEvent::Unsubscribed { .. }
            | BrokerEvent::Published { .. }
            | BrokerEvent::MemberJoinedElsewhere { .. }
            | BrokerEvent::OccupiedElsewhere { .. } => return,
        };
        if !self.hooks.wants(&app.id, kind) {
            return;
        }
        let channel = event.channel().clone();
        let event = match event {
            BrokerEvent::ChannelOccupied { .. } => WebhookEvent::ChannelOccupied { channel },
            BrokerEvent::ChannelVacated { .. } => WebhookEvent::ChannelVacated { channel },
            BrokerEvent::MemberAdded { user_id, .. } => WebhookEvent::MemberAdded {
                channel,
                user_id: user_id.to_owned(),
            },
            BrokerEvent::MemberRemoved { user_id, .. } => WebhookEvent::MemberRemoved {
                channel,
                user_id: user_id.to_owned(),
            },
            BrokerEvent::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => WebhookEvent::ClientEvent {
                channel,
                event: event.to_owned(),
                data: data.to_owned(),
                socket_id,
                user_id: user_id.map(str::to_owned),
            },
            BrokerEvent::CacheMiss { .. } => WebhookEvent::CacheMiss { channel },
            BrokerEvent::SubscriptionCount { count, .. } => WebhookEvent::SubscriptionCount {
                channel,
                count: count as u64,
            },
            BrokerEvent::Subscribed { .. }
            | BrokerEvent::Unsubscribed { .. }
            | BrokerEvent::Published { .. }
            | BrokerEvent::MemberJoinedElsewhere { .. }
            | BrokerEvent::OccupiedElsewhere { .. } => return,
        };
        self.hooks.submit(&app.id, event);
    }
}
