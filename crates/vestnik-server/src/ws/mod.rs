//! The WebSocket edge: [`upgrade`] admits or refuses a socket, [`session`] runs it (the open ones are
//! listed in [`crate::live`] for the drain). This module must never parse HTTP routes: the router
//! hands it upgrade requests only.
//!
//! tungstenite is sized explicitly here: its defaults give every socket two 128 KiB buffers, which
//! would make idle sockets cost more than a quarter of a megabyte each.

pub mod io;
pub mod session;
pub mod upgrade;
mod writer;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::ServerConfig;

/// Write buffer that triggers a write before a flush; the writer flushes after every drained batch
/// anyway, so this only bounds one very large batch.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The tungstenite settings every socket gets.
///
/// - the read buffer is `socket_read_buffer` (small: client frames are small);
/// - one message and one frame are capped at `max_message_bytes`, so tungstenite refuses an
///   oversized client frame instead of buffering it;
/// - `max_write_buffer_size` leaves room for a few of the largest messages on top of the buffer,
///   so a burst to a slow reader fails the write (a slow consumer) rather than growing memory.
pub fn websocket_config(server: &ServerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(server.socket_read_buffer)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_BYTES + 4 * server.max_message_bytes.max(1 << 20))
        .max_message_size(Some(server.max_message_bytes))
        .max_frame_size(Some(server.max_message_bytes))
}
