//! What every HTTP answer of the node is made of: the body type, [`ApiError`] (a status and a message,
//! answered as JSON `{"error": ..., "code": ...}`), JSON and static replies, and reading a request body
//! within a size and a time limit.
//!
//! This is the one place where a failure becomes an HTTP status: the protocol crate's
//! [`ApiBodyError`] and [`InfoError`] are mapped here, and every handler, the WebSocket upgrade and the
//! console answer through [`ApiError::into_response`]. Success is always 200 with a JSON body, because
//! the PHP SDK treats anything else as a failure. This module sits below every handler and must never
//! import one, nor touch the broker or the server's state.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use vestnik_protocol::api::{ApiBodyError, InfoError};

/// The `app_id` label of a metric about a request or socket whose app is not known: a label never
/// carries a value the client chose, so that nobody can grow the series without bound.
pub const UNKNOWN_APP: &str = "unknown";

/// The response body type of every handler that answers with a whole body.
pub type Body = Full<Bytes>;

/// An API failure: a status and a message, answered as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// Seconds to send in `Retry-After` (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the caller to wait `seconds` before trying again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"error": self.message, "code": self.status.as_u16()});
        let mut resp = json_response(self.status, &body);
        if self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::PAYLOAD_TOO_LARGE
        {
            // The rest of the request never came, or is refused unread: either way the connection
            // cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<ApiBodyError> for ApiError {
    /// Oversized data is 413, every other mistake in a body 400.
    fn from(e: ApiBodyError) -> Self {
        let status = if e.is_too_large() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(status, e.to_string())
    }
}

impl From<InfoError> for ApiError {
    /// An `info` that does not apply is the caller's mistake: 400.
    fn from(e: InfoError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// 200 with a JSON body.
pub fn ok(body: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, body)
}

/// 200 with the empty JSON object `{}`: the same bytes as `ok(&json!({}))`, without building and
/// serialising a value.
pub fn ok_empty() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A page or file embedded in the binary, with a content type and the headers that keep a browser
/// from doing anything with it but show it: no sniffing, no referrer, only this node's own script,
/// style and API, and no framing (clickjacking).
pub fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    resp
}

/// Parses a JSON request body, or answers 400 saying why not.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// Decodes one percent-encoded path segment (`/channels/{name}`, `/users/{user_id}`): SDKs encode
/// names with `@`, `,`, `;`, `#` or spaces. Unlike a query value, `+` stays `+` in a path. A segment
/// that is not valid UTF-8 once decoded is a 400.
pub fn path_segment(raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| {
            ApiError::bad_request(format!("Path segment {raw:?} is not UTF-8 once decoded"))
        })
}

/// Reads a whole request body of at most `limit` bytes within `timeout`: 413 over the limit (at once
/// when `Content-Length` already says so, without waiting for a byte of it), 408
/// when it does not arrive in time (hyper bounds only the headers, so without this a client could
/// hold a connection and its task by sending a body byte by byte), 400 when it cannot be read.
pub async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    // hyper reports a declared Content-Length as the exact size hint.
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large(limit));
    }
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    // A small body usually came in with the head: take it without reading the clock or arming a
    // timer; only a body still on its way gets the time limit.
    let collected = match futures_util::poll!(collect.as_mut()) {
        std::task::Poll::Ready(collected) => collected,
        std::task::Poll::Pending => tokio::time::timeout(timeout, collect).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("Request body not received within {timeout:?}"),
            )
        })?,
    };
    collected
        .map(|collected| collected.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large(limit)
            } else {
                ApiError::bad_request(format!("Cannot read the request body: {e}"))
            }
        })
}

/// 413 for a body over `limit` bytes.
fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body is over {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths decode `%40` to `@` but keep `+` as is: `+` means a space only in query strings, and a
    /// user id with a `+` must reach the broker unchanged.
    #[test]
    fn path_segments_are_percent_decoded_but_plus_stays() {
        assert_eq!(path_segment("user%40x%20y").unwrap(), "user@x y");
        assert_eq!(path_segment("a+b").unwrap(), "a+b");
        assert_eq!(
            path_segment("%23server-to-user-7").unwrap(),
            "#server-to-user-7"
        );
        assert_eq!(
            path_segment("%FF").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    /// Each body error maps to exactly one status, in this one place (design rule 7).
    #[test]
    fn body_errors_map_to_one_status_each() {
        let too_big = ApiBodyError::DataTooLarge { size: 2, limit: 1 };
        assert_eq!(
            ApiError::from(too_big).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let in_batch = ApiBodyError::InBatch {
            index: 3,
            error: Box::new(ApiBodyError::MissingName),
        };
        let e = ApiError::from(in_batch);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "batch[3]: Missing event name (name)");
    }
}
