//! Fuzzes the client WebSocket frame parser, `vestnik_protocol::frame::FrameParser::parse`, which
//! reads every byte a client sends after the upgrade.
//!
//! Input layout: byte 0 picks where the stream is split in two reads, bytes 1..4 (little-endian,
//! 24 bits) pick the message limit (`1..=70000`), and the rest is the byte stream from the client.
//!
//! The stream is parsed twice: whole, and in two pieces the way `SessionIo` meets it (frames are
//! parsed from the first read; on `Incomplete`, the unparsed bytes are kept and the second read is
//! appended to them). Both must give the same messages and end the same way: how bytes are split
//! across reads must never change what they mean. Along the way:
//! - a frame takes at least a masked header (6 bytes) and no more than what is left;
//! - `Incomplete(n)` asks for more than what is left, and no more than a header plus the limit;
//! - a message respects the limit and the control-frame size, a close code is one a peer may send,
//!   a refusal for size names the limit and a size over it;
//! - a frame that completes no message leaves a fragmented message under way, and one that
//!   completes a data message leaves none;
//! - the server's replies to what was parsed (pong, close reply) are well-formed frames.
//!
//! Any panic, or any failed assertion below, is a bug in vestnik-protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vestnik_protocol::frame::{
    self, close_code_allowed, FrameError, FrameParser, Inbound, Parsed, MAX_CLIENT_HEADER,
    MAX_CONTROL_PAYLOAD,
};

/// The largest message limit tried.
const MAX_LIMIT: usize = 70_000;

/// How a stream's parse ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte was a complete frame.
    Consumed,
    /// The last frame needs this many bytes in all; `at` is where it starts.
    Incomplete { at: usize, needs: usize },
    /// The bytes from `at` on were refused.
    Refused { at: usize, error: FrameError },
}

/// Checks one message against the limit and the protocol, and the server's reply to it.
fn check_message(message: &Inbound, max_message: usize) {
    match message {
        Inbound::Text(text) => assert!(text.len() <= max_message, "text over the limit"),
        Inbound::Binary(len) => assert!(*len <= max_message, "binary over the limit"),
        Inbound::Ping(payload) => {
            assert!(payload.len() <= MAX_CONTROL_PAYLOAD, "ping over 125 bytes");
            let pong = frame::pong(payload);
            assert_eq!(pong[0], 0x8A);
            assert_eq!(usize::from(pong[1]), payload.len());
            assert_eq!(&pong[2..], &payload[..]);
        }
        Inbound::Pong => {}
        Inbound::Close(close) => {
            if let Some(c) = close {
                assert!(
                    close_code_allowed(c.code),
                    "close code {} let through",
                    c.code
                );
                assert!(
                    c.reason.len() <= MAX_CONTROL_PAYLOAD - 2,
                    "close reason too long"
                );
            }
            let reply = frame::close_reply(close.as_ref());
            assert_eq!(reply[0], 0x88);
            assert_eq!(usize::from(reply[1]), reply.len() - 2);
            match close {
                Some(c) => assert_eq!(&reply[2..], &c.code.to_be_bytes()),
                None => assert_eq!(reply.len(), 2),
            }
        }
    }
}

/// Parses `buf[at..]` with `parser` until it runs out, needs more or refuses, pushing the messages
/// to `out`. Returns how it stopped and the offset reached.
fn parse_from(
    parser: &mut FrameParser,
    buf: &[u8],
    mut at: usize,
    max_message: usize,
    out: &mut Vec<Inbound>,
) -> End {
    while at < buf.len() {
        let remaining = buf.len() - at;
        match parser.parse(&buf[at..], max_message) {
            Ok(Parsed::Frame { len, message }) => {
                assert!(len >= 6, "a masked frame of {len} bytes");
                assert!(len <= remaining, "a frame of {len} bytes in {remaining}");
                at += len;
                match message {
                    None => assert!(parser.is_mid_message(), "no message, none under way"),
                    Some(m) => {
                        if matches!(m, Inbound::Text(_) | Inbound::Binary(_)) {
                            assert!(!parser.is_mid_message(), "a message done, one under way");
                        }
                        check_message(&m, max_message);
                        out.push(m);
                    }
                }
            }
            Ok(Parsed::Incomplete(needs)) => {
                assert!(
                    needs > remaining,
                    "Incomplete({needs}) with {remaining} bytes"
                );
                assert!(
                    needs <= MAX_CLIENT_HEADER + max_message.max(MAX_CONTROL_PAYLOAD),
                    "Incomplete({needs}) beyond a header and the limit {max_message}"
                );
                return End::Incomplete { at, needs };
            }
            Err(error) => {
                if let FrameError::TooLong { size, max } = &error {
                    assert_eq!(*max, max_message);
                    assert!(size > max, "TooLong with {size} <= {max}");
                }
                assert!(matches!(error.close_code(), 1002 | 1007 | 1009));
                return End::Refused { at, error };
            }
        }
    }
    End::Consumed
}

fuzz_target!(|data: &[u8]| {
    let [split, l0, l1, l2, stream @ ..] = data else {
        return;
    };
    let max_message = u32::from_le_bytes([*l0, *l1, *l2, 0]) as usize % MAX_LIMIT + 1;

    // The whole stream at once.
    let mut whole_messages = Vec::new();
    let whole_end = parse_from(
        &mut FrameParser::new(),
        stream,
        0,
        max_message,
        &mut whole_messages,
    );

    // The same stream in two reads, kept and appended as SessionIo does.
    let cut = usize::from(*split) * stream.len() / 255;
    let mut parser = FrameParser::new();
    let mut split_messages = Vec::new();
    let first = &stream[..cut];
    let split_end = match parse_from(&mut parser, first, 0, max_message, &mut split_messages) {
        End::Refused { at, error } => End::Refused { at, error },
        End::Consumed => {
            let pending = &stream[cut..];
            match parse_from(&mut parser, pending, 0, max_message, &mut split_messages) {
                End::Consumed => End::Consumed,
                End::Incomplete { at, needs } => End::Incomplete {
                    at: at + cut,
                    needs,
                },
                End::Refused { at, error } => End::Refused {
                    at: at + cut,
                    error,
                },
            }
        }
        End::Incomplete { at, .. } => {
            let mut pending = first[at..].to_vec();
            pending.extend_from_slice(&stream[cut..]);
            match parse_from(&mut parser, &pending, 0, max_message, &mut split_messages) {
                End::Consumed => End::Consumed,
                End::Incomplete { at: a, needs } => End::Incomplete { at: a + at, needs },
                End::Refused { at: a, error } => End::Refused { at: a + at, error },
            }
        }
    };

    // Bytes mean the same however they arrive: same messages, same end, at the same offset.
    assert_eq!(
        split_messages, whole_messages,
        "messages depend on the split at {cut}"
    );
    assert_eq!(
        split_end, whole_end,
        "the end depends on the split at {cut}"
    );
});
