//! The core's typed errors, each mapped to its Pusher code or subscription-error shape in exactly one
//! place: here. The edges only encode what these methods say.

use vestnik_protocol::auth::AuthError;
use vestnik_protocol::message::{SubscriptionErrorKind, UserDataError};
use vestnik_protocol::PusherCode;

/// Why a socket may not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The app is disabled.
    #[error("Application disabled")]
    AppDisabled,
    /// The app is over its connection quota.
    #[error("Application is over connection quota")]
    AppOverQuota,
    /// The node is over its connection cap.
    #[error("Over capacity")]
    OverCapacity,
}

impl ConnectError {
    /// The close code.
    pub fn code(self) -> PusherCode {
        match self {
            Self::AppDisabled => PusherCode::AppDisabled,
            Self::AppOverQuota => PusherCode::AppOverQuota,
            Self::OverCapacity => PusherCode::OverCapacity,
        }
    }
}

/// Why a subscription was refused. Sent as `pusher:subscription_error` on the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The signature is missing or wrong.
    #[error("Invalid signature: {0}")]
    Unauthorized(String),
    /// The socket may not join this channel at all.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed (channel data, missing fields).
    #[error("{0}")]
    Invalid(String),
    /// A limit was hit.
    #[error("{0}")]
    LimitReached(String),
}

impl SubscribeError {
    /// The `type` of the subscription error.
    pub fn kind(&self) -> SubscriptionErrorKind {
        match self {
            Self::Unauthorized(_) | Self::Forbidden(_) => SubscriptionErrorKind::AuthError,
            Self::Invalid(_) => SubscriptionErrorKind::InvalidChannel,
            Self::LimitReached(_) => SubscriptionErrorKind::LimitReached,
        }
    }

    /// The HTTP-like status pusher-js shows.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) | Self::LimitReached(_) => 403,
            Self::Invalid(_) => 400,
        }
    }
}

impl From<AuthError> for SubscribeError {
    fn from(e: AuthError) -> Self {
        Self::Unauthorized(e.to_string())
    }
}

/// Presence `channel_data` refused: a `user_info` over the app's limit is a limit reached (403),
/// anything else malformed data (400).
impl From<UserDataError> for SubscribeError {
    fn from(e: UserDataError) -> Self {
        match e {
            UserDataError::InfoTooLarge { .. } => Self::LimitReached(e.to_string()),
            UserDataError::Malformed { .. }
            | UserDataError::MissingId(_)
            | UserDataError::IdTooLong => Self::Invalid(e.to_string()),
        }
    }
}

/// Why a client event was refused. Sent as `pusher:error` 4301; the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientEventError {
    /// The app has client events switched off.
    #[error("Client events are not enabled for this app")]
    Disabled,
    /// Client events are allowed only on private and presence channels.
    #[error("Client events are only allowed on private and presence channels, not on {0}")]
    ChannelKind(String),
    /// The sender has not joined the channel.
    #[error("Client event on {0}, which this socket has not subscribed to")]
    NotSubscribed(String),
    /// The data is over the app's limit.
    #[error("Client event data is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The data size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The socket sent too many client events.
    #[error("Client event rejected: more than {0} per second")]
    RateLimited(u32),
    /// The app has used up its daily message quota (until UTC midnight).
    #[error("Client event rejected: the app has exceeded its daily message quota")]
    OverQuota,
}

impl ClientEventError {
    /// The Pusher code.
    pub fn code(&self) -> PusherCode {
        match self {
            Self::Disabled
            | Self::ChannelKind(_)
            | Self::NotSubscribed(_)
            | Self::TooLarge { .. }
            | Self::RateLimited(_)
            | Self::OverQuota => PusherCode::ClientEventRejected,
        }
    }
}

/// Why a sign-in was refused. Sent as `pusher:error` 4009, then the socket is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninError {
    /// The signature is wrong.
    #[error("Sign-in refused: {0}")]
    Auth(#[from] AuthError),
    /// `user_data` is malformed, or its `user_info` over the app's limit.
    #[error("Sign-in refused: {0}")]
    UserData(#[from] UserDataError),
    /// The socket already signed in as another user.
    #[error("Sign-in refused: this connection is already signed in as another user")]
    AlreadySignedIn,
}

impl SigninError {
    /// The Pusher code.
    pub fn code(&self) -> PusherCode {
        match self {
            Self::Auth(_) | Self::UserData(_) | Self::AlreadySignedIn => PusherCode::Unauthorized,
        }
    }
}
