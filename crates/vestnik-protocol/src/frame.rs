//! Client WebSocket frames (RFC 6455 §5): parsed from whatever bytes one read gave, and the few
//! control frames a server writes.
//!
//! Why our own parser: a WebSocket library keeps a read buffer per socket for its whole life, and on a
//! broker most sockets are idle most of the time. [`FrameParser::parse`] reads a frame from a slice the
//! caller owns (a stack buffer a read just filled, or the bytes of a frame still arriving), so an idle
//! socket holds no buffer at all: only the fragments of a message that is arriving in pieces.
//!
//! What it enforces, since the peer is a client: every frame is masked, no reserved bit is set (no
//! extension is negotiated), no reserved opcode, control frames are final and carry at most 125
//! bytes, continuation frames continue something, a close payload is empty or a valid code and UTF-8
//! reason, text is UTF-8, and a message (all its fragments together) is at most `max_message`
//! bytes, refused from its header before its payload is read. This module must never do IO.

use thiserror::Error;

/// The most payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest header of a client frame: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_CLIENT_HEADER: usize = 14;

/// A complete client message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A text message, fragments joined, checked to be UTF-8.
    Text(String),
    /// A binary message: only its length is kept, as the Pusher protocol has no binary frames.
    Binary(usize),
    /// A ping, whose payload the pong must echo.
    Ping(Vec<u8>),
    /// A pong (its payload is of no use).
    Pong,
    /// A close frame, with its code and reason when it carried them.
    Close(Option<CloseFrame>),
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (RFC 6455 §7.4).
    pub code: u16,
    /// The reason, UTF-8.
    pub reason: String,
}

/// Why a client's bytes are not a valid frame sequence. The socket cannot be read further after one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The frames break RFC 6455: answered with close code 1002.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or a close reason is not UTF-8: answered with close code 1007.
    #[error("WebSocket text is not valid UTF-8")]
    InvalidUtf8,
    /// A message is longer than the limit: `size` is what it would have reached.
    #[error("Message of {size} bytes is over the limit of {max} bytes")]
    TooLong {
        /// The message's length so far plus the frame that broke the limit.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl FrameError {
    /// The close code RFC 6455 §7.4.1 gives this failure: 1002 (protocol error), 1007 (invalid
    /// data) or 1009 (message too big).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::InvalidUtf8 => 1007,
            FrameError::TooLong { .. } => 1009,
        }
    }
}

/// What [`FrameParser::parse`] found at the start of the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No complete frame yet: the frame needs at least this many bytes in all (counted from its
    /// start), so a caller can reserve them once.
    Incomplete(usize),
    /// A frame of `len` bytes was read. It completed `message`, or nothing for a fragment that is
    /// not the last of its message.
    Frame {
        /// The bytes the frame took, header included.
        len: usize,
        /// The message it completed, if any.
        message: Option<Inbound>,
    },
}

/// One socket's parser: it holds only what a fragmented message has delivered so far (nothing, and
/// no allocation, otherwise).
#[derive(Debug, Default)]
pub struct FrameParser {
    /// The payload so far of a message that arrives in fragments.
    fragments: Vec<u8>,
    /// While a fragmented message is under way: whether it is text.
    continuing: Option<bool>,
}

impl FrameParser {
    /// A parser with nothing under way.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the frame at the start of `buf`. Messages are limited to `max_message` bytes: a frame
    /// that would take its message over it is refused from its header.
    ///
    /// # Errors
    /// A [`FrameError`] when the bytes break the protocol or the limit; the stream cannot be read
    /// on after one.
    pub fn parse(&mut self, buf: &[u8], max_message: usize) -> Result<Parsed, FrameError> {
        let [b0, b1, ..] = *buf else {
            return Ok(Parsed::Incomplete(2));
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol(
                "reserved bits set, but no extension was negotiated",
            ));
        }
        let opcode = b0 & 0x0f;
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(Parsed::Incomplete(4)),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(b);
                    let l = u64::from_be_bytes(l);
                    if l >> 63 != 0 {
                        return Err(FrameError::Protocol(
                            "frame length has its most significant bit set",
                        ));
                    }
                    (l, 10)
                }
                None => return Ok(Parsed::Incomplete(10)),
            },
            n => (u64::from(n), 2),
        };
        match opcode {
            0x0 if self.continuing.is_none() => {
                return Err(FrameError::Protocol(
                    "continuation frame without a message to continue",
                ))
            }
            0x1 | 0x2 if self.continuing.is_some() => {
                return Err(FrameError::Protocol(
                    "new message before the fragmented one was finished",
                ))
            }
            0x0..=0x2 => {
                let size = usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .saturating_add(self.fragments.len());
                if size > max_message {
                    return Err(FrameError::TooLong {
                        size,
                        max: max_message,
                    });
                }
            }
            0x8..=0xA => {
                if !fin {
                    return Err(FrameError::Protocol(
                        "control frames must not be fragmented",
                    ));
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::Protocol("control frame payload over 125 bytes"));
                }
            }
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        // len is at most max_message or 125 here, so it fits a usize.
        let len = len as usize;
        let total = at + 4 + len;
        let Some(frame) = buf.get(..total) else {
            return Ok(Parsed::Incomplete(total));
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        let payload = &frame[at + 4..];
        let message = match opcode {
            0x0..=0x2 => {
                let text = match opcode {
                    0x0 => self.continuing.unwrap_or(true),
                    op => op == 0x1,
                };
                if opcode == 0x0 || !fin {
                    unmask_into(&mut self.fragments, payload, mask);
                    self.continuing = Some(text);
                    if fin {
                        self.continuing = None;
                        Some(complete(text, std::mem::take(&mut self.fragments))?)
                    } else {
                        None
                    }
                } else if text {
                    let mut data = Vec::new();
                    unmask_into(&mut data, payload, mask);
                    Some(complete(true, data)?)
                } else {
                    Some(Inbound::Binary(len))
                }
            }
            0x8 => {
                let mut data = Vec::new();
                unmask_into(&mut data, payload, mask);
                Some(Inbound::Close(close_payload(&data)?))
            }
            0x9 => {
                let mut data = Vec::new();
                unmask_into(&mut data, payload, mask);
                Some(Inbound::Ping(data))
            }
            _ => Some(Inbound::Pong),
        };
        Ok(Parsed::Frame {
            len: total,
            message,
        })
    }

    /// Whether a fragmented message is under way (its fragments are held).
    pub fn is_mid_message(&self) -> bool {
        self.continuing.is_some()
    }
}

/// Appends `payload` unmasked with `mask` to `out` (or masked: the XOR is its own inverse).
fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.reserve(payload.len());
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A finished data message: text checked to be UTF-8, binary reduced to its length.
fn complete(text: bool, data: Vec<u8>) -> Result<Inbound, FrameError> {
    if text {
        String::from_utf8(data)
            .map(Inbound::Text)
            .map_err(|_| FrameError::InvalidUtf8)
    } else {
        Ok(Inbound::Binary(data.len()))
    }
}

/// A close frame's payload: nothing, or a code a peer may send and a UTF-8 reason (RFC 6455 §5.5.1,
/// §7.4).
fn close_payload(data: &[u8]) -> Result<Option<CloseFrame>, FrameError> {
    match data {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(FrameError::Protocol("close code not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Whether a peer may send `code` in a close frame: the defined codes other than those reserved for
/// local use (1004, 1005, 1006, 1015), and the registered and private ranges 3000-4999.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A server control frame (unmasked): `opcode` with `payload`, which must be at most 125 bytes.
fn control(opcode: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_CONTROL_PAYLOAD);
    let mut out = Vec::with_capacity(2 + len);
    out.push(0x80 | opcode);
    out.push(len as u8);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A client frame as RFC 6455 section 5.2 has a client send it: `first` is the first header byte
/// (FIN, the RSV bits and the opcode), then the length with the mask bit, `mask`, and `payload`
/// masked with it.
///
/// The server never sends one. The frame parser's tests, the server's raw-frame tests and a Rust
/// client that writes its own frames build them here, so there is one encoding of the client side.
pub fn client_frame(first: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(first);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    // Masking and unmasking are the same XOR.
    unmask_into(&mut out, payload, mask);
    out
}

/// The pong that answers a ping with `payload` (at most 125 bytes, as the ping's was).
pub fn pong(payload: &[u8]) -> Vec<u8> {
    control(0xA, &[&payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]])
}

/// A close frame with `code` and `reason`, the reason cut at a UTF-8 boundary to the 123 bytes a
/// control frame leaves after the code.
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    control(0x8, &[&code.to_be_bytes(), &reason.as_bytes()[..end]])
}

/// The reply to a client's close: the same code (RFC 6455 §5.5.1 asks an endpoint to echo it), or
/// an empty close for an empty one.
pub fn close_reply(frame: Option<&CloseFrame>) -> Vec<u8> {
    match frame {
        Some(f) => control(0x8, &[&f.code.to_be_bytes()]),
        None => control(0x8, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(if fin { 0x80 } else { 0 } | opcode, MASK, payload)
    }

    fn one(bytes: &[u8]) -> Result<Parsed, FrameError> {
        FrameParser::new().parse(bytes, 1 << 16)
    }

    #[test]
    fn the_rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            one(&bytes),
            Ok(Parsed::Frame {
                len: 11,
                message: Some(Inbound::Text("Hello".into()))
            })
        );
        for cut in 0..bytes.len() {
            assert!(matches!(one(&bytes[..cut]), Ok(Parsed::Incomplete(n)) if n > cut));
        }
    }

    #[test]
    fn every_length_form_is_read() {
        for n in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(n);
            let bytes = frame(true, 1, text.as_bytes());
            let mut p = FrameParser::new();
            assert_eq!(
                p.parse(&bytes, 1 << 20),
                Ok(Parsed::Frame {
                    len: bytes.len(),
                    message: Some(Inbound::Text(text))
                }),
                "{n}"
            );
        }
    }

    #[test]
    fn fragments_join_with_controls_between() {
        let mut p = FrameParser::new();
        let mut buf = frame(false, 1, b"Hel");
        buf.extend(frame(true, 9, b"hi"));
        buf.extend(frame(false, 0, b"l"));
        buf.extend(frame(true, 0, b"o"));
        let mut at = 0;
        let mut got = Vec::new();
        while at < buf.len() {
            match p.parse(&buf[at..], 100).unwrap() {
                Parsed::Frame { len, message } => {
                    at += len;
                    got.extend(message);
                }
                Parsed::Incomplete(_) => panic!("incomplete"),
            }
        }
        assert_eq!(
            got,
            vec![Inbound::Ping(b"hi".to_vec()), Inbound::Text("Hello".into())]
        );
        assert!(!p.is_mid_message());
        assert_eq!(
            p.fragments.capacity(),
            0,
            "no buffer kept after the message"
        );
    }

    #[test]
    fn limits_apply_to_the_whole_message_from_the_header() {
        let mut p = FrameParser::new();
        let first = frame(false, 1, &[b'a'; 60]);
        assert!(matches!(
            p.parse(&first, 100),
            Ok(Parsed::Frame { message: None, .. })
        ));
        // Only the header of the next fragment is needed to refuse it.
        let second = frame(true, 0, &[b'a'; 50]);
        assert_eq!(
            p.parse(&second[..8], 100),
            Err(FrameError::TooLong {
                size: 110,
                max: 100
            })
        );
        let huge = [0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            one(&huge),
            Err(FrameError::TooLong {
                size: 1 << 32,
                max: 1 << 16
            })
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        let unmasked = [0x81, 0x01, b'a'];
        let rsv = [0xC1, 0x80, 0, 0, 0, 0];
        let reserved_op = [0x83, 0x80, 0, 0, 0, 0];
        let long_ping = frame(true, 9, &[0; 126]);
        let fragmented_ping = frame(false, 9, b"x");
        let lone_continuation = frame(true, 0, b"x");
        let msb = [0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        for bytes in [
            &unmasked[..],
            &rsv,
            &reserved_op,
            &long_ping,
            &fragmented_ping,
            &lone_continuation,
            &msb,
        ] {
            assert!(
                matches!(one(bytes), Err(FrameError::Protocol(_))),
                "{bytes:?}"
            );
        }
        let mut p = FrameParser::new();
        p.parse(&frame(false, 1, b"a"), 100).unwrap();
        assert!(matches!(
            p.parse(&frame(true, 1, b"b"), 100),
            Err(FrameError::Protocol(_))
        ));
    }

    #[test]
    fn text_must_be_utf8_binary_keeps_only_its_length() {
        assert_eq!(
            one(&frame(true, 1, &[0xff, 0xfe])),
            Err(FrameError::InvalidUtf8)
        );
        let mut p = FrameParser::new();
        // A character split over two fragments is fine.
        let euro = "€".as_bytes();
        p.parse(&frame(false, 1, &euro[..1]), 100).unwrap();
        assert_eq!(
            p.parse(&frame(true, 0, &euro[1..]), 100),
            Ok(Parsed::Frame {
                len: 8,
                message: Some(Inbound::Text("€".into()))
            })
        );
        assert!(matches!(
            one(&frame(true, 2, &[0xff; 10])),
            Ok(Parsed::Frame {
                message: Some(Inbound::Binary(10)),
                ..
            })
        ));
    }

    #[test]
    fn close_payloads() {
        let parse_close = |payload: &[u8]| match one(&frame(true, 8, payload)) {
            Ok(Parsed::Frame {
                message: Some(Inbound::Close(c)),
                ..
            }) => Ok(c),
            Err(e) => Err(e),
            other => panic!("{other:?}"),
        };
        assert_eq!(parse_close(b""), Ok(None));
        assert!(matches!(parse_close(b"\x03"), Err(FrameError::Protocol(_))));
        assert_eq!(
            parse_close(b"\x03\xe8bye"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            }))
        );
        for bad in [999u16, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(
                matches!(
                    parse_close(&bad.to_be_bytes()),
                    Err(FrameError::Protocol(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(parse_close(b"\x0f\xa0\xff"), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn server_control_frames() {
        assert_eq!(pong(b"ab"), vec![0x8A, 2, b'a', b'b']);
        assert_eq!(close_reply(None), vec![0x88, 0]);
        let c = close(4009, &"é".repeat(100));
        assert_eq!(c[1] as usize, c.len() - 2);
        assert!(c.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert_eq!(u16::from_be_bytes([c[2], c[3]]), 4009);
        assert!(std::str::from_utf8(&c[4..]).is_ok());
        assert_eq!(
            close_reply(Some(&CloseFrame {
                code: 1001,
                reason: "away".into()
            })),
            vec![0x88, 2, 0x03, 0xe9]
        );
    }
}
