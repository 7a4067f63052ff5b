//! Socket ids: two decimal integers joined by a dot, as every official SDK's regex `^\d+\.\d+$` demands.
//!
//! Stored as two integers so that ids are `Copy`, hash fast and never allocate. This module never draws
//! random numbers itself: the caller supplies them, which keeps the crate pure.

use std::fmt;

/// A socket id such as `1234.5678`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    /// The part before the dot.
    high: u64,
    /// The part after the dot.
    low: u64,
}

/// Why a socket id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket_id {0:?}: expected two integers joined by a dot")]
pub struct SocketIdError(pub String);

impl SocketId {
    /// Largest part the broker draws, so ids stay short (soketi draws from the same range).
    pub const MAX_PART: u64 = 10_000_000_000;

    /// Builds an id from two parts; the caller picks them at random.
    pub const fn new(high: u64, low: u64) -> Self {
        Self { high, low }
    }

    /// Parses `\d+\.\d+`.
    ///
    /// At most 19 digits a part, so every accepted part fits a `u64` (20 digits could overflow).
    /// The error quotes at most 64 characters of the input, so a hostile value cannot bloat a log
    /// line.
    pub fn parse(s: &str) -> Result<Self, SocketIdError> {
        let err = || SocketIdError(s.chars().take(64).collect());
        let (a, b) = s.split_once('.').ok_or_else(err)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 19 && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(err());
        }
        Ok(Self {
            high: a.parse().map_err(|_| err())?,
            low: b.parse().map_err(|_| err())?,
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the SDKs' `^\d+\.\d+$` accepts parses and prints back unchanged; everything else is
    /// refused.
    #[test]
    fn round_trip_and_refusals() {
        let id = SocketId::parse("45055.28877557").unwrap();
        assert_eq!(id.to_string(), "45055.28877557");
        for bad in [
            "1.1:",
            ":1.1",
            "1",
            "a.b",
            "1.",
            ".1",
            "1.1.1",
            "",
            "-1.2",
            "99999999999999999999.1",
        ] {
            assert!(SocketId::parse(bad).is_err(), "{bad}");
        }
    }
}
