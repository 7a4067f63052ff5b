//! `POST /apps/{id}/users/{user_id}/terminate_connections` (and the Python SDK's bare
//! `/users/{user_id}/terminate_connections`): closes every socket signed in as the user with 4009. This module must never close a socket
//! itself: the broker does, through each socket's outbox.

use http::Response;
use serde_json::json;

use super::signed::SignedCall;
use crate::reply::{ok, path_segment, ApiError, Body};
use crate::state::AppState;

/// Terminates the user's sockets; answers `{}`.
///
/// Answers `{}` whether or not the user had sockets here, as Pusher does: the call is a request to
/// end sessions, not a query. The broker relays the termination to the other nodes, so one call
/// ends the user's sockets across the cluster.
pub fn terminate(
    state: &AppState,
    call: &SignedCall,
    user_id: &str,
) -> Result<Response<Body>, ApiError> {
    // SDKs percent-encode the id in the path (the PHP client does), so `user@x` arrives as `user%40x`.
    let user_id = path_segment(user_id)?;
    if user_id.is_empty() {
        return Err(ApiError::bad_request("Missing user id"));
    }
    let closed = state.broker.terminate_user(&call.app, &user_id);
    tracing::info!(app_id = %call.app.id, user_id, closed, "terminated user connections");
    Ok(ok(&json!({})))
}
