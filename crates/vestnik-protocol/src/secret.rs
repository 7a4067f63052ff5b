//! [`AppSecret`]: an app's secret, which signs channel auth, sign-in, API requests and webhooks.
//!
//! The secret is wrapped so that it cannot leak by accident: its `Debug` and `Display` print
//! `<redacted>`, so a struct that holds one (an app, a signed call, the server's state) may derive
//! `Debug` and be logged safely. Signing reads it through [`AppSecret::expose`] (or the `&str` it
//! derefs to, which keeps the signing functions plain `&str` functions). This module must never
//! print, log or serialise the secret itself.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::auth::HmacSha256;

/// What `Debug` and `Display` print instead of a secret.
const REDACTED: &str = "<redacted>";

/// An app secret. Read from configuration, compared and used for signing; never printed.
///
/// `PartialEq` is a plain comparison, for config reloads and tests; a secret a client sends is
/// never compared with it, since every check goes through an HMAC and a constant-time comparison.
/// `transparent` lets a config file write the secret as a plain string.
///
/// The HMAC-SHA256 state keyed with the secret (its inner and outer pads already hashed) is made on
/// first use and kept, so that verifying a signed API request does not hash the key again each time.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct AppSecret {
    /// The secret.
    secret: String,
    /// HMAC-SHA256 keyed with `secret`, before any message; derived from `secret` alone.
    #[serde(skip)]
    keyed: OnceLock<HmacSha256>,
}

impl AppSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            keyed: OnceLock::new(),
        }
    }

    /// The secret itself, for signing and verifying. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// A fresh HMAC-SHA256 keyed with the secret: a copy of the state keyed on first use.
    pub(crate) fn keyed_mac(&self) -> HmacSha256 {
        self.keyed
            .get_or_init(|| crate::auth::keyed(&self.secret))
            .clone()
    }
}

impl PartialEq for AppSecret {
    /// The secrets compared as strings (the keyed state follows from the secret).
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
    }
}

impl Eq for AppSecret {}

impl Deref for AppSecret {
    type Target = str;

    /// The secret as `&str`, so `&app.secret` goes straight into the signing functions.
    fn deref(&self) -> &str {
        &self.secret
    }
}

/// For config and tests; the same as [`AppSecret::new`].
impl From<String> for AppSecret {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for AppSecret {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl fmt::Debug for AppSecret {
    /// Redacted: this is what makes `#[derive(Debug)]` safe on anything holding a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for AppSecret {
    /// Redacted as well, so `format!("{secret}")` by mistake cannot leak it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guarantee issue 12 asks for, at the source: neither `{:?}`, `{:#?}` nor `{}` shows the
    /// secret.
    #[test]
    fn debug_and_display_redact() {
        let s = AppSecret::from("t0p-s3cret");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.to_string(), "<redacted>");
        assert_eq!(s.expose(), "t0p-s3cret");
        assert_eq!(&*s, "t0p-s3cret");
    }

    /// `secret = "…"` in a config file reads into an `AppSecret` with no extra syntax.
    #[test]
    fn deserialises_from_a_plain_string() {
        let s: AppSecret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), "abc");
    }
}
