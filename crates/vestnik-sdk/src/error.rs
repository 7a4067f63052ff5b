//! Every way an SDK call can fail, typed so a caller can tell its own mistakes (bad channel name,
//! too many channels) from the broker's refusals and from the network.

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A channel name the protocol refuses.
    #[error("invalid channel name: {0}")]
    Channel(#[from] vestnik_protocol::ChannelNameError),
    /// A socket id that is not two integers joined by a dot.
    #[error(transparent)]
    SocketId(#[from] vestnik_protocol::socket::SocketIdError),
    /// No channel given, or more than one trigger may carry.
    #[error("a trigger takes 1 to {max} channels, got {given}")]
    ChannelCount {
        /// How many were given.
        given: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// More events than one batch may carry.
    #[error("a batch takes 1 to {max} events, got {given}")]
    BatchSize {
        /// How many were given.
        given: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// An event name that is empty or too long.
    #[error("event name must be 1 to {max} bytes")]
    EventName {
        /// The protocol's limit.
        max: usize,
    },
    /// Event data above the broker's limit.
    #[error("event data is {size} bytes, above the {max}-byte limit")]
    DataTooLarge {
        /// Size of the encoded data.
        size: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// Only presence channels take member data, and they need it.
    #[error("{0}")]
    PresenceData(&'static str),
    /// A value could not be encoded as JSON.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The configured host or path does not form a URL.
    #[error("invalid broker URL: {0}")]
    Url(String),
    /// The TLS setup failed (no usable crypto provider).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting or the exchange failed.
    #[error("request to the broker failed: {0}")]
    Transport(String),
    /// No answer within the configured timeout.
    #[error("no answer from the broker within {0:?}")]
    Timeout(std::time::Duration),
    /// The broker answered with a non-2xx status; `body` is what it said (Vestnik: `{"error": …}`).
    #[error("broker answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer's body, as text.
        body: String,
    },
    /// The history API refused a read and said why: `reason` is `epoch_changed` or `too_old`
    /// (409: reload your state, then read on from `epoch` / `first_offset`), `history_off` (404)
    /// or `cluster_history_unavailable` (501).
    #[error("history read refused (HTTP {status}): {reason}")]
    HistoryRefused {
        /// The HTTP status.
        status: u16,
        /// Why, as the broker names it.
        reason: String,
        /// The channel's epoch now, if it has one.
        epoch: Option<String>,
        /// The offset of the oldest event kept now.
        first_offset: u64,
        /// The offset of the channel's last event.
        last_offset: u64,
    },
    /// A webhook's `X-Pusher-Key` names another app.
    #[error("webhook key does not match the app key")]
    WebhookKey,
    /// A webhook's `X-Pusher-Signature` does not match its body.
    #[error("webhook signature does not match the body")]
    WebhookSignature,
    /// A webhook body that is not the documented JSON.
    #[error("webhook body is not valid: {0}")]
    WebhookBody(String),
}
