//! Health endpoints for orchestrators and operators:
//! - `/up`: 200 while the process runs; never touches the broker, so it stays a cheap liveness probe;
//! - `/ready`: 200 when this node should get traffic, 503 while starting, while draining, or while
//!   its cluster backbone is down (its sockets would miss other nodes' events);
//! - `/usage`: memory and counts as JSON.
//!
//! This module must never change state or wait on the cluster: a probe answers from what the node
//! already knows.

use std::sync::atomic::Ordering;

use http::StatusCode;
use serde_json::json;

use crate::reply::{json_response, Body};
use crate::state::AppState;

/// `GET /up`.
///
/// Always 200 while the process can answer: a liveness probe that failed during a drain would make
/// an orchestrator kill the node before its sockets moved.
pub fn up() -> http::Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`.
/// 200 `{"status": "ready"}`, or 503 with the state (`starting`, `draining`, `backbone_down`) and
/// an `error` that says what it means.
///
/// `backbone_down` takes the node out of rotation while its cluster link is lost: a socket admitted
/// then would miss events published on other nodes, which is worse than being sent elsewhere.
pub fn ready(state: &AppState) -> http::Response<Body> {
    let serving = state.serving.load(Ordering::Relaxed);
    let backbone = state.broker.cluster().is_none_or(|c| c.is_connected());
    let not_ready = |status: &str, error: &str| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": status, "error": error}),
        )
    };
    if state.is_starting() {
        not_ready(
            "starting",
            "starting: joining the cluster; sockets and API calls are refused until then",
        )
    } else if !serving {
        not_ready("draining", "draining: closing sockets before shutting down")
    } else if !backbone {
        not_ready(
            "backbone_down",
            "cluster backbone down: sockets here would miss other nodes' events",
        )
    } else {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    }
}
