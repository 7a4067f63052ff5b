//! The app secret as a value that never prints, and the generators of fresh ids, keys and secrets.
//!
//! [`Secret`] is `vestnik_protocol`'s `AppSecret`, whose `Debug` and `Display` show a placeholder,
//! so that a record, an error or a log line that carries one cannot leak it. This module must
//! never compare secrets for authentication: signature checks run in constant time in the protocol crate.

use rand::Rng;

/// What a secret's `Debug` and `Display` show (the protocol crate's placeholder; the tests below
/// hold the two equal).
pub const REDACTED: &str = "<redacted>";

/// An app secret: the protocol crate's [`vestnik_protocol::AppSecret`], whose `Debug` and
/// `Display` are redacted, so the catalogue and the broker share one type and one rule.
pub use vestnik_protocol::AppSecret as Secret;

/// A fresh random secret: 32 lowercase hex digits (128 bits), twice the entropy of Pusher's own.
pub fn generate_secret() -> Secret {
    Secret::new(random_hex(16))
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
        let a = generate_secret();
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, generate_secret());
    }
}
