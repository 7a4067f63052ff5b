//! The one table of Pusher wire codes and what a client should do when it sees them.
//!
//! Every `pusher:error` code and every WebSocket close code the broker sends comes from [`PusherCode`],
//! so the mapping from an error to a number exists in exactly one place.

/// A Pusher protocol error or close code (Pusher protocol docs, "Error Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PusherCode {
    /// 4000: the app only accepts TLS connections.
    SslOnly,
    /// 4001: no app has this key.
    AppNotFound,
    /// 4003: the app is disabled.
    AppDisabled,
    /// 4004: the app is over its connection quota.
    AppOverQuota,
    /// 4005: the WebSocket path is not `/app/{key}`.
    PathNotFound,
    /// 4006: the `protocol` parameter is not a number.
    InvalidVersion,
    /// 4007: the protocol version is not supported.
    UnsupportedProtocol,
    /// 4008: no `protocol` parameter was given.
    NoProtocol,
    /// 4009: the connection is not authorised (bad sign-in, refused origin, terminated user, ...).
    Unauthorized,
    /// 4100: the node is over capacity, or the socket could not keep up; reconnect after a backoff.
    OverCapacity,
    /// 4200: generic "reconnect now", used when the server shuts down.
    Reconnect,
    /// 4201: the client did not answer the server's ping in time.
    PongTimeout,
    /// 4202: closed after inactivity.
    Inactivity,
    /// 4300: the message could not be understood (malformed JSON, unknown event, binary frame, too big).
    /// Pusher reserves 4300-4399 for "other errors"; Vestnik names this one.
    InvalidMessage,
    /// 4301: a client event was refused (rate limit, not allowed on this channel, too large).
    ClientEventRejected,
    /// 4302: the watchlist was longer than allowed; only the first ids were kept.
    WatchlistLimit,
}

/// What a client should do after a close with a given code (Pusher protocol docs, close code ranges).
///
/// pusher-js acts on the range of the close code, not the code itself, which is why a new code must
/// be placed in the range whose policy it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectPolicy {
    /// 4000-4099: do not reconnect unchanged.
    Never,
    /// 4100-4199: reconnect after a backoff of at least a second.
    Backoff,
    /// 4200-4299: reconnect immediately.
    Immediately,
    /// 4300-4399: other errors.
    Other,
}

impl PusherCode {
    /// The number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            Self::SslOnly => 4000,
            Self::AppNotFound => 4001,
            Self::AppDisabled => 4003,
            Self::AppOverQuota => 4004,
            Self::PathNotFound => 4005,
            Self::InvalidVersion => 4006,
            Self::UnsupportedProtocol => 4007,
            Self::NoProtocol => 4008,
            Self::Unauthorized => 4009,
            Self::OverCapacity => 4100,
            Self::Reconnect => 4200,
            Self::PongTimeout => 4201,
            Self::Inactivity => 4202,
            Self::InvalidMessage => 4300,
            Self::ClientEventRejected => 4301,
            Self::WatchlistLimit => 4302,
        }
    }

    /// What a client should do after a close with this code.
    pub const fn reconnect_policy(self) -> ReconnectPolicy {
        match self.code() {
            4000..=4099 => ReconnectPolicy::Never,
            4100..=4199 => ReconnectPolicy::Backoff,
            4200..=4299 => ReconnectPolicy::Immediately,
            _ => ReconnectPolicy::Other,
        }
    }

    /// A short human-readable default message for this code.
    pub const fn default_message(self) -> &'static str {
        match self {
            Self::SslOnly => "Application only accepts SSL connections, reconnect using wss://",
            Self::AppNotFound => "Application does not exist",
            Self::AppDisabled => "Application disabled",
            Self::AppOverQuota => "Application is over connection quota",
            Self::PathNotFound => "Path not found",
            Self::InvalidVersion => "Invalid version string format",
            Self::UnsupportedProtocol => "Unsupported protocol version",
            Self::NoProtocol => "No protocol version supplied",
            Self::Unauthorized => "Connection is unauthorized",
            Self::OverCapacity => "Over capacity",
            Self::Reconnect => "Server is restarting, reconnect",
            Self::PongTimeout => "Pong reply not received",
            Self::Inactivity => "Closed after inactivity",
            Self::InvalidMessage => "Invalid message",
            Self::ClientEventRejected => "Client event rejected",
            Self::WatchlistLimit => "Watchlist limit exceeded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code lands in the range whose reconnect policy it needs; a code in the wrong range
    /// would make pusher-js reconnect in a loop, or give up when it should retry.
    #[test]
    fn ranges_map_to_policies() {
        assert_eq!(
            PusherCode::AppNotFound.reconnect_policy(),
            ReconnectPolicy::Never
        );
        assert_eq!(
            PusherCode::OverCapacity.reconnect_policy(),
            ReconnectPolicy::Backoff
        );
        assert_eq!(
            PusherCode::Reconnect.reconnect_policy(),
            ReconnectPolicy::Immediately
        );
        assert_eq!(
            PusherCode::ClientEventRejected.reconnect_policy(),
            ReconnectPolicy::Other
        );
        assert_eq!(PusherCode::PongTimeout.code(), 4201);
    }
}
