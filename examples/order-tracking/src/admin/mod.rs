//! Part 2: the inSales-shaped admin API, HTTP Basic protected: custom statuses
//! (`admin/custom_statuses.json`, and `.xml` in inSales's XML format) and orders (`admin/orders.json`) with the document's rules for
//! `fulfillment_status` and `custom_status_permalink`.
//!
//! Bodies and answers keep the document's shapes (bare objects and arrays, `{"status":"ok"}`,
//! `{"message": "incompatible fulfillment and custom statuses"}` with 422). Status changes go
//! through `orders::change_status`; creation writes the UCP "created" outbox rows in its own
//! transaction. This module never triggers anything before its transaction committed.

use axum::http::{header, HeaderMap};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

mod orders;
mod statuses;
pub mod xml;

pub use orders::*;
pub use statuses::*;

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks HTTP Basic credentials against the configured admin login and password.
pub(crate) fn basic_auth(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let expected = format!(
        "Basic {}",
        base64(
            format!(
                "{}:{}",
                state.settings.admin_login, state.settings.admin_password
            )
            .as_bytes()
        )
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"shop-app:pw"), "c2hvcC1hcHA6cHc=");
    }
}
