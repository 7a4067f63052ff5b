//! Health endpoints for orchestrators and operators:
//! - `/up`: 200 while the process runs; never touches the broker, so it stays a cheap liveness probe;
//! - `/ready`: 200 when this node should get traffic, 503 while starting, while draining, or while
//!   its cluster backbone is down (its sockets would miss other nodes' events);
//! - `/usage`: memory and counts as JSON.

use std::sync::atomic::Ordering;

use http::StatusCode;
use serde_json::json;

use super::{json_response, Body};
use crate::server::AppState;

/// `GET /up`.
pub fn up() -> http::Response<Body> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`.
pub fn ready(state: &AppState) -> http::Response<Body> {
    let serving = state.serving.load(Ordering::Relaxed);
    let backbone = state.broker.cluster().is_none_or(|c| c.is_connected());
    let (status, reason) = match (serving, backbone) {
        (true, true) => (StatusCode::OK, "ready"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "starting or draining"),
        (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "cluster backbone down"),
    };
    json_response(status, &json!({"status": reason}))
}

/// Resident memory of this process, from `/proc/self/status` (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `GET /usage`.
pub fn usage(state: &AppState) -> http::Response<Body> {
    let stats = state.broker.stats();
    let apps: Vec<_> = state
        .config
        .apps
        .iter()
        .map(|a| {
            let rt = state.broker.runtime(a);
            json!({
                "id": a.id,
                "connections": rt.connection_count(),
                "channels": rt.registry.channel_count(),
                "users": rt.user_count(),
            })
        })
        .collect();
    let cluster = state.broker.cluster().map(|c| {
        json!({
            "node": c.node.to_string(),
            "adapter": c.adapter_name(),
            "connected": c.is_connected(),
            "peers": c.peers().len(),
            "draining_peers": c.draining_peers(),
            "sent": c.counters.sent.load(Ordering::Relaxed),
            "received": c.counters.received.load(Ordering::Relaxed),
            "lost": c.counters.lost.load(Ordering::Relaxed),
        })
    });
    json_response(
        StatusCode::OK,
        &json!({
            "memory": {"rss_bytes": rss_bytes()},
            "connections": stats.connections,
            "channels": stats.channels,
            "apps": apps,
            "cluster": cluster,
        }),
    )
}
