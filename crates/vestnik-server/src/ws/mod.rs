//! The WebSocket edge: [`upgrade`] admits or refuses a socket, [`session`] runs it (the open ones are
//! listed in [`crate::live`] for the drain). This module must never parse HTTP routes: the router
//! hands it upgrade requests only.
//!
//! Client frames are parsed by [`vestnik_protocol::frame`] from a buffer on the reading thread's
//! stack ([`io::SessionIo`]); the server's frames are written by the session and the outbox. No
//! WebSocket library holds per-socket buffers: an idle socket owns no read or write buffer.

pub mod counters;
mod dispatch;
pub mod io;
pub mod session;
pub mod upgrade;
mod writer;

use crate::config::ServerConfig;
use io::ReadLimits;

/// How every socket is read: messages up to `max_message_bytes`, and at most
/// `socket_read_buffer` bytes per read (on the stack, capped at [`io::MAX_READ_CHUNK`]).
pub fn read_limits(server: &ServerConfig) -> ReadLimits {
    ReadLimits {
        max_message: server.max_message_bytes,
        chunk: server.socket_read_buffer,
    }
}
