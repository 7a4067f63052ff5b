//! Health endpoints. `/up` answers 200 while the process runs; it never touches the broker, so it stays
//! cheap enough for a tight liveness probe.

use http::StatusCode;

use super::{json_response, Body};

/// `GET /up`.
pub fn up() -> http::Response<Body> {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}
