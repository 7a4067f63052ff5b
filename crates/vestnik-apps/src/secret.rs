//! The app secret as a value that never prints, and the generators of fresh ids, keys and secrets.
//!
//! [`Secret`] is a small newtype whose `Debug` and `Display` show `…redacted…`, so that a record, an
//! error or a log line that carries one cannot leak it. It is to be replaced by `vestnik_protocol`'s
//! `AppSecret` when both land (another branch adds it); the two have the same role. This module must
//! never compare secrets for authentication: signature checks run in constant time in the protocol crate.

use std::fmt;

use rand::Rng;

/// What `Debug` and `Display` show instead of a secret.
pub const REDACTED: &str = "…redacted…";

/// An app secret: signs API requests, channel auth, sign-in and webhooks. Never printed.
///
/// `PartialEq` is an ordinary comparison, meant for tests and for noticing a rotation; it must not
/// be used to check a secret a client sent (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from a store or given by an operator.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// A fresh random secret: 32 lowercase hex digits (128 bits), twice the entropy of Pusher's own.
    pub fn generate() -> Self {
        Self(random_hex(16))
    }

    /// The secret itself, for signing and for writing to the store. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    /// Redacted, so `{:?}` of any record or error that holds a secret is safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    /// Redacted too: a `format!("{secret}")` by mistake must not leak it either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A fresh app id: nine decimal digits, because the Python SDK needs a numeric id. A collision is
/// refused by the store's primary key and the caller retries.
pub fn generate_id() -> String {
    rand::rng()
        .random_range(100_000_000u32..1_000_000_000)
        .to_string()
}

/// A fresh public key: 20 lowercase hex digits, the shape of Pusher's keys.
pub fn generate_key() -> String {
    random_hex(10)
}

/// `bytes` random bytes as lowercase hex, from the thread-local CSPRNG (`rand::rng()` is a ChaCha
/// generator seeded from the OS), so generated secrets are fit for signing.
fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a secret could reach a log (`Display`, `Debug`, inside an `Option`) shows the
    /// placeholder, while `expose` still gives signing the real value.
    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            format!("{:?}", Some(s.clone())),
            format!("Some({REDACTED})")
        );
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    /// The shapes the SDKs accept: a numeric id (the Python SDK), a 20-hex key, a 32-hex secret.
    #[test]
    fn generated_shapes() {
        let id = generate_id();
        assert_eq!(id.len(), 9);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        let key = generate_key();
        assert_eq!(key.len(), 20);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        let a = Secret::generate();
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, Secret::generate());
    }
}
