//! Fuzzes the bodies and queries of the HTTP API (`vestnik_protocol::api`).
//!
//! The whole input is a request body given to `parse_trigger`, `parse_batch` and
//! `parse_single_channel_event` under small limits (so that the limit checks are reached), and its
//! lossy UTF-8 text is an `info` value for `InfoRequest::parse`, `channel_list_info` and
//! `channel_show_info`. Whatever parses must keep the promises the broker relies on:
//!
//! - a name that is not empty and within `MAX_EVENT_NAME_LEN`;
//! - data within `max_event_bytes`;
//! - between one and `max_channels_per_trigger` channels, no repeats, every one a valid name, no
//!   encrypted channel among several, and exactly one for a batch item or a console event;
//! - a batch of at most `max_batch_events`; an error that says "too large" only for oversized data.
//!
//! Any panic, or any failed assertion below, is a bug in vestnik-protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vestnik_protocol::api::{self, ApiBodyError, TriggerEvent, TriggerLimits};
use vestnik_protocol::limits::MAX_EVENT_NAME_LEN;
use vestnik_protocol::{ChannelKind, ChannelName};

/// Small limits, so that the fuzzer crosses each of them quickly.
const LIMITS: TriggerLimits = TriggerLimits {
    max_event_bytes: 64,
    max_channels_per_trigger: 4,
    max_batch_events: 3,
};

/// The promises every parsed event keeps.
fn check_event(ev: &TriggerEvent, single_channel: bool) {
    assert!(!ev.name.is_empty(), "empty name accepted");
    assert!(ev.name.len() <= MAX_EVENT_NAME_LEN, "long name accepted");
    assert!(ev.data.len() <= LIMITS.max_event_bytes, "data over the limit accepted");
    assert!(!ev.channels.is_empty(), "no channel");
    assert!(ev.channels.len() <= LIMITS.max_channels_per_trigger, "too many channels");
    if single_channel {
        assert_eq!(ev.channels.len(), 1, "a single-channel event named several");
    }
    for (i, c) in ev.channels.iter().enumerate() {
        assert_eq!(
            ChannelName::parse(c.as_str()).as_ref(),
            Ok(c),
            "a channel that does not parse again"
        );
        assert!(!ev.channels[..i].contains(c), "repeated channel {c}");
    }
    if ev.channels.len() > 1 {
        assert!(
            ev.channels.iter().all(|c| c.kind() != ChannelKind::Encrypted),
            "an encrypted channel among several"
        );
    }
}

/// An error says "too large" only when some data was over the limit.
fn check_error(err: &ApiBodyError) {
    let text = err.to_string();
    assert!(!text.is_empty());
    match err {
        ApiBodyError::DataTooLarge { size, limit } => assert!(size > limit),
        ApiBodyError::InBatch { error, .. } => check_error(error),
        _ => assert!(!err.is_too_large()),
    }
}

fuzz_target!(|bytes: &[u8]| {
    match api::parse_trigger(bytes, &LIMITS) {
        Ok(ev) => check_event(&ev, false),
        Err(e) => check_error(&e),
    }
    match api::parse_single_channel_event(bytes, &LIMITS) {
        Ok(ev) => {
            check_event(&ev, true);
            // A single-channel event is also a valid trigger, with the same meaning.
            assert_eq!(api::parse_trigger(bytes, &LIMITS), Ok(ev));
        }
        Err(e) => check_error(&e),
    }
    match api::parse_batch(bytes, &LIMITS) {
        Ok(events) => {
            assert!(events.len() <= LIMITS.max_batch_events, "batch over the limit");
            events.iter().for_each(|ev| check_event(ev, true));
        }
        Err(e) => check_error(&e),
    }
    let text = String::from_utf8_lossy(bytes);
    let info = api::InfoRequest::parse(Some(&text));
    assert_eq!(info.any(), info.user_count || info.subscription_count);
    match api::channel_list_info(&text, Some(&text)) {
        Ok(asked) => assert_eq!(asked, info),
        Err(_) => assert!(info.user_count && !text.starts_with("presence-")),
    }
    for name in ["presence-room", "cache-news", "private-encrypted-x"] {
        let channel = ChannelName::parse(name).expect("a valid name");
        if let Ok(attrs) = api::channel_show_info(&channel, Some(&text)) {
            assert!(attrs.len() <= text.split(',').count());
        }
    }
});
