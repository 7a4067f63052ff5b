//! Console sessions: the sign-in check and the server-issued token that stands for it.
//!
//! An operator signs in to one app with that app's secret; [`secret_matches`] compares it in constant
//! time. The broker then issues a token `v1.{app id, hex}.{expiry, Unix seconds}.{HMAC-SHA256}` keyed
//! by the app's secret, sent back as an HttpOnly, SameSite=Strict cookie. Keying by the app's secret
//! scopes a token to its app (it verifies against no other app's secret), lets any node of a cluster
//! check it without shared state, and ends every session when the secret is rotated. The signed message
//! starts with a label of its own, so a token can never pass for a Pusher API or auth signature. This
//! module must never log or return a secret, and never store a session.

use std::sync::Arc;

use vestnik_broker::App;
use vestnik_protocol::auth::{sign, sign_bytes, verify_hex};

/// The cookie that carries the token.
pub const COOKIE_NAME: &str = "vestnik_console";

/// The token format's version, first in every token.
const VERSION: &str = "v1";

/// Starts every signed message, so console tokens live in their own signature domain.
const LABEL: &str = "vestnik-console-session";

/// Keys the sign-in comparison. Both sides are MACed first so the comparison runs over two strings
/// of equal length, and neither the secret's length nor its content leaks through timing.
const SECRET_CHECK_KEY: &str = "vestnik-console-secret-check";

/// Why a token was refused. None of these says which part of a token was wrong beyond what the
/// holder of the token already knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("malformed console session")]
    Malformed,
    /// The token names an app this broker does not serve.
    #[error("console session for an unknown app")]
    UnknownApp,
    /// The signature does not match: tampered, forged, or the app's secret changed.
    #[error("invalid console session")]
    BadSignature,
    /// The token's time is up.
    #[error("console session expired; sign in again")]
    Expired,
}

/// Whether `given` is `app`'s secret, compared in constant time.
pub fn secret_matches(app: &App, given: &str) -> bool {
    let expected = sign(SECRET_CHECK_KEY, &app.secret);
    verify_hex(SECRET_CHECK_KEY, given.as_bytes(), &expected)
}

/// The exact bytes a token's MAC covers: the label, the version, the hex app id and the expiry, one
/// per line. The app id travels as hex so a `.` in an id cannot shift the token's fields.
fn message(app_hex: &str, expires: u64) -> String {
    format!("{LABEL}\n{VERSION}\n{app_hex}\n{expires}")
}

/// A token for `app` that is valid until `expires` (Unix seconds).
///
/// The expiry is inside the MAC, so a holder cannot extend a token; nothing is stored, so a
/// token cannot be revoked one by one: rotating the app's secret ends them all.
pub fn issue(app: &App, expires: u64) -> String {
    let app_hex = hex::encode(app.id.as_bytes());
    let mac = sign_bytes(&app.secret, message(&app_hex, expires).as_bytes());
    format!("{VERSION}.{app_hex}.{expires}.{mac}")
}

/// The app a token signs in to, if it is genuine and still valid at `now` (Unix seconds).
/// `app_of` finds an app by id.
pub fn verify(
    token: &str,
    app_of: impl Fn(&str) -> Option<Arc<App>>,
    now: u64,
) -> Result<Arc<App>, TokenError> {
    let mut parts = token.split('.');
    let (Some(VERSION), Some(app_hex), Some(expires_text), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let expires: u64 = expires_text.parse().map_err(|_| TokenError::Malformed)?;
    let app_id = hex::decode(app_hex)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(TokenError::Malformed)?;
    let app = app_of(&app_id).ok_or(TokenError::UnknownApp)?;
    // The signature first: an attacker learns nothing about expiry from a forged token.
    if !verify_hex(&app.secret, message(app_hex, expires).as_bytes(), mac) {
        return Err(TokenError::BadSignature);
    }
    if now >= expires {
        return Err(TokenError::Expired);
    }
    Ok(app)
}

/// The console token in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, secret: &str) -> Arc<App> {
        Arc::new(App {
            id: id.into(),
            key: format!("{id}-key"),
            secret: secret.into(),
            ..App::default()
        })
    }

    fn store(apps: &[Arc<App>]) -> impl Fn(&str) -> Option<Arc<App>> + '_ {
        move |id| apps.iter().find(|a| a.id == id).cloned()
    }

    const NOW: u64 = 1_800_000_000;

    /// The round trip: a token issued for an app verifies to that app before its expiry.
    #[test]
    fn a_fresh_token_signs_in_to_its_app() {
        let apps = [app("one", "s1"), app("two", "s2")];
        let token = issue(&apps[0], NOW + 60);
        let got = verify(&token, store(&apps), NOW).unwrap();
        assert_eq!(got.id, "one");
        assert!(!token.contains("s1"), "the token must not carry the secret");
    }

    /// Expiry is exact at `expires` (`now >= expires` refuses), so a token lives no longer than
    /// issued.
    #[test]
    fn an_expired_token_is_refused() {
        let apps = [app("one", "s1")];
        let token = issue(&apps[0], NOW + 60);
        assert!(verify(&token, store(&apps), NOW + 59).is_ok());
        assert_eq!(
            verify(&token, store(&apps), NOW + 60).unwrap_err(),
            TokenError::Expired
        );
    }

    /// A holder who edits the expiry to extend the session, or changes the MAC, gets
    /// `BadSignature`.
    #[test]
    fn a_tampered_expiry_or_signature_is_refused() {
        let apps = [app("one", "s1")];
        let token = issue(&apps[0], NOW + 60);
        let later = token.replace(&format!(".{}.", NOW + 60), &format!(".{}.", NOW + 6000));
        assert_ne!(later, token);
        assert_eq!(
            verify(&later, store(&apps), NOW).unwrap_err(),
            TokenError::BadSignature
        );
        let mut flipped = token.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            verify(&flipped, store(&apps), NOW).unwrap_err(),
            TokenError::BadSignature
        );
    }

    /// The scoping promise of keying by the app's secret: a token re-labelled with another app's id
    /// fails that app's signature check.
    #[test]
    fn a_token_for_one_app_does_not_open_another() {
        let apps = [app("one", "s1"), app("two", "s2")];
        let token = issue(&apps[0], NOW + 60);
        // Renaming the app in the token is checked against the other app's secret.
        let renamed = token.replace(&hex::encode("one"), &hex::encode("two"));
        assert_eq!(
            verify(&renamed, store(&apps), NOW).unwrap_err(),
            TokenError::BadSignature
        );
        // A token minted with the wrong secret for an app is refused too.
        let forged = issue(&app("two", "s1"), NOW + 60);
        assert_eq!(
            verify(&forged, store(&apps), NOW).unwrap_err(),
            TokenError::BadSignature
        );
        // And an app this broker does not serve is named as such.
        let stranger = issue(&app("three", "s3"), NOW + 60);
        assert_eq!(
            verify(&stranger, store(&apps), NOW).unwrap_err(),
            TokenError::UnknownApp
        );
    }

    /// Rotation is the console's logout-everyone: a token signed with the old secret no longer
    /// verifies.
    #[test]
    fn a_rotated_secret_ends_the_session() {
        let token = issue(&app("one", "old"), NOW + 60);
        let rotated = [app("one", "new")];
        assert_eq!(
            verify(&token, store(&rotated), NOW).unwrap_err(),
            TokenError::BadSignature
        );
    }

    /// Anything not of the four-field shape is `Malformed`, never a panic on a hostile cookie.
    #[test]
    fn garbage_is_malformed() {
        let apps = [app("one", "s1")];
        for bad in [
            "",
            "v1",
            "v2.6f6e65.1.ab",
            "v1.zz.1.ab",
            "v1.6f6e65.soon.ab",
            "v1.6f6e65.1.ab.extra",
        ] {
            assert_eq!(
                verify(bad, store(&apps), NOW).unwrap_err(),
                TokenError::Malformed,
                "{bad:?}"
            );
        }
    }

    /// The sign-in comparison accepts the exact secret only: no prefix, no extra byte, no empty
    /// string.
    #[test]
    fn the_secret_check_is_exact() {
        let a = app("one", "s3cret");
        assert!(secret_matches(&a, "s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3CRET", "s3cretx"] {
            assert!(!secret_matches(&a, wrong), "{wrong:?}");
        }
    }

    /// Browsers send every cookie of the host in one header; ours is picked out by name.
    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(
            from_cookie_header("a=1; vestnik_console=v1.x.2.y; b=3"),
            Some("v1.x.2.y")
        );
        assert_eq!(from_cookie_header("vestnik_consolex=1"), None);
        assert_eq!(from_cookie_header(""), None);
    }
}
