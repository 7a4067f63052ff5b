//! The answers of Vestnik's history API (`GET /apps/{id}/channels/{name}/history`, see
//! `docs/recovery.md`): a page of a channel's kept events, oldest first, and the refusal that
//! tells a backend where to go on from when its position is lost. This module only shapes
//! answers; [`crate::Client::channel_history`] makes the request.

use serde::Deserialize;

use crate::Error;

/// One kept event of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HistoryEvent {
    /// Its offset in the channel's epoch: rises by exactly 1 per event.
    pub offset: u64,
    /// The event name.
    pub event: String,
    /// The data string, as published.
    pub data: String,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// On presence client events, the sender's user id.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A page of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HistoryPage {
    /// The channel's epoch; `None` when it keeps nothing (no event yet, or all expired).
    pub epoch: Option<String>,
    /// The offset of the oldest kept event (`last_offset + 1` when none is kept).
    pub first_offset: u64,
    /// The offset of the channel's last event.
    pub last_offset: u64,
    /// This page's events, oldest first.
    pub events: Vec<HistoryEvent>,
    /// The `after` of the next page (with this `epoch`).
    pub next_after: u64,
    /// Whether events after this page are kept now.
    pub has_more: bool,
}

/// Where to read from: after `offset` of `epoch` (0 for the start of that epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor<'a> {
    /// The epoch the offset belongs to.
    pub epoch: &'a str,
    /// The last offset already read.
    pub offset: u64,
}

/// The body of a refused history read.
#[derive(Deserialize)]
struct Refusal {
    reason: String,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    first_offset: u64,
    #[serde(default)]
    last_offset: u64,
}

/// A non-2xx answer to a history read: [`Error::HistoryRefused`] when the broker said why (a lost
/// position, history off, a cluster), else [`Error::Status`].
pub(crate) fn refusal(status: u16, body: String) -> Error {
    match serde_json::from_str::<Refusal>(&body) {
        Ok(r) => Error::HistoryRefused {
            status,
            reason: r.reason,
            epoch: r.epoch,
            first_offset: r.first_offset,
            last_offset: r.last_offset,
        },
        Err(_) => Error::Status { status, body },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_with_a_reason_is_typed_and_others_stay_status() {
        let e = refusal(
            409,
            r#"{"error":"x","code":409,"reason":"too_old","epoch":"ab","first_offset":4,"last_offset":8}"#
                .into(),
        );
        assert!(matches!(
            e,
            Error::HistoryRefused { status: 409, ref reason, epoch: Some(ref ep), first_offset: 4, last_offset: 8 }
                if reason == "too_old" && ep == "ab"
        ));
        assert!(matches!(
            refusal(400, r#"{"error":"bad"}"#.into()),
            Error::Status { status: 400, .. }
        ));
    }
}
