//! The admin token's gate, shared by `/admin/apps` ([`crate::http::admin`]) and the console's
//! operator view (`/console/api/operator/…`, [`crate::http::console`]): one check, one failure
//! limit per client IP, one audit name, wherever the token is presented.
//!
//! The token is read from `Authorization: Bearer TOKEN` and compared in constant time. Failed
//! attempts are counted per client IP; past `admin.failed_attempts` a minute the IP gets 429 until
//! its window ends, before its token is even compared. Without a token configured the answer is 404,
//! as if the routes did not exist. This module must never log or return the token.

use std::net::SocketAddr;
use std::time::Instant;

use http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;
use tracing::info;

use crate::reply::ApiError;
use crate::state::AppState;

/// A short, stable, non-reversible name of the token for the audit log.
fn token_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..4]))
}

/// Checks the bearer token in `headers` (rate-limited on failures) and returns who is calling, for
/// the audit log: the client IP and the token's fingerprint, never the token.
pub fn authorise(
    headers: &HeaderMap,
    state: &AppState,
    peer: SocketAddr,
) -> Result<String, ApiError> {
    let Some(token) = state.config.admin.token.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "No route for the admin API",
        ));
    };
    let ip = crate::peer::client_ip(peer, headers, state.config.server.trust_proxy);
    let now = Instant::now();
    if let Some(retry) = state.admin_limiter.exhausted(ip, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed admin authentications; try again later",
        )
        .retry_after(retry.0));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        return Ok(format!("{ip} token {}", token_id(token.expose())));
    }
    // Counts the failure; the next attempt over the limit is refused above.
    let _ = state.admin_limiter.check(ip, now);
    info!(target: "vestnik::admin", peer = %ip, "admin authentication failed");
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Missing or wrong admin token (Authorization: Bearer TOKEN)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit log names a token by a fingerprint that does not contain it.
    #[test]
    fn token_fingerprint_hides_the_token() {
        let id = token_id("super-secret-admin-token");
        assert!(id.starts_with("sha256:") && !id.contains("super"));
        assert_eq!(id, token_id("super-secret-admin-token"));
    }
}
