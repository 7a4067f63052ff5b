//! What a history read gives: kept events with their wall-clock times, a page of them with the
//! channel's bounds, and the refusal that says where to go on from. Built by
//! [`super::History::page`] under the stream's lock; this module only shapes them, and must never
//! touch a stream.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Deserialize;
use vestnik_protocol::message::RecoveryFailure;

/// One kept event as the history API reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptEvent {
    /// Its offset in the channel's epoch.
    pub offset: u64,
    /// The frame sockets got (event, channel, data, position), shared with the history.
    pub frame: Bytes,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
}

/// The app's parts of a kept frame: what a history reader shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventFields {
    /// The event name.
    pub event: String,
    /// The data string, as published.
    pub data: String,
    /// On presence client events, the sender's user id.
    #[serde(default)]
    pub user_id: Option<String>,
}

impl KeptEvent {
    /// Decodes the frame back into its event name, data and user id. Only history readers pay for
    /// this; publishing keeps the frame as the sockets got it. Our own frames always decode.
    pub fn fields(&self) -> Result<EventFields, serde_json::Error> {
        serde_json::from_slice(&self.frame)
    }
}

/// A page of one channel's history, oldest first, with the bounds of what is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The channel's epoch; `None` when it keeps nothing on this node (no event yet, or all expired).
    pub epoch: Option<String>,
    /// The offset of the oldest kept event (`last_offset + 1` when none is kept).
    pub first_offset: u64,
    /// The offset of the channel's last event (0 before the first).
    pub last_offset: u64,
    /// The events of this page.
    pub events: Vec<KeptEvent>,
}

/// Why a history read was refused, with the channel's current bounds (no events) so the caller
/// knows where to go on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRefusal {
    /// Why: the same reasons a recovery gives.
    pub reason: RecoveryFailure,
    /// The channel's epoch and bounds now.
    pub current: HistoryPage,
}

impl HistoryRefusal {
    /// A refusal for `reason`, with `current`'s bounds.
    pub fn new(reason: RecoveryFailure, current: HistoryPage) -> Self {
        Self { reason, current }
    }
}

/// Turns the monotonic instants the history keeps into wall-clock milliseconds: one pair of
/// readings taken when the app's history was made, so a publish never reads the system clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct WallClock {
    instant: Instant,
    pub(super) unix_ms: u64,
}

impl Default for WallClock {
    fn default() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            instant: Instant::now(),
            unix_ms,
        }
    }
}

impl WallClock {
    /// `at` in milliseconds since the Unix epoch.
    pub(super) fn millis(&self, at: Instant) -> u64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match at.checked_duration_since(self.instant) {
            Some(later) => self.unix_ms.saturating_add(ms(later)),
            None => self
                .unix_ms
                .saturating_sub(ms(self.instant.saturating_duration_since(at))),
        }
    }

    /// The instant `unix_ms` (milliseconds since the Unix epoch) stands for.
    pub(super) fn instant_of(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.instant + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            let back = Duration::from_millis(self.unix_ms - unix_ms);
            self.instant.checked_sub(back).unwrap_or(self.instant)
        }
    }
}
