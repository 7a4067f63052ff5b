//! The HTTP resources of the node: the signed Pusher HTTP API ([`api`], one file per resource behind
//! the signature gate in [`signed`]), health, the `/pushler.js` client script, the debug console and
//! the page at `/` ([`root`]).
//!
//! The [`crate::router`] decides what a request is and calls into these modules; they answer through
//! [`crate::reply`] and read [`crate::state`]. This module only declares them: it must never route,
//! and no resource file may import another resource file (the console and the channel views take
//! what they share from the protocol crate, the state and the replies). Two gates are shared
//! instead: [`signed`] (the Pusher signature) and [`admin_auth`] (the admin token, for `/admin/apps`
//! and the console's operator view).

pub mod admin;
pub mod admin_auth;
pub mod api;
pub mod channels;
pub mod client_script;
pub mod console;
pub mod events;
pub mod health;
pub mod history;
pub mod root;
pub mod signed;
pub mod users;
pub mod webhooks;

/// The whole-body response type, named here for the console's page module.
pub use crate::reply::Body;
