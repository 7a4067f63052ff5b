//! What travels on the WebSocket: [`ClientMessage`] in, [`ServerMessage`] out.
//!
//! # Layout
//! - [`inbound`]: one text frame parsed into a closed [`ClientMessage`] with validated fields, or a
//!   [`MessageError`] that maps to a Pusher code.
//! - [`user_data`]: a presence `channel_data` ([`PresenceData`]) and a sign-in `user_data`
//!   ([`UserData`]), read after their signature was checked.
//! - [`position`]: an event's place in its channel's history, a subscribe's `recover`, and the
//!   `recovery` that answers it.
//! - [`outbound`]: a [`ServerMessage`] encoded into one frame's payload (`Bytes`) exactly once, so
//!   one event can be shared by every recipient.
//!
//! Every name is re-exported here, so `vestnik_protocol::message::X` is the one path callers use.
//! This module must never do IO and never serialise per subscriber.

pub mod inbound;
pub mod outbound;
pub mod position;
pub mod user_data;

pub use inbound::{ClientMessage, MessageError, Subscribe};
pub use outbound::{MemberView, ServerMessage, SubscriptionErrorKind, WatchlistEvent};
pub use position::{Position, Recover, Recovery, RecoveryFailure};
pub use user_data::{PresenceData, UserData, UserDataError};
