//! Unit tests of the history streams: numbering, bounds, epochs and the recovery read.

use super::*;

fn limits(size: usize, ttl_secs: u64) -> StreamLimits {
    StreamLimits {
        size,
        ttl: Duration::from_secs(ttl_secs),
    }
}

fn frame(p: Position<'_>) -> Bytes {
    Bytes::from(format!("{}:{}", p.epoch, p.offset))
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

fn recover(epoch: &str, offset: u64) -> Recover {
    Recover {
        epoch: epoch.into(),
        offset,
    }
}

#[test]
fn offsets_rise_by_one_and_frames_are_kept_in_order() {
    let h = History::default();
    let c = channel("c");
    let now = Instant::now();
    let seen: Vec<Bytes> = (0..5)
        .map(|_| h.publish(&c, limits(10, 60), now, frame, Bytes::clone))
        .collect();
    let (epoch, top) = h.position("c").unwrap();
    assert_eq!(top, 5);
    let want: Vec<Bytes> = (1..=5)
        .map(|o| Bytes::from(format!("{epoch}:{o}")))
        .collect();
    assert_eq!(seen, want);
    let missed = h.with_stream(&c, limits(10, 60), now, |s| {
        s.since(&recover(&epoch, 2), 100).unwrap()
    });
    assert_eq!(missed, want[2..]);
}

#[test]
fn size_and_time_bound_a_stream_and_recovery_says_too_old() {
    let h = History::default();
    let c = channel("c");
    let t0 = Instant::now();
    for _ in 0..5 {
        h.publish(&c, limits(3, 60), t0, frame, |_| ());
    }
    let (epoch, _) = h.position("c").unwrap();
    h.with_stream(&c, limits(3, 60), t0, |s| {
        assert_eq!(s.len(), 3);
        // Events 3, 4, 5 kept: from 2 all are there, from 1 event 2 is gone.
        assert_eq!(s.since(&recover(&epoch, 2), 100).unwrap().len(), 3);
        assert_eq!(
            s.since(&recover(&epoch, 1), 100),
            Err(RecoveryFailure::TooOld)
        );
        assert_eq!(
            s.since(&recover(&epoch, 2), 2),
            Err(RecoveryFailure::TooOld),
            "more missed than one recovery replays"
        );
        assert_eq!(s.since(&recover(&epoch, 5), 100).unwrap().len(), 0);
        assert_eq!(
            s.since(&recover(&epoch, 6), 100),
            Err(RecoveryFailure::EpochChanged)
        );
        assert_eq!(
            s.since(&recover("other", 5), 100),
            Err(RecoveryFailure::EpochChanged)
        );
    });
    assert_eq!(
        h.bytes(),
        3 * (frame(Position {
            epoch: &epoch,
            offset: 3
        })
        .len()
            + ENTRY_OVERHEAD)
    );
    // Past the ttl the events go, then the stream, and its bytes; its position stays.
    h.purge_expired(t0 + Duration::from_secs(61));
    assert_eq!(h.bytes(), 0);
    assert_eq!(h.stream_count(), 0);
    assert_eq!(h.quiet_count(), 1);
    assert_eq!(h.position("c"), Some((epoch.clone(), 5)));
    // The next event goes on in the same epoch, at offset 6.
    h.publish(
        &c,
        limits(3, 60),
        t0 + Duration::from_secs(62),
        frame,
        |_| (),
    );
    assert_eq!(h.position("c"), Some((epoch, 6)));
    assert_eq!(h.quiet_count(), 0);
}

#[test]
fn a_quiet_channel_recovers_with_nothing_missed_and_refuses_what_expired() {
    let h = History::default();
    let c = channel("quiet");
    let t0 = Instant::now();
    for _ in 0..4 {
        h.publish(&c, limits(10, 5), t0, frame, |_| ());
    }
    let (epoch, top) = h.position("quiet").unwrap();
    h.purge_expired(t0 + Duration::from_secs(5));
    assert_eq!(h.stream_count(), 0);
    // The history API knows the position and that the events are gone.
    let page = h
        .page("quiet", Some(&recover(&epoch, top)), 10, t0)
        .unwrap();
    assert_eq!((page.last_offset, page.events.len()), (top, 0));
    assert_eq!(
        h.page("quiet", Some(&recover(&epoch, top - 1)), 10, t0)
            .unwrap_err()
            .reason,
        RecoveryFailure::TooOld
    );
    assert_eq!(
        h.page("quiet", Some(&recover("other", top)), 10, t0)
            .unwrap_err()
            .reason,
        RecoveryFailure::EpochChanged
    );
    // A recovering subscribe makes the stream again: from the last position, nothing missed.
    let later = t0 + Duration::from_secs(3600);
    h.with_stream(&c, limits(10, 5), later, |s| {
        assert_eq!(s.since(&recover(&epoch, top), 100), Ok(Vec::new()));
        assert_eq!(
            s.since(&recover(&epoch, top - 1), 100),
            Err(RecoveryFailure::TooOld)
        );
    });
    // Past QUIET_KEEP the position is forgotten: the next stream starts a new epoch.
    h.purge_expired(later + Duration::from_secs(5));
    assert_eq!(h.quiet_count(), 1, "quiet again: the position stays");
    h.purge_expired(later + QUIET_KEEP + Duration::from_secs(1));
    assert_eq!(h.quiet_count(), 0);
    let much_later = later + QUIET_KEEP + Duration::from_secs(2);
    h.publish(&c, limits(10, 5), much_later, frame, |_| ());
    let (epoch2, top2) = h.position("quiet").unwrap();
    assert_ne!(epoch2, epoch);
    assert_eq!(top2, 1);
}

#[test]
fn expired_history_of_many_channels_is_freed() {
    let h = History::default();
    let t0 = Instant::now();
    for i in 0..10_000 {
        h.publish(
            &channel(&format!("c-{i}")),
            limits(10, 5),
            t0,
            frame,
            |_| (),
        );
    }
    assert_eq!(h.stream_count(), 10_000);
    assert!(h.bytes() > 10_000 * ENTRY_OVERHEAD);
    h.purge_expired(t0 + Duration::from_secs(5));
    assert_eq!(h.stream_count(), 0);
    assert_eq!(h.bytes(), 0);
    assert_eq!(h.quiet_count(), 10_000, "only their positions stay");
}

#[test]
fn over_the_byte_bound_the_oldest_streams_are_evicted() {
    let h = History::default();
    let t0 = Instant::now();
    for i in 0..100u64 {
        let at = t0 + Duration::from_millis(i);
        h.publish(
            &channel(&format!("c-{i}")),
            limits(10, 60),
            at,
            frame,
            |_| (),
        );
    }
    let per = h.bytes() / 100;
    let old_epoch = h.position("c-0").unwrap().0;
    h.evict_over(per * 50);
    assert!(
        h.bytes() <= per * 50 / 100 * EVICT_TO_PERCENT,
        "{}",
        h.bytes()
    );
    assert!(h.position("c-0").is_none(), "the oldest went first");
    assert!(h.position("c-99").is_some(), "the newest stayed");
    // The evicted channel starts a new epoch: an old position no longer recovers.
    let c0 = channel("c-0");
    h.publish(&c0, limits(10, 60), t0, frame, |_| ());
    h.with_stream(&c0, limits(10, 60), t0, |s| {
        assert_eq!(
            s.since(&recover(&old_epoch, 1), 100),
            Err(RecoveryFailure::EpochChanged)
        );
    });
}

#[test]
fn pages_read_oldest_first_after_a_position_and_refuse_lost_ones() {
    let h = History::default();
    let c = channel("c");
    let t0 = Instant::now();
    for _ in 0..5 {
        h.publish(&c, limits(3, 60), t0, frame, |_| ());
    }
    let (epoch, _) = h.position("c").unwrap();
    let offsets = |p: &HistoryPage| p.events.iter().map(|e| e.offset).collect::<Vec<_>>();
    let all = h.page("c", None, 10, t0).unwrap();
    assert_eq!(all.epoch.as_deref(), Some(epoch.as_str()));
    assert_eq!((all.first_offset, all.last_offset), (3, 5));
    assert_eq!(offsets(&all), [3, 4, 5]);
    assert_eq!(
        all.events[0].frame,
        frame(Position {
            epoch: &epoch,
            offset: 3
        })
    );
    let now_ms = WallClock::default().unix_ms;
    assert!(all.events[0].published_at_ms.abs_diff(now_ms) < 60_000);
    assert_eq!(
        offsets(&h.page("c", Some(&recover(&epoch, 3)), 1, t0).unwrap()),
        [4]
    );
    assert_eq!(
        offsets(&h.page("c", Some(&recover(&epoch, 5)), 10, t0).unwrap()),
        [0u64; 0]
    );
    let too_old = h.page("c", Some(&recover(&epoch, 1)), 10, t0).unwrap_err();
    assert_eq!(too_old.reason, RecoveryFailure::TooOld);
    assert_eq!(too_old.current.first_offset, 3);
    for wrong in [recover("other", 4), recover(&epoch, 6)] {
        let r = h.page("c", Some(&wrong), 10, t0).unwrap_err();
        assert_eq!(r.reason, RecoveryFailure::EpochChanged);
        assert_eq!(r.current.epoch.as_deref(), Some(epoch.as_str()));
    }
    // Events past their time are not read, even before a publish trims them.
    let later = h.page("c", None, 10, t0 + Duration::from_secs(61)).unwrap();
    assert_eq!((later.first_offset, later.events.len()), (6, 0));
    // A channel without history: an empty page without epoch, and any position is refused.
    let none = h.page("d", None, 10, t0).unwrap();
    assert_eq!((none.epoch, none.last_offset), (None, 0));
    let r = h.page("d", Some(&recover(&epoch, 0)), 10, t0).unwrap_err();
    assert_eq!(r.reason, RecoveryFailure::EpochChanged);
}

#[test]
fn settings_per_prefix_longest_wins() {
    let cfg = HistoryConfig {
        channels: vec![
            HistoryRule {
                prefix: "private-".into(),
                enabled: None,
                size: Some(500),
                ttl: None,
            },
            HistoryRule {
                prefix: "private-noisy-".into(),
                enabled: Some(false),
                size: None,
                ttl: None,
            },
        ],
        ..HistoryConfig::default()
    };
    assert_eq!(
        cfg.for_channel("public"),
        Some(limits(HISTORY_SIZE, HISTORY_TTL_SECS))
    );
    assert_eq!(
        cfg.for_channel("private-a"),
        Some(limits(500, HISTORY_TTL_SECS))
    );
    assert_eq!(cfg.for_channel("private-noisy-a"), None);
    let off = HistoryConfig {
        enabled: false,
        channels: vec![HistoryRule {
            prefix: "orders-".into(),
            enabled: Some(true),
            size: None,
            ttl: Some(10),
        }],
        ..HistoryConfig::default()
    };
    assert_eq!(off.for_channel("chat"), None);
    assert_eq!(off.for_channel("orders-1"), Some(limits(HISTORY_SIZE, 10)));
}

mod mirror {
    //! The cluster mirror: events numbered by the store, taken in offset order.
    use super::*;
    use crate::history::Held;

    fn held(offset: u64) -> Held {
        Held {
            frame: Bytes::from(format!("f{offset}")),
            except: None,
            cache_data: None,
        }
    }

    fn accept(h: &History, c: &ChannelName, epoch: &Arc<str>, offset: u64) -> (Vec<Bytes>, bool) {
        let mut got = Vec::new();
        let at = crate::adapter::Appended {
            epoch: Arc::clone(epoch),
            offset,
        };
        let a = h.accept(c, limits(100, 60), Instant::now(), &at, held(offset), |e| {
            got.push(e.frame.clone());
            1
        });
        assert_eq!(a.delivered, got.len());
        (got, a.gap_opened)
    }

    #[test]
    fn events_that_arrive_early_wait_for_the_ones_before_them() {
        let h = History::default();
        let c = channel("c");
        let e: Arc<str> = Arc::from("ep");
        assert_eq!(accept(&h, &c, &e, 5), (vec![Bytes::from("f5")], false));
        // 7 and 8 before 6: held, and only the first opens the gap.
        assert_eq!(accept(&h, &c, &e, 7), (vec![], true));
        assert_eq!(accept(&h, &c, &e, 8), (vec![], false));
        assert_eq!(h.gap("c").map(|g| (g.1, g.2)), Some((5, 7)));
        let (got, _) = accept(&h, &c, &e, 6);
        assert_eq!(got, ["f6", "f7", "f8"].map(Bytes::from));
        assert!(h.gap("c").is_none());
        // The scheduled fill ends; the next gap schedules a new one.
        assert!(!h.gap_fill_goes_on("c"));
        assert_eq!(accept(&h, &c, &e, 10), (vec![], true));
        // A repeat is dropped.
        assert_eq!(accept(&h, &c, &e, 7), (vec![], false));
        assert_eq!(h.position("c"), Some(("ep".into(), 8)));
        assert!(h.gap_fill_goes_on("c"), "10 is still held");
        // Recovery reads the kept ones.
        let s = h.streams.get("c").unwrap().clone();
        let frames = s.lock().since(&recover("ep", 6), 100).unwrap();
        assert_eq!(frames, ["f7", "f8"].map(Bytes::from));
    }

    #[test]
    fn a_gap_is_filled_from_the_store_or_given_up() {
        let h = History::default();
        let c = channel("c");
        let e: Arc<str> = Arc::from("ep");
        accept(&h, &c, &e, 1);
        accept(&h, &c, &e, 4);
        let mut got = Vec::new();
        let now = Instant::now();
        let read = vec![(2, held(2), now), (3, held(3), now)];
        h.fill(&c, limits(100, 60), now, &e, 1, 4, read, |x| {
            got.push(x.frame.clone());
            1
        });
        assert_eq!(got, ["f2", "f3", "f4"].map(Bytes::from));
        // A gap the store cannot fill is given up: the held event goes out, and a recovery
        // from before the gap is refused as too old rather than answered wrongly.
        accept(&h, &c, &e, 7);
        let mut skipped = Vec::new();
        // Not a gap before 5 any more: nothing is skipped.
        assert_eq!(h.skip_gap(&c, limits(100, 60), now, 5, |_| 1), 0);
        h.skip_gap(&c, limits(100, 60), now, 7, |x| {
            skipped.push(x.frame.clone());
            1
        });
        assert_eq!(skipped, [Bytes::from("f7")]);
        assert!(!h.covers("c", &recover("ep", 4)));
        let s = h.streams.get("c").unwrap().clone();
        assert_eq!(
            s.lock().since(&recover("ep", 4), 100),
            Err(RecoveryFailure::TooOld)
        );
    }

    #[test]
    fn older_events_read_for_a_recovery_are_kept_without_delivery() {
        let h = History::default();
        let c = channel("c");
        let e: Arc<str> = Arc::from("ep");
        accept(&h, &c, &e, 10);
        assert!(!h.covers("c", &recover("ep", 7)));
        let now = Instant::now();
        let read = (8..=10).map(|o| (o, held(o), now)).collect();
        let mut delivered = 0;
        h.fill(&c, limits(100, 60), now, &e, 7, 10, read, |_| {
            delivered += 1;
            1
        });
        assert_eq!(
            delivered, 0,
            "subscribers had 10 already; 8 and 9 are only kept"
        );
        assert!(h.covers("c", &recover("ep", 7)));
        let s = h.streams.get("c").unwrap().clone();
        assert_eq!(
            s.lock().since(&recover("ep", 7), 100).unwrap(),
            ["f8", "f9", "f10"].map(Bytes::from)
        );
    }

    #[test]
    fn a_new_epoch_starts_over_at_one_and_late_events_of_the_old_one_still_go_out() {
        let h = History::default();
        let c = channel("c");
        accept(&h, &c, &Arc::from("one"), 3);
        accept(&h, &c, &Arc::from("one"), 5);
        h.mark_unnumbered(&c, Instant::now());
        assert!(h.is_unnumbered("c"));
        // The new epoch starts at 1: its second event waits for its first, and what the old
        // epoch still held (5) goes out before anything of the new one.
        let (got, gap) = accept(&h, &c, &Arc::from("two"), 2);
        assert_eq!((got, gap), (vec![Bytes::from("f5")], true));
        assert!(!h.is_unnumbered("c"));
        let (got, _) = accept(&h, &c, &Arc::from("two"), 1);
        assert_eq!(got, ["f1", "f2"].map(Bytes::from));
        assert_eq!(h.position("c"), Some(("two".into(), 2)));
        // A late event of the old epoch goes out as it is, and changes nothing.
        let (got, _) = accept(&h, &c, &Arc::from("one"), 4);
        assert_eq!(got, [Bytes::from("f4")]);
        assert_eq!(h.position("c"), Some(("two".into(), 2)));
    }
}
