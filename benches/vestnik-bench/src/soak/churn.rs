//! The churn of a soak run: short-lived sockets opened at a steady rate, and API triggers.
//!
//! Each session connects to one node, maybe signs in, subscribes to a public, a private and maybe
//! a presence channel (drawn from small pools, so channels are shared, occupied and vacated over
//! and over), sends client events, holds for a random time, unsubscribes from one channel, and
//! leaves, half of the time with a close frame and half by dropping the TCP connection. The
//! trigger loop posts single events and batches to the same pools through every node's API.
//!
//! Users are drawn from a pool too, so a user signs in on several sockets and nodes at once. The
//! app secret signs subscriptions and calls; it is never printed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ApiConn, ApiTarget};
use crate::chaos::schedule::SplitMix64;
use crate::pusher::Frame;
use crate::target::App;

/// Longest time from connect to every subscription succeeded.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the close handshake of a clean leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Users sessions sign in as (shared, so a user has several sockets).
const USERS: u64 = 64;
/// Largest batch the trigger loop posts (the broker's default `max_batch_events` is 10).
const BATCH: usize = 5;
/// One trigger call in this many is a batch.
const BATCH_EVERY: u64 = 4;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the churn does, after defaults.
#[derive(Debug, Clone)]
pub struct ChurnPlan {
    /// `ws://127.0.0.1:PORT` of each node.
    pub nodes: Vec<String>,
    /// The app.
    pub app: App,
    /// New sessions per second.
    pub rate: f64,
    /// Mean time a session holds its socket.
    pub hold: Duration,
    /// Channels in each pool (public, private, presence).
    pub channels: u64,
    /// Events triggered per second over the API.
    pub trigger_rate: f64,
}

/// Counts of what the churn did, shared by its tasks.
#[derive(Debug, Default)]
pub struct ChurnCounts {
    /// Sessions started.
    pub sessions: AtomicU64,
    /// Sessions that were subscribed everywhere they asked.
    pub opened: AtomicU64,
    /// Sessions that failed to open or were cut by the broker.
    pub failed: AtomicU64,
    /// Sign-ins that succeeded.
    pub signins: AtomicU64,
    /// Presence channels joined.
    pub presence_joins: AtomicU64,
    /// Client events sent.
    pub client_events: AtomicU64,
    /// Frames received by sessions after they opened.
    pub received: AtomicU64,
    /// API calls answered 2xx (single and batch).
    pub triggers_ok: AtomicU64,
    /// API calls refused or failed.
    pub triggers_failed: AtomicU64,
    /// The last failure, for the report.
    pub last_error: Mutex<Option<String>>,
}

/// The churn's figures for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnFigures {
    /// Sessions started.
    pub sessions: u64,
    /// Sessions subscribed everywhere they asked.
    pub opened: u64,
    /// Sessions that failed.
    pub failed: u64,
    /// Sign-ins.
    pub signins: u64,
    /// Presence joins.
    pub presence_joins: u64,
    /// Client events sent.
    pub client_events: u64,
    /// Frames received.
    pub received: u64,
    /// API calls that succeeded.
    pub triggers_ok: u64,
    /// API calls that failed.
    pub triggers_failed: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

impl ChurnCounts {
    /// A copy of the counts.
    pub fn figures(&self) -> ChurnFigures {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChurnFigures {
            sessions: g(&self.sessions),
            opened: g(&self.opened),
            failed: g(&self.failed),
            signins: g(&self.signins),
            presence_joins: g(&self.presence_joins),
            client_events: g(&self.client_events),
            received: g(&self.received),
            triggers_ok: g(&self.triggers_ok),
            triggers_failed: g(&self.triggers_failed),
            last_error: self.last_error.lock().clone(),
        }
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(why);
    }
}

/// Opens sessions at `plan.rate` until `stop`, each on `sessions`; when stopped, every session
/// still open leaves at once. While `live_cap` sessions run (a broker that stopped answering),
/// it skips its turn and counts a failure instead of piling up sockets.
pub async fn spawn_sessions(
    plan: Arc<ChurnPlan>,
    counts: Arc<ChurnCounts>,
    sessions: TaskTracker,
    stop: CancellationToken,
    seed: u64,
    live_cap: usize,
) {
    let mut rng = SplitMix64::new(seed);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(0.01)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if sessions.len() >= live_cap {
            counts.fail(format!(
                "{live_cap} sessions running at once: the broker is not keeping up"
            ));
            continue;
        }
        let s = Session {
            node: usize::try_from(n).unwrap_or(0) % plan.nodes.len(),
            seed: rng.next_u64(),
        };
        n += 1;
        counts.sessions.fetch_add(1, Ordering::Relaxed);
        let (plan, counts, stop) = (Arc::clone(&plan), Arc::clone(&counts), stop.clone());
        sessions.spawn(async move {
            if let Err(e) = s.run(&plan, &counts, &stop).await {
                counts.fail(format!("{e:#}"));
            }
        });
    }
}

/// One short-lived socket.
struct Session {
    node: usize,
    seed: u64,
}

impl Session {
    async fn run(
        self,
        plan: &ChurnPlan,
        counts: &ChurnCounts,
        stop: &CancellationToken,
    ) -> Result<()> {
        let mut rng = SplitMix64::new(self.seed);
        let coin = |rng: &mut SplitMix64| rng.next_u64() % 2 == 0;
        let url = format!(
            "{}/app/{}?protocol=7&client=vestnik-bench-soak&version=1.0",
            plan.nodes[self.node], plan.app.key
        );
        let public = format!("soak-{}", below(&mut rng, plan.channels));
        let private = format!("private-soak-{}", below(&mut rng, plan.channels));
        let presence =
            coin(&mut rng).then(|| format!("presence-soak-{}", below(&mut rng, plan.channels)));
        let user = format!("user-{}", below(&mut rng, USERS));
        let sign_in = coin(&mut rng);
        let hold_ms = u64::try_from(plan.hold.as_millis()).unwrap_or(u64::MAX);
        let hold = Duration::from_millis(rng.range(0, hold_ms.saturating_mul(2)));
        let clean = coin(&mut rng);

        let mut ws = tokio::time::timeout(
            OPEN_TIMEOUT,
            open(
                &url,
                &plan.app,
                &user,
                sign_in,
                [&public, &private],
                presence.as_deref(),
            ),
        )
        .await
        .unwrap_or_else(|_| bail!("not subscribed within {OPEN_TIMEOUT:?}"))?;
        counts.opened.fetch_add(1, Ordering::Relaxed);
        if sign_in {
            counts.signins.fetch_add(1, Ordering::Relaxed);
        }
        if presence.is_some() {
            counts.presence_joins.fetch_add(1, Ordering::Relaxed);
        }
        let mut client_targets = vec![private.clone()];
        client_targets.extend(presence.clone());
        for ch in &client_targets {
            let msg = json!({"event": "client-soak", "channel": ch, "data": {"from": user}});
            ws.send(Message::text(msg.to_string())).await?;
            counts.client_events.fetch_add(1, Ordering::Relaxed);
        }
        let unsubscribe_at = tokio::time::Instant::now() + hold / 2;
        let leave_at = tokio::time::Instant::now() + hold;
        let mut unsubscribed = false;
        loop {
            let wake = if unsubscribed {
                leave_at
            } else {
                unsubscribe_at
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {
                    if unsubscribed {
                        break;
                    }
                    let msg = json!({"event": "pusher:unsubscribe", "data": {"channel": public}});
                    ws.send(Message::text(msg.to_string())).await?;
                    unsubscribed = true;
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        counts.received.fetch_add(1, Ordering::Relaxed);
                        if t.as_str().contains("\"pusher:ping\"") {
                            let pong = Message::text(r#"{"event":"pusher:pong","data":{}}"#);
                            ws.send(pong).await?;
                        }
                    }
                    Some(Ok(Message::Close(f))) => bail!("closed by the broker: {f:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("read error: {e}"),
                    None => bail!("connection ended by the broker"),
                }
            }
        }
        if clean {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
        }
        // Otherwise dropping `ws` drops the TCP connection without a close frame.
        Ok(())
    }
}

#[derive(Deserialize)]
struct Established {
    socket_id: String,
}

/// Connects, signs in when asked, subscribes, and waits until every step succeeded.
async fn open(
    url: &str,
    app: &App,
    user: &str,
    sign_in: bool,
    channels: [&String; 2],
    presence: Option<&str>,
) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("websocket handshake")?;
    let socket_id = loop {
        let text = next_text(&mut ws).await?;
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        match frame.event.as_ref() {
            "pusher:connection_established" => {
                let est: Established = serde_json::from_str(&frame.data_text().unwrap_or_default())
                    .context("connection_established data")?;
                break est.socket_id;
            }
            "pusher:error" => bail!("refused: {}", frame.data_text().unwrap_or_default()),
            _ => {}
        }
    };
    if sign_in {
        let user_data = json!({"id": user, "user_info": {"soak": true}}).to_string();
        let auth = vestnik_protocol::auth::sign_user(&app.key, &app.secret, &socket_id, &user_data);
        let msg = json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}});
        ws.send(Message::text(msg.to_string())).await?;
    }
    let mut pending: Vec<String> = Vec::new();
    for ch in channels {
        let mut data = json!({"channel": ch});
        if ch.starts_with("private-") {
            data["auth"] =
                vestnik_protocol::auth::sign_channel(&app.key, &app.secret, &socket_id, ch, None)
                    .into();
        }
        ws.send(Message::text(
            json!({"event": "pusher:subscribe", "data": data}).to_string(),
        ))
        .await?;
        pending.push(ch.clone());
    }
    if let Some(ch) = presence {
        let cd = json!({"user_id": user, "user_info": {"soak": true}}).to_string();
        let auth =
            vestnik_protocol::auth::sign_channel(&app.key, &app.secret, &socket_id, ch, Some(&cd));
        let msg = json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": auth, "channel_data": cd}});
        ws.send(Message::text(msg.to_string())).await?;
        pending.push(ch.to_owned());
    }
    let mut signed_in = !sign_in;
    while !pending.is_empty() || !signed_in {
        let text = next_text(&mut ws).await?;
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        match frame.event.as_ref() {
            "pusher_internal:subscription_succeeded" => {
                let ch = frame.channel.as_deref().unwrap_or_default();
                pending.retain(|p| p != ch);
            }
            "pusher:signin_success" => signed_in = true,
            "pusher:subscription_error" | "pusher:error" => {
                bail!("{}: {}", frame.event, frame.data_text().unwrap_or_default())
            }
            _ => {}
        }
    }
    Ok(ws)
}

/// A number in `0..n` (0 when `n` is 0).
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.range(0, n.saturating_sub(1))
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("closed while opening: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended while opening"),
        }
    }
}

/// Triggers at `plan.trigger_rate` until `stop`, through each node's API in turn: single events,
/// and one call in [`BATCH_EVERY`] a batch of [`BATCH`], on channels of all three pools.
pub async fn trigger(
    plan: Arc<ChurnPlan>,
    targets: Vec<Arc<ApiTarget>>,
    counts: Arc<ChurnCounts>,
    stop: CancellationToken,
    seed: u64,
) {
    let mut rng = SplitMix64::new(seed);
    let mut conns: Vec<ApiConn> = targets.into_iter().map(ApiConn::new).collect();
    let events_per_call = (BATCH_EVERY - 1 + BATCH as u64) as f64 / BATCH_EVERY as f64;
    let per_s = (plan.trigger_rate / events_per_call).max(0.01);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let path = format!("/apps/{}/", plan.app.id);
    let mut n = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let event = |rng: &mut SplitMix64| {
            let kind = ["soak-", "private-soak-", "presence-soak-"]
                [usize::try_from(below(rng, 3)).unwrap_or(0)];
            let channel = format!("{kind}{}", below(rng, plan.channels));
            json!({"name": "soak", "channel": channel, "data": format!(r#"{{"n":{n}}}"#)})
        };
        let (route, body) = if n % BATCH_EVERY == BATCH_EVERY - 1 {
            let batch: Vec<_> = (0..BATCH).map(|_| event(&mut rng)).collect();
            ("batch_events", json!({"batch": batch}))
        } else {
            ("events", event(&mut rng))
        };
        let i = usize::try_from(n).unwrap_or(0) % conns.len();
        let result = conns[i]
            .post(&format!("{path}{route}"), Bytes::from(body.to_string()))
            .await;
        match result {
            Ok(()) => counts.triggers_ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                *counts.last_error.lock() = Some(format!("trigger: {e}"));
                counts.triggers_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        n += 1;
    }
}
