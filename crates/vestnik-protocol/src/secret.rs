//! [`AppSecret`]: an app's secret, which signs channel auth, sign-in, API requests and webhooks.
//!
//! The secret is wrapped so that it cannot leak by accident: its `Debug` and `Display` print
//! `<redacted>`, so a struct that holds one (an app, a signed call, the server's state) may derive
//! `Debug` and be logged safely. Signing reads it through [`AppSecret::expose`] (or the `&str` it
//! derefs to, which keeps the signing functions plain `&str` functions). This module must never
//! print, log or serialise the secret itself.

use std::fmt;
use std::ops::Deref;

use serde::Deserialize;

/// What `Debug` and `Display` print instead of a secret.
const REDACTED: &str = "<redacted>";

/// An app secret. Read from configuration, compared and used for signing; never printed.
///
/// `PartialEq` is a plain comparison, for config reloads and tests; a secret a client sends is
/// never compared with it, since every check goes through an HMAC and a constant-time comparison.
/// `transparent` lets a config file write the secret as a plain string.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct AppSecret(String);

impl AppSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for signing and verifying. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Deref for AppSecret {
    type Target = str;

    /// The secret as `&str`, so `&app.secret` goes straight into the signing functions.
    fn deref(&self) -> &str {
        &self.0
    }
}

/// For config and tests; the same as [`AppSecret::new`].
impl From<String> for AppSecret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for AppSecret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
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
