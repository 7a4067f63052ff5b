//! Admin endpoints for webhooks, signed like the rest of the API:
//! - `GET  /apps/{id}/webhooks/stats`: delivered, failed, retried, pending and dead-lettered counts;
//! - `GET  /apps/{id}/webhooks/dead_letters`: the dead-letter list;
//! - `POST /apps/{id}/webhooks/dead_letters/replay` with `{"ids": [...]}` or `{"all": true}`;
//! - `POST /apps/{id}/webhooks/dead_letters/purge`, the same body.
//!
//! The spool does disk IO, so every call runs on the blocking pool: this module must never touch the
//! spool on a socket's thread, and never act on another app's dead letters.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use vestnik_webhooks::Webhooks;

use super::signed::SignedCall;
use crate::reply::{ok, ApiError, Body};
use crate::state::AppState;

/// Which dead letters a replay or purge acts on. An empty list never means "all".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    /// Dead-letter ids to act on.
    #[serde(default)]
    ids: Vec<String>,
    /// Act on every dead letter of the app.
    #[serde(default)]
    all: bool,
}

/// What to do with the selected dead letters.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Queue them for delivery again.
    Replay,
    /// Delete them.
    Purge,
}

/// The webhook sender, or 404 when no app has targets (there is no spool to ask).
fn hooks(state: &AppState) -> Result<Webhooks, ApiError> {
    state.webhooks.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "No app has webhook targets configured",
        )
    })
}

/// Runs a spool call on the blocking pool; a failure of the spool or the task is a 500.
///
/// The spool is redb, whose calls block on the disk; running them on a runtime worker would stall
/// every socket scheduled on that worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, vestnik_webhooks::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /apps/{id}/webhooks/stats`.
pub fn stats(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let stats = hooks(state)?
        .stats()
        .into_iter()
        .find(|s| s.app_id == call.app.id);
    Ok(ok(&json!({ "stats": stats })))
}

/// `GET /apps/{id}/webhooks/dead_letters`.
pub async fn dead_letters(state: &AppState, call: &SignedCall) -> Result<Response<Body>, ApiError> {
    let h = hooks(state)?;
    let app_id = call.app.id.clone();
    let list = blocking(move || h.dead_letters(&app_id)).await?;
    Ok(ok(&json!({ "dead_letters": list })))
}

/// `POST /apps/{id}/webhooks/dead_letters/{replay|purge}`.
///
/// Either explicit ids or `all: true`, never an empty selection: a body of `{}` must not be read as
/// "every dead letter", since a purge cannot be undone.
pub async fn act(
    state: &AppState,
    call: &SignedCall,
    action: Action,
) -> Result<Response<Body>, ApiError> {
    let h = hooks(state)?;
    let sel: Selection = serde_json::from_slice(&call.body).map_err(|e| {
        ApiError::bad_request(format!(
            "Expected {{\"ids\": [...]}} or {{\"all\": true}}: {e}"
        ))
    })?;
    if !sel.all && sel.ids.is_empty() {
        return Err(ApiError::bad_request("Give ids, or all: true"));
    }
    let app_id = call.app.id.clone();
    let n = blocking(move || match (action, sel.all) {
        (Action::Replay, true) => h.replay_all(&app_id),
        (Action::Replay, false) => h.replay(&app_id, &sel.ids),
        (Action::Purge, true) => h.purge_all(&app_id),
        (Action::Purge, false) => h.purge(&app_id, &sel.ids),
    })
    .await?;
    let key = match action {
        Action::Replay => "replayed",
        Action::Purge => "purged",
    };
    Ok(ok(&json!({ key: n })))
}
