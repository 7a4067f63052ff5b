//! The sockets of a chaos run. Each socket belongs to one node and reconnects to it after any close,
//! as pusher-js does, until the run ends; it signs in and joins the presence channel according to
//! its role, and records every numbered event it receives in its [`SocketLog`].
//!
//! A socket knows nothing of faults: the run cuts a churn socket through [`Sock::cut`] and reads
//! the counts (opens, closes) to decide who stayed connected throughout. The only secret here is
//! the app secret, used to sign; it is never printed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::ledger::SocketLog;
use crate::pusher::Frame;
use crate::target::App;

/// The event name of numbered chaos events.
pub const CHAOS_EVENT: &str = "chaos";
/// The presence channel every member joins.
pub const PRESENCE_CHANNEL: &str = "presence-chaos";
/// Longest time from connect to every subscription succeeded.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a reconnect.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// A socket as the run uses it.
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The name of event channel `c`.
pub fn event_channel(c: usize) -> String {
    format!("chaos-{c}")
}

/// What a socket does besides receiving the numbered events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Only subscribes to the event channels.
    Plain,
    /// Signs in (`pusher:signin`) first.
    SignedIn,
    /// Signs in and joins the presence channel.
    Member,
    /// Like `Member`, and the run cuts it now and then (it reconnects).
    Churn,
}

impl Role {
    /// The role of socket `i` on a node: the four roles in turn.
    pub fn of(i: usize) -> Self {
        match i % 4 {
            0 => Role::Plain,
            1 => Role::SignedIn,
            2 => Role::Member,
            _ => Role::Churn,
        }
    }

    fn signs_in(self) -> bool {
        !matches!(self, Role::Plain)
    }

    /// Whether it joins the presence channel.
    pub fn is_member(self) -> bool {
        matches!(self, Role::Member | Role::Churn)
    }
}

/// A socket's counts, shared with the run.
#[derive(Debug, Default)]
pub struct SockState {
    /// Numbered events received.
    pub log: SocketLog,
    /// Subscribed now.
    pub live: bool,
    /// Times it was subscribed.
    pub opens: u32,
    /// Times it was closed or cut after being subscribed.
    pub closes: u32,
    /// Failed attempts to open.
    pub open_failures: u32,
    /// The last reason it closed.
    pub last_close: Option<String>,
}

/// One socket of the run.
#[derive(Debug)]
pub struct Sock {
    /// Node index.
    pub node: usize,
    /// Its role.
    pub role: Role,
    /// The user it signs in and joins presence as.
    pub user_id: String,
    /// Its counts.
    pub state: Mutex<SockState>,
    cut: Notify,
}

impl Sock {
    /// A socket for `node`, numbered `i` among the node's sockets.
    pub fn new(node: usize, i: usize) -> Self {
        Self {
            node,
            role: Role::of(i),
            user_id: format!("user-{node}-{i}"),
            state: Mutex::new(SockState::default()),
            cut: Notify::new(),
        }
    }

    /// Drops the connection without a close frame; the socket reconnects.
    pub fn cut(&self) {
        self.cut.notify_one();
    }
}

/// Where sockets connect and what they subscribe to.
#[derive(Debug, Clone)]
pub struct Dial {
    /// `ws://127.0.0.1:PORT` of each node.
    pub nodes: Vec<String>,
    /// The app.
    pub app: App,
    /// Event channels.
    pub channels: usize,
}

impl Dial {
    fn url(&self, node: usize) -> String {
        format!(
            "{}/app/{}?protocol=7&client=vestnik-bench-chaos&version=1.0",
            self.nodes[node], self.app.key
        )
    }
}

/// Runs `sock` until `stop`: open, receive, reconnect after any close.
pub async fn run(sock: Arc<Sock>, dial: Arc<Dial>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match open(&sock, &dial, true).await {
            Ok(ws) => {
                {
                    let mut st = sock.state.lock();
                    st.live = true;
                    st.opens += 1;
                }
                let reason = receive(ws, &sock, &stop).await;
                let mut st = sock.state.lock();
                st.live = false;
                if let Some(reason) = reason {
                    st.closes += 1;
                    st.last_close = Some(reason);
                }
            }
            Err(e) => {
                let mut st = sock.state.lock();
                st.open_failures += 1;
                st.last_close = Some(format!("open: {e:#}"));
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

/// Reads until the socket closes (`Some(reason)`) or the run stops (`None`, after a close frame).
async fn receive(mut ws: Ws, sock: &Sock, stop: &CancellationToken) -> Option<String> {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return None;
            }
            () = sock.cut.notified() => return Some("cut by the run".to_owned()),
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if on_text(t.as_str(), sock) {
                        let pong = Message::text(r#"{"event":"pusher:pong","data":{}}"#);
                        if let Err(e) = ws.send(pong).await {
                            return Some(format!("sending pong: {e}"));
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Some(f.map_or_else(
                        || "closed by the broker".to_owned(),
                        |f| format!("closed by the broker: {} {}", u16::from(f.code), f.reason),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(format!("read error: {e}")),
                None => return Some("connection ended".to_owned()),
            }
        }
    }
}

#[derive(Deserialize)]
struct ChaosData {
    s: u32,
    q: u64,
}

/// Records a numbered event; true when the frame was a ping to answer.
fn on_text(text: &str, sock: &Sock) -> bool {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        return false;
    };
    match frame.event.as_ref() {
        CHAOS_EVENT => {
            if let Some(d) = frame
                .data_text()
                .and_then(|d| serde_json::from_str::<ChaosData>(&d).ok())
            {
                sock.state.lock().log.record(d.s, d.q);
            }
            false
        }
        "pusher:ping" => true,
        _ => false,
    }
}

/// Opens a socket to the sock's node, signs in and subscribes as its role says, recording any
/// numbered event that arrives meanwhile when `record` is set.
pub async fn open(sock: &Sock, dial: &Dial, record: bool) -> Result<Ws> {
    tokio::time::timeout(OPEN_TIMEOUT, open_inner(sock, dial, record))
        .await
        .unwrap_or_else(|_| bail!("not subscribed within {OPEN_TIMEOUT:?}"))
}

async fn open_inner(sock: &Sock, dial: &Dial, record: bool) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(dial.url(sock.node))
        .await
        .context("websocket handshake")?;
    let socket_id = loop {
        let text = next_text(&mut ws).await?;
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        if frame.event == "pusher:connection_established" {
            #[derive(Deserialize)]
            struct Est {
                socket_id: String,
            }
            let est: Est = serde_json::from_str(&frame.data_text().unwrap_or_default())
                .context("connection_established data")?;
            break est.socket_id;
        }
        if frame.event == "pusher:error" {
            bail!("refused: {}", frame.data_text().unwrap_or_default());
        }
    };
    let app = &dial.app;
    let mut pending: Vec<String> = (0..dial.channels).map(event_channel).collect();
    if sock.role.signs_in() {
        let user_data =
            serde_json::json!({"id": sock.user_id, "user_info": {"role": "chaos"}}).to_string();
        let auth = vestnik_protocol::auth::sign_user(&app.key, &app.secret, &socket_id, &user_data);
        let msg = serde_json::json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}});
        ws.send(Message::text(msg.to_string())).await?;
    }
    for ch in &pending {
        let msg = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": ch}});
        ws.send(Message::text(msg.to_string())).await?;
    }
    if sock.role.is_member() {
        let cd = serde_json::json!({"user_id": sock.user_id, "user_info": {"node": sock.node}})
            .to_string();
        let auth = vestnik_protocol::auth::sign_channel(
            &app.key,
            &app.secret,
            &socket_id,
            PRESENCE_CHANNEL,
            Some(&cd),
        );
        let msg = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": PRESENCE_CHANNEL, "auth": auth, "channel_data": cd}});
        ws.send(Message::text(msg.to_string())).await?;
        pending.push(PRESENCE_CHANNEL.to_owned());
    }
    let mut signed_in = !sock.role.signs_in();
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
            CHAOS_EVENT if record => {
                on_text(&text, sock);
            }
            _ => {}
        }
    }
    Ok(ws)
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

/// A socket that subscribes like a plain one and then never reads again.
#[derive(Debug)]
pub struct SlowReader {
    ws: Option<Ws>,
}

impl SlowReader {
    /// Opens it on `node`.
    pub async fn open(node: usize, dial: &Dial) -> Result<Self> {
        let sock = Sock::new(node, 0);
        let ws = open(&sock, dial, false).await?;
        Ok(Self { ws: Some(ws) })
    }

    /// Reads what is left, for at most `wait`: whether the broker closed it (it should, as a slow
    /// consumer, once its queue filled or a write stalled).
    pub async fn closed_by_broker(&mut self, wait: Duration) -> bool {
        let Some(mut ws) = self.ws.take() else {
            return true;
        };
        let read_all = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(wait, read_all).await.unwrap_or(false)
    }
}
