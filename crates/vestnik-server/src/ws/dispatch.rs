//! What a client's text message does: parsed once by the protocol crate, then one broker call per
//! message kind, whose answers come back through the socket's outbox. The session
//! ([`super::session`]) reads the frames and calls [`on_text`]; this module must never read or
//! write the socket.

use vestnik_broker::{Broker, ConnectionHandle, SubscribeReady};
use vestnik_protocol::message::MessageError;
use vestnik_protocol::{ClientMessage, PusherCode, ServerMessage};

use super::counters::SocketCounters;

/// Handles a client's text message: parsed, then handed to the broker, whose replies come back
/// through the outbox.
pub(super) async fn on_text(
    broker: &Broker,
    conn: &ConnectionHandle,
    counters: &SocketCounters,
    text: String,
) {
    counters.messages_in.increment(1);
    counters.bytes_in.increment(text.len() as u64);
    let message = ClientMessage::parse(&text);
    // In a cluster, a subscribe first waits (a few ms, at most 2 s) for this node to listen to the
    // channel's route shard, so an event published once the client saw `subscription_succeeded`
    // reaches it, and for the channel's position and missed events from the history store where
    // the backbone keeps it.
    let mut ready = SubscribeReady::default();
    if let Ok(ClientMessage::Subscribe(sub)) = &message {
        if let Some(wait) = broker.subscribe_ready(conn, sub) {
            ready = wait.await;
        }
    }
    handle_message(broker, conn, message, ready).await;
}

/// Queues a `pusher:error` with `code` on the socket's outbox, behind whatever the broker queued.
pub(super) fn send_error(conn: &ConnectionHandle, code: PusherCode, message: &str) {
    conn.send(
        ServerMessage::Error {
            code: Some(code),
            message,
        }
        .encode(),
    );
}

/// Dispatches one client message to the broker and queues the reply, if any.
///
/// The message is parsed once by the protocol crate into a closed enum; each variant maps to one
/// broker call. Refusals become the wire's own answers: a `pusher:subscription_error` on the
/// channel for a refused subscription (so pusher-js reports it on that channel), an error and a
/// close for a failed sign-in, a counted `pusher:error` for a refused client event.
///
/// The broker is synchronous: nothing here awaits, so one slow call cannot hold up the session's
/// writes; whatever the broker decides comes back through the outbox. (The one wait, for a
/// subscribe's route shard in a cluster, happens before, in [`on_text`].)
async fn handle_message(
    broker: &Broker,
    conn: &ConnectionHandle,
    message: Result<ClientMessage, MessageError>,
    ready: SubscribeReady,
) {
    match message {
        Ok(ClientMessage::Ping) => conn.send(ServerMessage::Pong.encode()),
        Ok(ClientMessage::Pong) => {}
        Ok(ClientMessage::Subscribe(sub)) => {
            let channel = sub.channel.clone();
            if let Err(e) = broker.subscribe_with(conn, sub, ready) {
                tracing::debug!(socket_id = %conn.socket_id(), %channel, "subscription refused: {e}");
                conn.send(
                    ServerMessage::SubscriptionError {
                        channel: channel.as_str(),
                        kind: e.kind(),
                        error: &e.to_string(),
                        status: e.status(),
                    }
                    .encode(),
                );
            }
        }
        Ok(ClientMessage::Unsubscribe { channel }) => broker.unsubscribe(conn, &channel),
        Ok(ClientMessage::Signin { auth, user_data }) => {
            if let Err(e) = broker.signin(conn, &auth, &user_data) {
                conn.send_error_and_close(e.code(), &e.to_string());
            }
        }
        Ok(ClientMessage::ClientEvent {
            event,
            channel,
            data,
        }) => {
            if let Err(e) = broker
                .client_event_numbered(conn, &event, &channel, &data)
                .await
            {
                let reason = match e {
                    vestnik_broker::ClientEventError::RateLimited(_) => "rate_limit",
                    vestnik_broker::ClientEventError::Disabled => "disabled",
                    vestnik_broker::ClientEventError::ChannelKind(_) => "channel_kind",
                    vestnik_broker::ClientEventError::NotSubscribed(_) => "not_subscribed",
                    vestnik_broker::ClientEventError::TooLarge { .. } => "too_large",
                    vestnik_broker::ClientEventError::OverQuota => "over_quota",
                };
                metrics::counter!(
                    "vestnik_client_events_rejected_total",
                    "app_id" => conn.app().id.clone(),
                    "reason" => reason
                )
                .increment(1);
                send_error(conn, e.code(), &e.to_string());
            }
        }
        Err(MessageError::InvalidChannel { channel, error }) => {
            // Reported on the channel, so pusher-js surfaces it as that channel's subscription_error.
            let shown: String = channel.chars().take(256).collect();
            conn.send(
                ServerMessage::SubscriptionError {
                    channel: &shown,
                    kind: vestnik_protocol::message::SubscriptionErrorKind::InvalidChannel,
                    error: &format!("Invalid channel name: {error}"),
                    status: 400,
                }
                .encode(),
            );
        }
        Err(e) => send_error(conn, e.code(), &e.to_string()),
    }
}
