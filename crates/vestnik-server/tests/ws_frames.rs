//! Client WebSocket frames on the wire, against the real broker (issue 17: our own frame parser,
//! `vestnik_protocol::frame`, read by `ws::io::SessionIo`, answered by `ws::session`).
//!
//! The parser's unit tests feed it slices; these tests check what only a socket shows: frames that
//! share one TCP write, a frame that arrives one byte per write (so `SessionIo` keeps and re-parses
//! partial bytes), a fragmented message with a ping between its fragments, a binary frame (an
//! error, the socket stays open), the close codes a bad frame earns (1002 for a protocol error,
//! 1007 for text that is not UTF-8), the close handshake started by the client, and a message
//! refused from its header as over `max_message_bytes` (pusher:error 4300, then close 4300) without
//! the client sending its payload. And after each failure the broker still serves other sockets.
//!
//! A WebSocket library would refuse to send most of these frames (unmasked, RSV1 set, bad UTF-8, a
//! header without its payload) and would hide how the server's frames are split, so the client here
//! is a raw TCP socket: the HTTP upgrade is written by hand, client frames are masked by hand, and
//! the server's frames are parsed by hand (and must be unmasked, as RFC 6455 §5.1 requires).
//!
//! Every wait has a deadline ([`WAIT`]); nothing sleeps to wait.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The handshake key of RFC 6455 §1.3 and the accept value the server must derive from it.
const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const HANDSHAKE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client frame's mask: every byte non-zero, so a server that forgot to unmask would see garbage.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl ServerFrame {
    /// The payload of a text frame, as JSON.
    fn json(&self) -> Value {
        assert_eq!(self.opcode, TEXT, "expected a text frame, got {self:?}");
        assert!(self.fin, "the server sends whole text frames: {self:?}");
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "server text is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    /// The code and reason of a close frame (`None` for an empty one).
    fn close(&self) -> Option<(u16, String)> {
        assert_eq!(self.opcode, CLOSE, "expected a close frame, got {self:?}");
        match self.payload.as_slice() {
            [] => None,
            [hi, lo, reason @ ..] => Some((
                u16::from_be_bytes([*hi, *lo]),
                String::from_utf8(reason.to_vec()).expect("a close reason is UTF-8"),
            )),
            [_] => panic!("a close payload of one byte: {self:?}"),
        }
    }
}

/// A masked client frame: `b0` is the first header byte as sent (FIN, RSV bits and opcode).
fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    vestnik_protocol::frame::client_frame(b0, MASK, payload)
}

/// A masked client frame with no reserved bit set.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(if fin { 0x80 } else { 0 } | opcode, payload)
}

/// A final masked text frame carrying `v` as JSON.
fn text(v: &Value) -> Vec<u8> {
    frame(true, TEXT, v.to_string().as_bytes())
}

fn subscribe(channel: &str) -> Value {
    json!({"event": "pusher:subscribe", "data": {"channel": channel}})
}

fn pusher_ping() -> Value {
    json!({"event": "pusher:ping", "data": {}})
}

/// A WebSocket client over a raw TCP socket.
struct RawWs {
    stream: TcpStream,
    /// Bytes read and not yet parsed into a frame.
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens a socket, upgrades it by hand (checking the 101 and `Sec-WebSocket-Accept`) and reads
    /// `pusher:connection_established`.
    async fn connect(b: &BrokerProcess) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(("127.0.0.1", b.port)))
            .await
            .expect("connect within the wait")
            .expect("the broker accepts connections");
        // Every client write reaches the server as written: no Nagle coalescing.
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        let mut ws = Self {
            stream,
            buf: Vec::new(),
        };
        let request = format!(
            "GET /app/{KEY}?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\n\
             Host: 127.0.0.1:{}\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\
             \r\n",
            b.port
        );
        ws.write(request.as_bytes()).await;
        let head = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(ws.buf[..end].to_vec()).expect("ASCII headers");
                    ws.buf.drain(..end + 4);
                    return head;
                }
                assert!(ws.fill().await, "the server closed during the handshake");
            }
        })
        .await
        .expect("the handshake answer within the wait");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        assert!(status.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        let accept = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|(_, v)| v.trim().to_owned());
        assert_eq!(accept.as_deref(), Some(HANDSHAKE_ACCEPT), "{head}");
        let hello = ws.next_json().await;
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        ws
    }

    /// Writes `bytes` in one write call.
    async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("the write within the wait")
        .expect("the socket takes the write");
    }

    /// Reads once more into `buf`; false at the end of the stream (or a reset after the close).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// The next server frame, or `None` when the server ended the connection first; panics after
    /// [`WAIT`].
    async fn next_frame_or_end(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((frame, len)) = parse_server_frame(&self.buf) {
                    self.buf.drain(..len);
                    return Some(frame);
                }
                if !self.fill().await {
                    assert!(
                        self.buf.is_empty(),
                        "the stream ended inside a frame: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        })
        .await
        .expect("a server frame (or the end) within the wait")
    }

    /// The next server frame; panics if the connection ends first.
    async fn next_frame(&mut self) -> ServerFrame {
        self.next_frame_or_end()
            .await
            .expect("a frame, not the end of the connection")
    }

    /// The next server frame, which must be a JSON text frame.
    async fn next_json(&mut self) -> Value {
        self.next_frame().await.json()
    }

    /// Reads the next frame, which must be a close, answers it as a client should (RFC 6455
    /// §5.5.1), then reads the end of the connection. Returns the close's code and reason.
    async fn expect_close_then_end(&mut self) -> Option<(u16, String)> {
        let close = self.next_frame().await.close();
        self.reply_to_close(close.as_ref()).await;
        self.expect_end().await;
        close
    }

    /// Echoes a server's close. The server may already have dropped the connection (it stops
    /// reading after a frame it refused), so a failed write is not an error.
    async fn reply_to_close(&mut self, close: Option<&(u16, String)>) {
        let payload = close.map(|(code, _)| code.to_be_bytes().to_vec());
        let reply = frame(true, CLOSE, payload.as_deref().unwrap_or_default());
        let _ = tokio::time::timeout(WAIT, self.stream.write_all(&reply)).await;
    }

    /// The server ends the connection: no frame comes before the end of the stream.
    async fn expect_end(&mut self) {
        if let Some(f) = self.next_frame_or_end().await {
            panic!("expected the connection to end, got {f:?}");
        }
    }
}

/// A server frame at the start of `buf` and its length, or `None` when `buf` does not hold all of
/// it yet. Panics on a masked frame or a set reserved bit, which a server must not send.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    let [b0, b1, ..] = *buf else {
        return None;
    };
    assert_eq!(b0 & 0x70, 0, "server frame with a reserved bit: {b0:#x}");
    assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload,
    };
    Some((frame, at + len))
}

/// Asserts that the broker still serves: a socket opened before (`old`, subscribed to `channel`)
/// and one opened now both receive an event triggered over the HTTP API.
async fn still_serves(b: &BrokerProcess, old: &mut RawWs, channel: &str) {
    let mut fresh = RawWs::connect(b).await;
    fresh.write(&text(&subscribe(channel))).await;
    let ok = fresh.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    let r = api(b).trigger(&[channel], "still-here", "42").await;
    assert_eq!(r.status, 200, "{}", r.body);
    for ws in [old, &mut fresh] {
        let ev = ws.next_json().await;
        assert_eq!(ev["event"], "still-here", "{ev}");
        assert_eq!(ev["channel"], channel, "{ev}");
        assert_eq!(ev["data"], "42", "{ev}");
    }
}

#[tokio::test]
async fn several_frames_in_one_write_are_all_answered_in_order() {
    let b = spawn();
    let mut ws = RawWs::connect(&b).await;
    let mut bytes = text(&pusher_ping());
    bytes.extend(frame(true, PING, b"abc"));
    bytes.extend(text(&subscribe("one-write")));
    ws.write(&bytes).await;

    let pong = ws.next_json().await;
    assert_eq!(pong["event"], "pusher:pong", "{pong}");
    let control = ws.next_frame().await;
    assert_eq!(
        control,
        ServerFrame {
            fin: true,
            opcode: PONG,
            payload: b"abc".to_vec()
        }
    );
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], "one-write", "{ok}");
}

#[tokio::test]
async fn a_frame_written_one_byte_at_a_time_is_answered() {
    let b = spawn();
    let mut ws = RawWs::connect(&b).await;
    // Over 125 bytes, so the frame has a 16-bit length and even its header arrives in pieces.
    let channel = format!("one-byte-{}", "x".repeat(130));
    let bytes = text(&subscribe(&channel));
    assert_eq!(bytes[1] & 0x7f, 126, "a 16-bit length");
    for byte in &bytes {
        ws.write(std::slice::from_ref(byte)).await;
        tokio::task::yield_now().await;
    }
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], channel.as_str(), "{ok}");
    // The stream is still in step: the next frame is read from its first byte.
    ws.write(&text(&pusher_ping())).await;
    assert_eq!(ws.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_fragmented_message_with_a_ping_between_fragments_is_one_message() {
    let b = spawn();
    let mut ws = RawWs::connect(&b).await;
    let message = subscribe("fragmented").to_string();
    let (first, rest) = message.as_bytes().split_at(10);
    let (second, third) = rest.split_at(15);

    ws.write(&frame(false, TEXT, first)).await;
    ws.write(&frame(true, PING, b"mid")).await;
    // The ping is answered while the message is still arriving.
    let control = ws.next_frame().await;
    assert_eq!(
        control,
        ServerFrame {
            fin: true,
            opcode: PONG,
            payload: b"mid".to_vec()
        }
    );
    ws.write(&frame(false, CONTINUATION, second)).await;
    ws.write(&frame(true, CONTINUATION, third)).await;
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], "fragmented", "{ok}");

    // A character split between two fragments (in one write this time) is valid UTF-8 once joined.
    let ping = r#"{"event":"pusher:ping","data":"€"}"#.as_bytes();
    let euro = ping.iter().position(|&b| b == 0xe2).expect("the euro sign");
    let mut bytes = frame(false, TEXT, &ping[..euro + 1]);
    bytes.extend(frame(true, CONTINUATION, &ping[euro + 1..]));
    ws.write(&bytes).await;
    assert_eq!(ws.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_binary_frame_gets_an_error_and_the_socket_stays_open() {
    let b = spawn();
    let mut ws = RawWs::connect(&b).await;
    ws.write(&frame(true, BINARY, &[0, 1, 2, 0xff])).await;
    let err = ws.next_json().await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4300, "{err}");
    ws.write(&text(&pusher_ping())).await;
    assert_eq!(ws.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_bad_utf8_with_1007() {
    let b = spawn();
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        (
            "unmasked",
            {
                let payload = pusher_ping().to_string();
                let mut f = vec![0x81, payload.len() as u8];
                f.extend_from_slice(payload.as_bytes());
                f
            },
            1002,
            "masked",
        ),
        (
            "RSV1 set",
            raw_frame(0x80 | 0x40 | TEXT, pusher_ping().to_string().as_bytes()),
            1002,
            "reserved",
        ),
        (
            "invalid UTF-8",
            frame(true, TEXT, b"{\"event\":\"\xff\xfe\"}"),
            1007,
            "UTF-8",
        ),
        (
            "close code 1005, which only an endpoint's API may use",
            frame(true, CLOSE, &1005u16.to_be_bytes()),
            1002,
            "close code",
        ),
        (
            "close reason not UTF-8",
            frame(true, CLOSE, b"\x03\xe8\xff"),
            1007,
            "UTF-8",
        ),
    ];
    for (what, bytes, code, reason) in cases {
        let mut ws = RawWs::connect(&b).await;
        ws.write(&bytes).await;
        let close = ws.expect_close_then_end().await;
        let (got, why) = close.unwrap_or_else(|| panic!("{what}: an empty close"));
        assert_eq!(got, code, "{what}: {why}");
        assert!(why.contains(reason), "{what}: reason {why:?}");
    }
}

#[tokio::test]
async fn a_client_close_is_answered_with_the_same_code() {
    let b = spawn();
    let mut ws = RawWs::connect(&b).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye now");
    ws.write(&frame(true, CLOSE, &payload)).await;
    let reply = ws.next_frame().await.close();
    assert_eq!(reply.map(|(code, _)| code), Some(1000));
    ws.expect_end().await;

    let mut ws = RawWs::connect(&b).await;
    ws.write(&frame(true, CLOSE, b"")).await;
    assert_eq!(ws.next_frame().await.close(), None, "an empty close reply");
    ws.expect_end().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_from_its_header() {
    let b = spawn_with_server("max_message_bytes = 4096");
    let expect_refusal =
        |size: u64| format!("Message of {size} bytes is over the limit of 4096 bytes");

    // A 16-bit length over the limit: only the header (length and mask) is sent, no payload.
    let mut ws = RawWs::connect(&b).await;
    let mut header = vec![0x80 | TEXT, 0x80 | 126];
    header.extend_from_slice(&5000u16.to_be_bytes());
    header.extend_from_slice(&MASK);
    ws.write(&header).await;
    let err = ws.next_json().await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4300, "{err}");
    assert_eq!(err["data"]["message"], expect_refusal(5000), "{err}");
    let close = ws.expect_close_then_end().await;
    assert_eq!(close, Some((4300, expect_refusal(5000))));

    // A 64-bit length far beyond anything the server could buffer, refused the same way.
    let mut ws = RawWs::connect(&b).await;
    let mut header = vec![0x80 | TEXT, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&MASK);
    ws.write(&header).await;
    let err = ws.next_json().await;
    assert_eq!(err["data"]["code"], 4300, "{err}");
    assert_eq!(
        ws.expect_close_then_end().await,
        Some((4300, expect_refusal(1 << 40)))
    );

    // The limit is on the whole message: a first fragment under it, then the header of a second
    // that would take the message over it.
    let mut ws = RawWs::connect(&b).await;
    ws.write(&frame(false, TEXT, &[b' '; 3000])).await;
    let mut header = vec![CONTINUATION | 0x80, 0x80 | 126];
    header.extend_from_slice(&2000u16.to_be_bytes());
    header.extend_from_slice(&MASK);
    ws.write(&header).await;
    let err = ws.next_json().await;
    assert_eq!(err["data"]["code"], 4300, "{err}");
    assert_eq!(
        ws.expect_close_then_end().await,
        Some((4300, expect_refusal(5000)))
    );
}

#[tokio::test]
async fn the_broker_still_serves_after_every_kind_of_failure() {
    let b = spawn_with_server("max_message_bytes = 4096");
    let mut old = RawWs::connect(&b).await;
    old.write(&text(&subscribe("survivors"))).await;
    let ok = old.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    let unmasked = [0x81, 0x01, b'x'];
    let rsv1 = raw_frame(0x80 | 0x40 | TEXT, b"{}");
    let bad_utf8 = frame(true, TEXT, b"\xc3\x28");
    let mut too_long = vec![0x80 | TEXT, 0x80 | 126];
    too_long.extend_from_slice(&5000u16.to_be_bytes());
    let close = frame(true, CLOSE, &1000u16.to_be_bytes());
    let failures: [(&[u8], u16); 5] = [
        (&unmasked, 1002),
        (&rsv1, 1002),
        (&bad_utf8, 1007),
        (&too_long, 4300),
        (&close, 1000),
    ];
    for (bytes, code) in failures {
        let mut ws = RawWs::connect(&b).await;
        ws.write(bytes).await;
        let got = loop {
            let f = ws.next_frame().await;
            if f.opcode == CLOSE {
                break f.close();
            }
            assert_eq!(
                code, 4300,
                "only the oversized message is told why first: {f:?}"
            );
            assert_eq!(f.json()["data"]["code"], 4300);
        };
        assert_eq!(got.as_ref().map(|(c, _)| *c), Some(code), "{bytes:?}");
        if code != 1000 {
            ws.reply_to_close(got.as_ref()).await;
        }
        ws.expect_end().await;
        still_serves(&b, &mut old, "survivors").await;
    }
}
