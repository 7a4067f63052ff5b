//! The sockets of a recovery run. Each one subscribes to its channel, records every numbered event
//! and the last position it saw, and is cut by the run at random moments: it drops its TCP
//! connection without a close frame (a phone in a tunnel), stays away for a while, reconnects and
//! subscribes again with `recover` set to that position, as the `clients/js` plugin does.
//!
//! What it records ([`SockLog`]) is plain data: the run reads it to count what was lost, repeated
//! or out of order, how recoveries ended, and how long each took from the reconnect to the last
//! missed event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::chaos::schedule::SplitMix64;
use crate::pusher::{Frame, Payload, BENCH_EVENT};

/// A socket as the run uses it.
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest time from dialling to the subscription's answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying a failed open.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// A channel position, as the broker sends it beside each event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Position {
    /// The history's epoch.
    pub epoch: String,
    /// The event's offset in it.
    pub offset: u64,
}

/// What one socket saw over the run.
#[derive(Debug, Default)]
pub struct SockLog {
    /// Whether each sequence number arrived (index: seq).
    seen: Vec<bool>,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Events received again.
    pub duplicates: u64,
    /// Events received after a higher sequence number.
    pub out_of_order: u64,
    last_seq: Option<u64>,
    /// The last position seen (from `subscription_succeeded` or an event).
    pub position: Option<Position>,
    /// Subscribes sent with `recover`.
    pub recoveries: u64,
    /// Of those, answered `recovered: true`.
    pub recovered: u64,
    /// Of those, answered `recovered: false`, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Events the broker said were missed and replayed.
    pub missed: u64,
    /// Microseconds from each reconnect's dial to the last missed event (or the answer, when none
    /// was missed), for recoveries that succeeded.
    pub recovery_us: Vec<u64>,
    /// Times the run cut this socket.
    pub cuts: u64,
    /// Opens that failed (and were retried).
    pub open_failures: u64,
    /// The last open failure or unexpected close.
    pub last_error: Option<String>,
    /// Whether the socket is subscribed now.
    pub live: bool,
}

impl SockLog {
    /// Records numbered event `seq`.
    pub fn record(&mut self, seq: u64) {
        let i = usize::try_from(seq).unwrap_or(usize::MAX);
        if i >= self.seen.len() {
            self.seen
                .resize(i.saturating_add(1).max(self.seen.len() * 2), false);
        }
        if self.seen[i] {
            self.duplicates += 1;
        } else {
            self.seen[i] = true;
            self.unique += 1;
        }
        if self.last_seq.is_some_and(|last| seq < last) {
            self.out_of_order += 1;
        }
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
    }

    /// Whether `seq` arrived.
    pub fn has(&self, seq: u64) -> bool {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.seen.get(i))
            .copied()
            .unwrap_or(false)
    }
}

/// One socket of the run.
#[derive(Debug)]
pub struct Sock {
    /// Its channel's index.
    pub channel: usize,
    /// What it saw.
    pub log: Mutex<SockLog>,
}

/// Where and how sockets connect, and how often they are cut.
#[derive(Debug)]
pub struct Dial {
    /// The connect URL (`ws://…/app/KEY?protocol=7…`).
    pub url: String,
    /// The channel names, by index.
    pub channels: Vec<String>,
    /// Mean time between two cuts of one socket (uniform from 0 to twice this).
    pub cut_every: Duration,
    /// Mean time a cut socket stays away (uniform from 0 to twice this).
    pub away: Duration,
}

/// Runs `sock` until `stop`: subscribe, receive; while `cutting` is not cancelled, cut at random
/// moments and come back with `recover`. Returns once stopped, after a close frame.
pub async fn run(
    sock: Arc<Sock>,
    dial: Arc<Dial>,
    cutting: CancellationToken,
    stop: CancellationToken,
    seed: u64,
) {
    let mut rng = SplitMix64::new(seed);
    while !stop.is_cancelled() {
        let dialled = Instant::now();
        let ws = match tokio::time::timeout(OPEN_TIMEOUT, open(&sock, &dial, dialled)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                fail_open(&sock, format!("{e:#}"));
                pause(&stop, RETRY_AFTER).await;
                continue;
            }
            Err(_) => {
                fail_open(&sock, format!("not subscribed within {OPEN_TIMEOUT:?}"));
                continue;
            }
        };
        let cut_at = if cutting.is_cancelled() {
            None
        } else {
            Some(Instant::now() + uniform(&mut rng, dial.cut_every))
        };
        let cut = receive(ws, &sock, cut_at, &cutting, &stop).await;
        if !stop.is_cancelled() {
            // Still live at the run's end is what the report reads.
            sock.log.lock().live = false;
        }
        if cut {
            sock.log.lock().cuts += 1;
            pause(&stop, uniform(&mut rng, dial.away)).await;
        }
    }
}

fn fail_open(sock: &Sock, why: String) {
    let mut log = sock.log.lock();
    log.open_failures += 1;
    log.last_error = Some(why);
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// A duration from 0 to twice `mean`, to the millisecond.
fn uniform(rng: &mut SplitMix64, mean: Duration) -> Duration {
    let max_ms = u64::try_from(mean.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
    Duration::from_millis(rng.range(0, max_ms))
}

/// What an event or answer frame carries beside the fields [`Frame`] reads.
#[derive(Deserialize)]
struct Positioned {
    #[serde(default)]
    position: Option<Position>,
}

#[derive(Deserialize)]
struct Succeeded {
    #[serde(default)]
    recovery: Option<Recovery>,
}

#[derive(Deserialize)]
struct Recovery {
    recovered: bool,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// Opens a socket and subscribes, with `recover` when a position is known; the answer is
/// accounted, and what follows is read by [`receive`].
async fn open(sock: &Sock, dial: &Dial, dialled: Instant) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(dial.url.as_str())
        .await
        .context("websocket handshake")?;
    loop {
        let text = next_text(&mut ws).await?;
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        match frame.event.as_ref() {
            "pusher:connection_established" => break,
            "pusher:error" => bail!("refused: {}", frame.data_text().unwrap_or_default()),
            _ => {}
        }
    }
    let channel = &dial.channels[sock.channel];
    let from = sock.log.lock().position.clone();
    let mut data = serde_json::json!({ "channel": channel });
    if let Some(p) = &from {
        data["recover"] = serde_json::json!({ "epoch": p.epoch, "offset": p.offset });
    }
    let msg = serde_json::json!({ "event": "pusher:subscribe", "data": data });
    ws.send(Message::text(msg.to_string())).await?;
    loop {
        let text = next_text(&mut ws).await?;
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        match frame.event.as_ref() {
            "pusher_internal:subscription_succeeded" => {
                let at = serde_json::from_str::<Positioned>(&text)
                    .ok()
                    .and_then(|p| p.position);
                let answer = frame
                    .data_text()
                    .and_then(|d| serde_json::from_str::<Succeeded>(&d).ok())
                    .and_then(|s| s.recovery);
                let catch = {
                    let mut log = sock.log.lock();
                    log.live = true;
                    let mut catch = None;
                    if from.is_some() {
                        log.recoveries += 1;
                        match answer {
                            Some(r) if r.recovered => {
                                log.recovered += 1;
                                log.missed += r.missed;
                                if r.missed == 0 {
                                    log.recovery_us.push(micros(dialled));
                                }
                                catch = Some(r.missed);
                            }
                            Some(r) => {
                                let reason = r.reason.unwrap_or_else(|| "(none)".to_owned());
                                *log.failed.entry(reason).or_default() += 1;
                            }
                            None => {
                                *log.failed
                                    .entry("(no recovery field)".to_owned())
                                    .or_default() += 1;
                            }
                        }
                    }
                    if catch.is_none() && at.is_some() {
                        log.position = at;
                    }
                    catch
                };
                if let Some(missed) = catch {
                    return catch_up(ws, sock, missed, dialled).await;
                }
                return Ok(ws);
            }
            "pusher:subscription_error" | "pusher:error" => {
                bail!("{}: {}", frame.event, frame.data_text().unwrap_or_default())
            }
            _ => {}
        }
    }
}

/// Reads the `missed` replayed events that follow a recovered answer, then stamps the recovery.
async fn catch_up(mut ws: Ws, sock: &Sock, missed: u64, dialled: Instant) -> Result<Ws> {
    let mut left = missed;
    while left > 0 {
        let text = next_text(&mut ws).await?;
        if on_text(&text, sock) == Seen::Event {
            left -= 1;
        }
    }
    if missed > 0 {
        sock.log.lock().recovery_us.push(micros(dialled));
    }
    Ok(ws)
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Reads until the cut (true: the connection is dropped without a close frame), the run's stop
/// (false, after a close frame) or an unexpected end (false, recorded).
async fn receive(
    mut ws: Ws,
    sock: &Sock,
    cut_at: Option<Instant>,
    cutting: &CancellationToken,
    stop: &CancellationToken,
) -> bool {
    let cut = async {
        match cut_at {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => true,
                    // Cutting stopped: this socket stays until the run stops.
                    () = cutting.cancelled() => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(cut);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return false;
            }
            _ = &mut cut => {
                // Dropping the stream closes the TCP connection with no close frame.
                drop(ws);
                return true;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if on_text(t.as_str(), sock) == Seen::Ping {
                        let pong = Message::text(r#"{"event":"pusher:pong","data":{}}"#);
                        if ws.send(pong).await.is_err() {
                            sock.log.lock().last_error = Some("sending a pong failed".to_owned());
                            return false;
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    sock.log.lock().last_error = Some(format!("closed by the broker: {f:?}"));
                    return false;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    sock.log.lock().last_error = Some(format!("read error: {e}"));
                    return false;
                }
                None => {
                    sock.log.lock().last_error = Some("connection ended".to_owned());
                    return false;
                }
            }
        }
    }
}

/// What a frame was, for the reader.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Event,
    Ping,
    Other,
}

/// Records a numbered event and its position.
fn on_text(text: &str, sock: &Sock) -> Seen {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        return Seen::Other;
    };
    match frame.event.as_ref() {
        BENCH_EVENT => {
            let payload = frame
                .data_text()
                .and_then(|d| serde_json::from_str::<Payload>(&d).ok());
            let at = serde_json::from_str::<Positioned>(text)
                .ok()
                .and_then(|p| p.position);
            let mut log = sock.log.lock();
            if let Some(p) = payload {
                log.record(p.seq);
            }
            if at.is_some() {
                log.position = at;
            }
            Seen::Event
        }
        "pusher:ping" => Seen::Ping,
        _ => Seen::Other,
    }
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_counts_duplicates_and_disorder() {
        let mut log = SockLog::default();
        for seq in [0, 1, 3, 2, 3, 4] {
            log.record(seq);
        }
        assert_eq!(log.unique, 5);
        assert_eq!(log.duplicates, 1);
        assert_eq!(
            log.out_of_order, 1,
            "2 after 3; a repeat of the highest is a duplicate only"
        );
        assert!(log.has(4) && !log.has(5));
    }
}
