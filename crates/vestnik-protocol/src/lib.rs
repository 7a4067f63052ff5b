//! The Pusher Channels protocol v7, as pure functions over strings and bytes.
//!
//! This crate knows what is on the wire and how it is signed. It never does IO, never touches tokio and
//! never holds state, so it can be unit-tested with the reference vectors and fuzzed directly.
//!
//! # Layout
//! - [`channel`]: validated channel names and their kinds.
//! - [`message`]: client messages in (parsed into closed enums), server messages out (encoded once).
//! - [`api`]: the HTTP API's trigger, batch and channel-info bodies and queries, parsed and checked.
//! - [`auth`]: channel authorisation, user sign-in and signed HTTP request verification.
//! - [`query`]: query strings, decoded into one buffer.
//! - [`webhook`]: the webhook body signature.
//! - [`socket`]: socket ids.
//! - [`secret`]: [`AppSecret`], an app secret whose `Debug` and `Display` redact it.
//! - [`frame`]: client WebSocket frames parsed without a per-socket buffer; server control frames.
//! - [`code`]: the one table of Pusher error and close codes.
//! - [`json`]: the JSON shapes insisted on: objects, never arrays read by position; nesting depth.
//! - [`limits`]: default limits, each with its source.

pub mod api;
pub mod auth;
pub mod channel;
pub mod code;
pub mod frame;
pub mod json;
pub mod limits;
pub mod message;
pub mod query;
pub mod secret;
pub mod socket;
pub mod webhook;

pub use channel::{ChannelKind, ChannelName, ChannelNameError};
pub use code::PusherCode;
pub use message::{ClientMessage, MessageError, ServerMessage};
pub use secret::AppSecret;
pub use socket::SocketId;

/// `len` characters drawn from `alphabet` by a xorshift generator on `seed`: the random inputs of
/// the decoders' agreement tests, the same on every run.
#[cfg(test)]
fn random_text(seed: &mut u64, alphabet: &[char], len: usize) -> String {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            alphabet[(*seed % alphabet.len() as u64) as usize]
        })
        .collect()
}
