//! Positions in a channel's stream of events, and what a subscribe's recovery answered.
//!
//! A [`Position`] is `{epoch, offset}`: the offset rises by exactly 1 per event on the channel, and the
//! epoch names one unbroken history of it (it changes when that history is lost). Events carry their
//! position as an extra top-level `"position"` field, which clients that do not know it ignore; a
//! `pusher:subscribe` may carry the last position its client saw as `"recover"`, and the
//! `subscription_succeeded` that answers it carries a [`Recovery`]. This module must never do IO and
//! never decide whether a recovery is possible: it only spells the words.

use std::fmt::Write as _;

use serde::Deserialize;

/// Where an event sits in its channel's history, as the wire writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    /// The history this offset belongs to.
    pub epoch: &'a str,
    /// The event's number in that history, from 1.
    pub offset: u64,
}

/// The position a client asks to recover from: the last one it saw on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// The epoch of the last event seen.
    pub epoch: String,
    /// The offset of the last event seen (0: none seen yet in that epoch).
    pub offset: u64,
}

/// Why a recovery could not be made; the client reloads its state instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryFailure {
    /// History is off for this channel.
    HistoryOff,
    /// The channel's history is another one than the position's: lost to a restart, an eviction
    /// or expiry, or the position was never one of its offsets.
    EpochChanged,
    /// Same history, but events after the position were already dropped by its bounds (or more are
    /// missing than one recovery replays).
    TooOld,
    /// The node is in a cluster whose backbone keeps no history (NATS without JetStream).
    ClusterHistoryUnavailable,
    /// The node is in a cluster whose backbone keeps the history, but could not read it now.
    BackboneUnavailable,
}

impl RecoveryFailure {
    /// The `reason` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HistoryOff => "history_off",
            Self::EpochChanged => "epoch_changed",
            Self::TooOld => "too_old",
            Self::ClusterHistoryUnavailable => "cluster_history_unavailable",
            Self::BackboneUnavailable => "backbone_unavailable",
        }
    }
}

/// What a recovery answered, written into `subscription_succeeded`'s data as `"recovery"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Recovered: this many missed events follow, in order.
    Recovered {
        /// How many.
        missed: usize,
    },
    /// Not recovered, and why.
    Failed(RecoveryFailure),
}

/// Appends `,"position":{"epoch":"…","offset":N}` to an object whose closing brace was removed.
pub(crate) fn push_position(out: &mut String, p: Position<'_>) {
    out.push_str(",\"position\":{\"epoch\":");
    super::outbound::push_json_str(out, p.epoch);
    out.push_str(",\"offset\":");
    push_u64(out, p.offset);
    out.push('}');
}

/// Appends `n` in decimal, without the formatting machinery (this runs once per published event).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Appends `"recovery":{…}` (no leading comma).
pub(crate) fn push_recovery(out: &mut String, r: Recovery) {
    match r {
        Recovery::Recovered { missed } => {
            let _ = write!(
                out,
                "\"recovery\":{{\"recovered\":true,\"missed\":{missed}}}"
            );
        }
        Recovery::Failed(reason) => {
            let _ = write!(
                out,
                "\"recovery\":{{\"recovered\":false,\"reason\":\"{}\"}}",
                reason.as_str()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::message::{ClientMessage, MemberView, ServerMessage};

    #[test]
    fn offsets_are_written_in_decimal_at_every_width() {
        for n in [0, 7, 10, 99, 100, 4_294_967_296, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn event_carries_position_beside_data() {
        let frame = ServerMessage::ChannelEvent {
            event: "e",
            channel: "c",
            data: "{}",
            user_id: Some("u\"1"),
            position: Some(Position {
                epoch: "ab12",
                offset: 42,
            }),
        }
        .encode();
        assert_eq!(
            &frame[..],
            br#"{"event":"e","channel":"c","data":"{}","user_id":"u\"1","position":{"epoch":"ab12","offset":42}}"#
        );
    }

    #[test]
    fn succeeded_carries_recovery_in_data_and_position_beside() {
        let p = Some(Position {
            epoch: "e1",
            offset: 7,
        });
        let v = parse(
            &ServerMessage::SubscriptionSucceeded {
                channel: "c",
                position: p,
                recovery: Some(Recovery::Recovered { missed: 3 }),
            }
            .encode(),
        );
        assert_eq!(v["position"], json!({"epoch":"e1","offset":7}));
        assert_eq!(v["data"], r#"{"recovery":{"recovered":true,"missed":3}}"#);
        let plain = ServerMessage::SubscriptionSucceeded {
            channel: "c",
            position: None,
            recovery: None,
        }
        .encode();
        assert_eq!(
            &plain[..],
            br#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
        );
        let members = [MemberView {
            user_id: "1",
            user_info: None,
        }];
        let v = parse(
            &ServerMessage::PresenceSubscriptionSucceeded {
                channel: "presence-c",
                members: &members,
                position: None,
                recovery: Some(Recovery::Failed(RecoveryFailure::TooOld)),
            }
            .encode(),
        );
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["count"], 1);
        assert_eq!(
            data["recovery"],
            json!({"recovered":false,"reason":"too_old"})
        );
    }

    #[test]
    fn subscribe_reads_recover_as_an_object_only() {
        let ClientMessage::Subscribe(s) = ClientMessage::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"c","recover":{"epoch":"e","offset":5}}}"#,
        )
        .unwrap() else {
            panic!("not a subscribe")
        };
        assert_eq!(
            s.recover,
            Some(Recover {
                epoch: "e".into(),
                offset: 5
            })
        );
        for bad in [
            r#"{"event":"pusher:subscribe","data":{"channel":"c","recover":["e",5]}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"c","recover":{"epoch":"e","offset":-1}}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"c","recover":{"epoch":"e"}}}"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
    }
}
