//! One socket's life: handshake, then a single task that reads client frames, drains the outbox into
//! coalesced writes, and keeps the socket alive, until the client leaves, the broker closes it, or the
//! server drains it (through the outbox, see [`crate::drain`]).
//!
//! One task per socket, not a reader/writer pair: a task pair doubles the per-socket memory for no gain,
//! since the writer only needs to run when the outbox wakes it. Every frame the server sends, replies
//! included, goes through the outbox, so the order a socket sees is the order the broker decided.
//! Every write (frames, pongs, errors, the close) is bounded by `write_timeout_ms`: a client that
//! stops reading is dropped and counted as a slow consumer instead of holding its session, its
//! timers and its queued close for ever. On a plain TCP socket the outbox also writes to the socket
//! directly while the session's writer is idle (see [`super::io`]): most deliveries never wake this
//! task.
//!
//! A session takes what it uses and nothing more: the broker, the list of live sockets for the drain,
//! and its [`SessionSettings`] (see [`SessionContext`]), never the server's whole state. This module
//! must never block the broker (it only drains what the broker queued), never write to the socket
//! except through [`super::writer`], and never decide a route: it is handed an admitted app.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};
use vestnik_broker::{App, Broker, ConnectionHandle, Drained};
use vestnik_protocol::frame::{self, CloseFrame, FrameError, Inbound};
use vestnik_protocol::{PusherCode, ServerMessage};

use super::counters::{AppCounters, SocketCounters};
use super::dispatch::{on_text, send_error};
use super::io::{text_header, ReadEnd, ReadLimits, SessionIo, Wire};
use super::writer::{lay_out, write_batch, write_last, Batch, WriteFailure};
use crate::config::ServerConfig;
use crate::live::{LiveSockets, Registration};

/// How long to wait for the client's close reply before dropping the connection.
///
/// RFC 6455 asks the closing side to wait for the peer's close frame before dropping TCP, so the
/// client sees a clean close with our code; two seconds is our bound on a client that never
/// answers, so a drain of thousands of sockets is not held up by a few silent ones.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The timing a session runs by, from the `[server]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Seconds of silence before the server pings, sent to the client in
    /// `pusher:connection_established` so that it pings on the same schedule.
    pub activity_timeout: u64,
    /// How long a ping waits for its pong before the socket is closed with 4201.
    pub pong_timeout: Duration,
    /// The limit on every write, flush and close (`write_timeout_ms`).
    pub write_timeout: Duration,
}

impl SessionSettings {
    /// The settings of `server`.
    /// Read once when the state is built, so a session does not reach into the config per socket.
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            activity_timeout: server.activity_timeout,
            pong_timeout: Duration::from_secs(server.pong_timeout),
            write_timeout: server.write_timeout(),
        }
    }
}

/// What every session on the node uses: the broker it speaks to, the node's list of open sockets
/// (so the drain can find it), its settings, how sockets are read, and the per-app traffic
/// counters. Built once; a session holds one pointer to it.
#[derive(Debug)]
pub struct SessionContext {
    /// The broker core.
    pub broker: Broker,
    /// The open sockets of this node; a session is listed there while it runs.
    pub sockets: LiveSockets,
    /// Timing.
    pub settings: SessionSettings,
    /// How sockets are read.
    pub limits: ReadLimits,
    /// Each app's counters, made at its first socket.
    pub counters: AppCounters,
}

impl SessionContext {
    /// The context of a node's sessions.
    pub fn new(
        broker: Broker,
        sockets: LiveSockets,
        settings: SessionSettings,
        limits: ReadLimits,
    ) -> Self {
        Self {
            broker,
            sockets,
            settings,
            limits,
            counters: AppCounters::default(),
        }
    }
}

/// Sends `pusher:error` with `code`, closes with the same code, and waits briefly for the reply.
/// Counts the refusal in `vestnik_sockets_refused_total` under `app_id` (the app the key named, or
/// `unknown`: never a value the client chose).
///
/// Used before a session exists (unknown key, disabled app, over a limit), so the frame is written
/// straight to the socket rather than through an outbox; the error frame comes first because
/// pusher-js reads the code from `pusher:error`, not from the close frame.
pub async fn refuse(refused: Box<Refused>, write_timeout: Duration) {
    let Refused {
        mut io,
        wire,
        app_id,
        code,
        message,
    } = *refused;
    metrics::counter!(
        "vestnik_sockets_refused_total",
        "app_id" => app_id,
        "code" => code.code().to_string()
    )
    .increment(1);
    let error = framed_error(code, &message);
    close(
        &mut io,
        &wire,
        Some(error),
        code.code(),
        &message,
        write_timeout,
    )
    .await;
}

/// A `pusher:error` frame with `code` and `message`, with its WebSocket header: bytes to write or
/// to owe as they are.
fn framed_error(code: PusherCode, message: &str) -> Bytes {
    let json = ServerMessage::Error {
        code: Some(code),
        message,
    }
    .encode();
    let (header, n) = text_header(json.len());
    let mut out = Vec::with_capacity(n + json.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&json);
    Bytes::from(out)
}

/// Writes what is `owed`, closes with `code` and `reason` (the write bounded by `write_timeout`), then
/// waits (bounded) for the client's close reply. The outbox is detached by then: nobody else writes.
/// The reason is cut to the 123 bytes a close frame has room for, at a UTF-8 boundary.
async fn close(
    io: &mut SessionIo,
    wire: &Wire,
    owed: Option<Bytes>,
    code: u16,
    reason: &str,
    write_timeout: Duration,
) {
    let frame = frame::close(code, reason);
    if write_last(io, wire, owed, &frame, write_timeout)
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
        while let Ok(message) = io.read().await {
            if matches!(message, Inbound::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A running session: what a socket's task keeps while the socket is open. Kept small, since there
/// is one per socket: handles and the socket itself.
pub struct Session {
    /// The socket's read side (and the write side, for TLS).
    io: SessionIo,
    /// The socket's write side.
    wire: Wire,
    /// The socket as the broker knows it.
    conn: ConnectionHandle,
    /// The node's session context.
    ctx: Arc<SessionContext>,
    /// The app's counters.
    counters: Arc<SocketCounters>,
    /// Listed for the drain while the session lives.
    _live: Registration,
    /// The client's address, for the logs.
    peer: IpAddr,
    /// Liveness bookkeeping.
    live: Liveness,
    /// Frames drained from the outbox, being written.
    out: VecDeque<Bytes>,
}

/// A socket the broker would not take (the app's connection limit, for example): what
/// [`refuse`] needs to tell the client.
pub struct Refused {
    /// The socket.
    pub io: SessionIo,
    /// Its write side.
    pub wire: Wire,
    /// The app the key named.
    pub app_id: String,
    /// The error and close code.
    pub code: PusherCode,
    /// Why.
    pub message: String,
}

/// Opens an admitted socket: asks the broker to connect it, attaches the direct writer, lists it
/// for the drain and queues `pusher:connection_established`. Then [`run`] drives it.
///
/// # Errors
/// [`Refused`] when the broker does not take the socket; [`refuse`] closes it.
pub fn open(
    io: SessionIo,
    wire: Wire,
    ctx: Arc<SessionContext>,
    app: Arc<App>,
    peer: IpAddr,
) -> Result<Box<Session>, Box<Refused>> {
    let conn = match ctx.broker.connect(Arc::clone(&app)) {
        Ok(c) => c,
        Err(e) => {
            return Err(Box::new(Refused {
                io,
                wire,
                app_id: app.id.clone(),
                code: e.code(),
                message: e.to_string(),
            }))
        }
    };
    let counters = ctx.counters.get(&conn.app().id);
    wire.count_with(Arc::clone(&counters));
    if let Some(direct) = wire.direct() {
        conn.outbox().attach(direct);
    }
    let live = ctx.sockets.register(&conn);
    tracing::debug!(%peer, socket_id = %conn.socket_id(), app_id = %conn.app().id, "socket connected");
    conn.send(
        ServerMessage::ConnectionEstablished {
            socket_id: &conn.socket_id().to_string(),
            activity_timeout: ctx.settings.activity_timeout,
        }
        .encode(),
    );
    metrics::counter!("vestnik_sockets_opened_total", "app_id" => conn.app().id.clone())
        .increment(1);
    let now = Instant::now();
    let liveness = Liveness {
        last_seen: now,
        ping_sent: None,
        signin_due: conn.app().signin_deadline().map(|d| now + d),
    };
    Ok(Box::new(Session {
        io,
        wire,
        conn,
        ctx,
        counters,
        _live: live,
        peer,
        live: liveness,
        out: VecDeque::new(),
    }))
}

/// Drives an open socket ([`drive`]) until it ends, then disconnects it from the broker, counts how
/// it ended and closes the socket.
///
/// `broker.disconnect` runs on every way out of `drive`, before the close is written, so the
/// socket's subscriptions (and presence membership, and the vacate webhook) are released even when
/// the client is too slow to receive the close.
///
/// The session is boxed: an async fn keeps its by-value arguments beside its own copy of them,
/// so a `Session` passed by value would sit twice in every socket's task.
pub async fn run(mut session: Box<Session>) {
    let end = drive(&mut session).await;
    // The rest runs once per socket: boxed, so its state does not sit in every idle socket's task.
    Box::pin(finish(session, end)).await;
}

/// The end of a session: the broker lets the socket go, the way it ended is counted, and the close
/// (or the reply to the client's close) is written with what the outbox still owed.
async fn finish(session: Box<Session>, end: End) {
    let Session {
        mut io,
        wire,
        conn,
        ctx,
        _live,
        peer,
        ..
    } = *session;
    let write_timeout = ctx.settings.write_timeout;
    // From here only this task writes to the socket; frames still queued are dropped, as the
    // socket is closing.
    let owed = conn.outbox().detach(&mut VecDeque::new());
    ctx.broker.disconnect(&conn);
    let app_id = conn.app().id.clone();
    let code = match &end {
        End::Close(code, _) => code.to_string(),
        End::Stalled => PusherCode::OverCapacity.code().to_string(),
        End::Gone | End::ClientClosed(_) => "client".to_owned(),
    };
    if matches!(end, End::Stalled)
        || matches!(end, End::Close(c, _) if c == PusherCode::OverCapacity.code())
    {
        metrics::counter!("vestnik_slow_consumer_disconnects_total", "app_id" => app_id.clone())
            .increment(1);
    }
    metrics::counter!("vestnik_sockets_closed_total", "app_id" => app_id, "code" => code)
        .increment(1);
    let socket_id = conn.socket_id();
    match end {
        End::Close(code, reason) => {
            close(&mut io, &wire, owed, code, &reason, write_timeout).await;
        }
        End::Stalled => {
            tracing::debug!(%peer, %socket_id, "dropped: a write stalled for {write_timeout:?}");
        }
        // A client that closed is owed our close reply.
        End::ClientClosed(frame) => {
            let reply = frame::close_reply(frame.as_ref());
            let _ = write_last(&mut io, &wire, owed, &reply, write_timeout).await;
        }
        // A client that vanished: this fails at once.
        End::Gone => {
            let _ = write_last(&mut io, &wire, owed, &[], write_timeout).await;
        }
    }
    tracing::debug!(%peer, %socket_id, "socket closed");
}

/// How a session ended.
enum End {
    /// The server closes with this code and reason.
    Close(u16, String),
    /// A write stalled past `write_timeout_ms`: the client stopped reading. Counted as a slow
    /// consumer (4100) and dropped without a close frame, since nothing more can be written.
    Stalled,
    /// The client left or the transport failed; nothing more to send.
    Gone,
    /// The client sent a close: it is owed the reply.
    ClientClosed(Option<CloseFrame>),
}

impl From<WriteFailure> for End {
    /// A stalled write makes a slow consumer; a failed one means the client is gone.
    fn from(f: WriteFailure) -> Self {
        match f {
            WriteFailure::Stalled => End::Stalled,
            WriteFailure::Failed => End::Gone,
        }
    }
}

/// Liveness bookkeeping: when to ping, when to give up, when sign-in is due.
///
/// One deadline at a time is armed: the earliest of "ping now", "pong overdue" and "sign-in due",
/// recomputed only when the timer fires, so that a busy socket costs no timer work per frame.
struct Liveness {
    /// When the client last sent anything: every frame proves it alive, not only pongs.
    last_seen: Instant,
    /// When the outstanding ping went out, if one did.
    ping_sent: Option<Instant>,
    /// When an app that requires sign-in closes a socket that has not signed in (4009); cleared
    /// once checked.
    signin_due: Option<Instant>,
}

impl Liveness {
    /// The client sent a frame: it is alive, and any outstanding ping is answered.
    ///
    /// Deliberately cheap (two stores, no timer reset): it runs for every frame read.
    fn seen(&mut self) {
        self.last_seen = Instant::now();
        self.ping_sent = None;
    }

    /// The next moment the timer must look: the pong deadline while a ping is out, else the end of
    /// the silence window (`activity`), or the sign-in deadline if that comes first.
    fn next_deadline(&self, settings: &SessionSettings) -> Instant {
        let alive = match self.ping_sent {
            Some(sent) => sent + settings.pong_timeout,
            None => self.last_seen + Duration::from_secs(settings.activity_timeout),
        };
        self.signin_due.map_or(alive, |due| due.min(alive))
    }
}

/// What woke the session's loop.
enum Turn {
    /// The outbox has frames, owed bytes or a close.
    Batch(Drained),
    /// The client sent something (or the read ended).
    Read(Result<Inbound, ReadEnd>),
    /// The liveness timer fired.
    Timer,
}

/// The session's one loop, which owns the socket until it ends. Each turn waits for whichever comes
/// first, in this order of preference:
///
/// 1. the outbox has frames (or a close): drain them all, write them, flush once
///    ([`write_batch`]); a close queued by the broker or the drain ends the loop after the frames
///    before it;
/// 2. the client sent a frame: a text message goes to the broker ([`on_text`]), whose replies come
///    back through the outbox like every other frame, so the order is the broker's; anything else
///    is handled at once ([`on_other`]);
/// 3. the liveness timer fired: close an unsigned socket past its sign-in deadline, ping after
///    `activity_timeout` of silence, close with 4201 when the pong does not come.
///
/// Returns how the session ended; [`run`] does the closing, so every way out goes through one path.
///
/// The wait is one hand-written poll of the three, not a `select!` of futures: the outbox and the
/// socket register the task's waker themselves, so an idle socket's task holds no wait-list entry,
/// only the timer. The rare, large states (a write that has to wait, a text message's handling)
/// are boxed while they run.
///
/// # Why this order
/// The outbox comes first so that a client flooding the server with frames cannot starve its own
/// deliveries, and a close queued by the broker or the drain is acted on before any further input
/// is read. The timer comes last: it only matters when the socket is otherwise idle, and every
/// frame read already proves the client alive (`Liveness::seen`).
async fn drive(s: &mut Session) -> End {
    // The timer is only re-armed when it fires: receiving a message moves `last_seen` but not the
    // timer, which then finds the real deadline later and sleeps again. No timer churn per message.
    let timer = tokio::time::sleep_until(s.live.next_deadline(&s.ctx.settings));
    tokio::pin!(timer);
    loop {
        let turn = std::future::poll_fn(|cx| {
            if let Poll::Ready(d) = s.conn.outbox().poll_next_batch(cx, &mut s.out) {
                return Poll::Ready(Turn::Batch(d));
            }
            if let Poll::Ready(m) = s.io.poll_message(cx) {
                return Poll::Ready(Turn::Read(m));
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Turn::Timer);
            }
            Poll::Pending
        })
        .await;
        // One await for whatever has to wait, boxed: its state is large and rare.
        match sort(s, turn, timer.as_mut()) {
            Next::Go => {}
            Next::End(end) => return end,
            Next::Wait(slow) => {
                if let Some(end) = slow.await {
                    return end;
                }
            }
        }
    }
}

/// What a turn of the loop leads to.
enum Next<'a> {
    /// Wait for the next turn.
    Go,
    /// The session ends.
    End(End),
    /// Something that has to wait (a write, a text message's handling), then maybe the end.
    Wait(Pin<Box<dyn Future<Output = Option<End>> + Send + 'a>>),
}

/// Handles a turn at once (a timer, a control frame, a binary frame, the end of the read), or
/// hands back what has to wait. A plain function that takes the turn by value, so that the turn
/// takes no room in the session's future while the slow part waits.
fn sort<'a>(s: &'a mut Session, turn: Turn, timer: Pin<&mut Sleep>) -> Next<'a> {
    match turn {
        // The drain closes sockets through their outbox (4200), like every other close.
        Turn::Batch(drained) => Next::Wait(Box::pin(on_batch(s, drained))),
        Turn::Read(msg) => {
            s.live.seen();
            match msg {
                // Only a text message can wait (a subscribe in a cluster, a numbered client event).
                Ok(Inbound::Text(text)) => Next::Wait(Box::pin(async move {
                    on_text(&s.ctx.broker, &s.conn, &s.counters, text).await;
                    None
                })),
                other => on_other(&s.conn, other).map_or(Next::Go, Next::End),
            }
        }
        Turn::Timer => on_timer(s, timer).map_or(Next::Go, Next::End),
    }
}

/// The liveness timer fired: close an unsigned socket past its sign-in deadline, ping after
/// `activity_timeout` of silence, close with 4201 when the pong does not come; then re-arm.
fn on_timer(s: &mut Session, timer: Pin<&mut Sleep>) -> Option<End> {
    let settings = &s.ctx.settings;
    let live = &mut s.live;
    let now = Instant::now();
    if live.signin_due.is_some_and(|due| now >= due) {
        live.signin_due = None;
        if s.conn.user_id().is_none() {
            s.conn.send_error_and_close(
                PusherCode::Unauthorized,
                "Connection not signed in within the time allowed",
            );
        }
    }
    match live.ping_sent {
        Some(sent) if now >= sent + settings.pong_timeout => {
            return Some(End::Close(
                PusherCode::PongTimeout.code(),
                "Pong reply not received".into(),
            ));
        }
        None if now >= live.last_seen + Duration::from_secs(settings.activity_timeout) => {
            s.conn.send(ServerMessage::Ping.encode());
            live.ping_sent = Some(now);
        }
        _ => {}
    }
    timer.reset(live.next_deadline(settings));
    None
}

/// Writes what the outbox handed over (`drained`, and the frames moved into `out`), or ends the
/// session for a close it asked for. Returns how the session ends, or `None` to go on.
async fn on_batch(s: &mut Session, drained: Drained) -> Option<End> {
    let outbox = s.conn.outbox();
    let out = &mut s.out;
    s.counters
        .sent(out.len() as u64, out.iter().map(|f| f.len() as u64).sum());
    if let Some(c) = drained.close {
        // The last batch goes out with the close frame, in `finish`'s bounded write after the
        // broker has let the socket go: a socket too slow to take it (a 4100) then costs nobody a
        // wait.
        let last = lay_out(drained.owed, out);
        outbox.give_back(last);
        return Some(End::Close(c.code.code(), c.reason));
    }
    let limit = s.ctx.settings.write_timeout;
    match write_batch(&mut s.io, &s.wire, outbox, drained.owed, out, limit).await {
        Batch::Written => {}
        Batch::Failed(f) => return Some(f.into()),
        Batch::Interrupted => {
            // The close that interrupted the write; frames queued behind it are dropped.
            let drained = outbox.drain_now(out);
            out.clear();
            if let Some(unwritten) = drained.owed {
                outbox.give_back(unwritten);
            }
            if let Some(c) = drained.close {
                return Some(End::Close(c.code.code(), c.reason));
            }
        }
    }
    if let Some(queued) = drained.queued_at {
        s.counters.batch_written(queued.elapsed());
    }
    None
}

/// Handles whatever else one read gave: a binary message is refused, a ping answered, a close
/// ends the session with its reply owed, and the end of the stream, a read error, a protocol
/// violation or an oversized message end it. Returns how the session ends, or `None` to go on.
///
/// A binary frame is answered with an error but the socket stays open: the Pusher protocol speaks
/// only JSON text, and pusher-js never sends binary, so this is a client bug worth reporting, not a
/// reason to drop it. An oversized message closes with `InvalidMessage` (4300), after a
/// `pusher:error` saying so: the rest of the message is not read, so the stream cannot resume. A
/// frame that breaks RFC 6455 closes with 1002, text that is not UTF-8 with 1007.
fn on_other(conn: &ConnectionHandle, msg: Result<Inbound, ReadEnd>) -> Option<End> {
    match msg {
        Ok(Inbound::Text(_) | Inbound::Pong) => None,
        Ok(Inbound::Binary(_)) => {
            send_error(
                conn,
                PusherCode::InvalidMessage,
                "Binary frames are not supported; send JSON text frames",
            );
            None
        }
        Ok(Inbound::Ping(payload)) => {
            // Ahead of the queued frames, in the outbox's order with every other byte.
            conn.outbox().push_owed(Bytes::from(frame::pong(&payload)));
            None
        }
        Ok(Inbound::Close(frame)) => Some(End::ClientClosed(frame)),
        Err(ReadEnd::Frame(e @ FrameError::TooLong { .. })) => {
            let message = e.to_string();
            // Owed: written before the close, after what the outbox already owed.
            conn.outbox()
                .push_owed(framed_error(PusherCode::InvalidMessage, &message));
            Some(End::Close(PusherCode::InvalidMessage.code(), message))
        }
        Err(ReadEnd::Frame(e)) => {
            tracing::debug!(socket_id = %conn.socket_id(), "closed: {e}");
            Some(End::Close(e.close_code(), e.to_string()))
        }
        Err(ReadEnd::Eof) => Some(End::Gone),
        Err(ReadEnd::Io(e)) => {
            tracing::debug!(socket_id = %conn.socket_id(), "read error: {e}");
            Some(End::Gone)
        }
    }
}
