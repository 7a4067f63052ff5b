//! The rules of the sender's log and the receivers' inboxes, lane by lane.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_log_replays_what_it_keeps_and_names_what_it_let_go() {
    let t = Instant::now();
    let limits = HoldLimits {
        time: ms(1000),
        bytes: usize::MAX,
    };
    let mut log = SentLog::new(limits);
    for seq in 1..=5u64 {
        assert_eq!(log.next_seq(None), seq);
        log.record(t + ms(seq * 100), None, seq, Bytes::from(seq.to_string()));
    }
    let all = log.since(t + ms(600), None, 0);
    assert_eq!(all.missed_upto, None);
    assert_eq!(all.payloads.len(), 5);
    let tail = log.since(t + ms(600), None, 3);
    assert_eq!(tail.payloads, vec![Bytes::from("4"), Bytes::from("5")]);
    assert_eq!(
        log.since(t + ms(600), None, 5).payloads,
        Vec::<Bytes>::new()
    );
    // At 1.25 s relays 1 and 2 (sent at 0.1 and 0.2 s) are older than the bound.
    let late = log.since(t + ms(1250), None, 0);
    assert_eq!(late.missed_upto, Some(2));
    assert_eq!(late.payloads.len(), 3);
    assert_eq!(log.since(t + ms(1250), None, 2).missed_upto, None);
    // Everything gone: all of it is missed.
    let gone = log.since(t + ms(9000), None, 1);
    assert_eq!(
        gone,
        Replay {
            missed_upto: Some(5),
            payloads: vec![]
        }
    );
}

#[test]
fn the_log_keeps_within_its_bytes() {
    let t = Instant::now();
    let room = 2 * (10 + OVERHEAD);
    let mut log = SentLog::new(HoldLimits {
        time: ms(10_000),
        bytes: room,
    });
    for seq in 1..=4 {
        log.record(t, None, seq, Bytes::from(vec![0u8; 10]));
    }
    let r = log.since(t, None, 0);
    assert_eq!((r.missed_upto, r.payloads.len()), (Some(2), 2));
    // A disabled log numbers relays but keeps none.
    let mut none = SentLog::new(HoldLimits::NONE);
    none.record(t, None, 1, Bytes::from_static(b"x"));
    assert_eq!(none.since(t, None, 0).missed_upto, Some(1));
}

fn joined(now: Instant) -> Inboxes<u64> {
    let mut i = Inboxes::new(ms(1000));
    i.connected(now);
    i
}

#[test]
fn in_order_relays_pass_and_repeats_are_dropped() {
    let t = Instant::now();
    let mut i = joined(t);
    // An origin first heard while joining starts where it is heard.
    assert_eq!(i.relay(1, None, 41, 41, t).deliver, vec![41]);
    assert_eq!(i.relay(1, None, 42, 42, t).deliver, vec![42]);
    assert!(i.relay(1, None, 42, 42, t).repeat, "a repeat");
    assert!(i.relay(1, None, 7, 7, t).deliver.is_empty(), "an old one");
    assert_eq!(i.ask(1, None, t), None, "no gap");
}

#[test]
fn unnumbered_relays_from_an_older_node_pass_as_they_come() {
    let t = Instant::now();
    let mut i = joined(t);
    i.stamp(9, 0, t);
    for n in [5, 6, 6] {
        assert_eq!(i.relay(9, None, 0, n, t).deliver, vec![n]);
    }
    assert_eq!(i.ask(9, None, t), None);
}

#[test]
fn a_gap_holds_back_what_follows_until_the_resend_fills_it() {
    let t = Instant::now();
    let mut i = joined(t);
    i.relay(1, None, 1, 1, t);
    // Relays 2..=4 went by while this node reconnected; 5 arrives live.
    assert!(i.relay(1, None, 5, 5, t).deliver.is_empty());
    assert_eq!(i.ask(1, None, t), Some(1));
    assert_eq!(i.ask(1, None, t + ms(10)), None, "asked a moment ago");
    assert!(i.relay(1, None, 6, 6, t).deliver.is_empty());
    // The resend: 2, 3, 4, then 5 and 6 again (already held: dropped).
    assert_eq!(i.relay(1, None, 2, 2, t).deliver, vec![2]);
    assert_eq!(i.relay(1, None, 3, 3, t).deliver, vec![3]);
    assert_eq!(i.relay(1, None, 4, 4, t).deliver, vec![4, 5, 6]);
    assert!(i.relay(1, None, 5, 5, t).deliver.is_empty());
    assert!(i.relay(1, None, 6, 6, t).deliver.is_empty());
    assert_eq!(i.ask(1, None, t + ms(600)), None);
}

#[test]
fn a_stamp_past_the_last_relay_reveals_a_gap_at_the_tail() {
    let t = Instant::now();
    let mut i = joined(t);
    i.relay(1, None, 1, 1, t);
    i.stamp(1, 1, t);
    assert_eq!(i.ask(1, None, t), None);
    // The Sync answering this node's Hello says relay 3 was sent: 2 and 3 were missed.
    i.stamp(1, 3, t);
    assert_eq!(i.ask(1, None, t), Some(1));
    assert_eq!(i.asks_due(t + ms(100)), vec![]);
    assert_eq!(i.asks_due(t + ms(600)), vec![(1, None, 1)], "asked again");
    assert_eq!(i.relay(1, None, 2, 2, t).deliver, vec![2]);
    assert_eq!(i.relay(1, None, 3, 3, t).deliver, vec![3]);
    assert_eq!(i.asks_due(t + ms(2000)), vec![]);
}

#[test]
fn what_the_origin_no_longer_has_is_counted_and_the_rest_delivered() {
    let t = Instant::now();
    let mut i = joined(t);
    i.relay(1, None, 1, 1, t);
    i.relay(1, None, 9, 9, t);
    // The origin kept 6.. only: 2..=5 are lost (4), then 6, 7, 8 come and unblock 9.
    let o = i.missed(1, None, 5);
    assert_eq!((o.lost, o.deliver), (4, vec![]));
    assert_eq!(i.relay(1, None, 6, 6, t).deliver, vec![6]);
    i.relay(1, None, 7, 7, t);
    assert_eq!(i.relay(1, None, 8, 8, t).deliver, vec![8, 9]);
    // Missed covering held relays delivers them rather than counting them.
    i.relay(1, None, 12, 12, t);
    let o = i.missed(1, None, 12);
    assert_eq!((o.lost, o.deliver), (2, vec![12]));
}

#[test]
fn a_gap_nobody_fills_is_given_up_and_counted() {
    let t = Instant::now();
    let mut i = joined(t);
    i.relay(1, None, 1, 1, t);
    i.relay(1, None, 4, 4, t);
    i.stamp(1, 6, t);
    assert!(i.give_up(t + ms(500), ms(1000)).is_empty());
    let given = i.give_up(t + ms(1500), ms(1000));
    assert_eq!(given.len(), 1);
    let (id, o) = &given[0];
    assert_eq!((*id, o.lost, o.deliver.clone()), (1, 4, vec![4]));
    assert_eq!(i.relay(1, None, 7, 7, t).deliver, vec![7]);
}

#[test]
fn an_origin_first_heard_after_joining_owes_everything() {
    let t = Instant::now();
    let mut i = joined(t);
    let later = t + ms(5000);
    // A node this one never heard, heard long after joining with relay 3: 1 and 2 were sent
    // while this node could not hear.
    assert!(i.relay(2, None, 3, 3, later).deliver.is_empty());
    assert_eq!(i.ask(2, None, later), Some(0));
    // A node heard first by its Hello (number 0) owes nothing.
    i.stamp(3, 0, later);
    assert_eq!(i.ask(3, None, later), None);
    assert_eq!(i.relay(3, None, 1, 1, later).deliver, vec![1]);
    // Leaving forgets it.
    i.forget(3);
    assert!(i.relay(3, None, 5, 5, later).deliver.is_empty());
}

#[test]
fn too_much_held_behind_one_gap_gives_it_up_at_once() {
    let t = Instant::now();
    let mut i = joined(t);
    i.relay(1, None, 1, 1u64, t);
    let mut lost = 0;
    let mut delivered = 0;
    for seq in 3..(MAX_PENDING as u64 + 4) {
        let o = i.relay(1, None, seq, seq, t);
        lost += o.lost;
        delivered += o.deliver.len();
    }
    assert_eq!(lost, 1, "relay 2");
    assert_eq!(delivered, MAX_PENDING + 1);
}

#[test]
fn lanes_are_numbered_and_replayed_apart() {
    let t = Instant::now();
    let mut log = SentLog::new(HoldLimits {
        time: ms(1000),
        bytes: usize::MAX,
    });
    // The all-nodes lane and two shard lanes, interleaved: each counts from 1.
    for (lane, seq) in [
        (None, 1),
        (Some(4), 1),
        (Some(4), 2),
        (Some(9), 1),
        (None, 2),
    ] {
        assert_eq!(log.next_seq(lane), seq);
        log.record(t, lane, seq, Bytes::from(format!("{lane:?}/{seq}")));
    }
    let four = log.since(t, Some(4), 1);
    assert_eq!(four.payloads, vec![Bytes::from("Some(4)/2")]);
    assert_eq!(four.missed_upto, None);
    assert_eq!(log.since(t, None, 0).payloads.len(), 2);
    assert_eq!(log.recent_lanes(t), vec![(4, 2), (9, 1)]);
    assert_eq!(
        log.recent_lanes(t + ms(2000)),
        vec![],
        "quiet lanes age out"
    );
    // Lane 9's only relay expired: asking for it is a miss, lane 4 too.
    let late = log.since(t + ms(1500), Some(9), 0);
    assert_eq!((late.missed_upto, late.payloads.len()), (Some(1), 0));
}

#[test]
fn a_newly_listened_shard_is_no_gap_and_its_gaps_are_its_own() {
    let t = Instant::now();
    let later = t + ms(5000);
    let mut i = joined(t);
    i.stamp(1, 0, t);
    // Origin 1 relayed 40 times on shard 7 before this node listened: the first relay heard
    // there (41) delivers at once, and the all-nodes lane is untouched.
    i.listen(7, later);
    assert_eq!(i.relay(1, Some(7), 41, 41, later).deliver, vec![41]);
    assert_eq!(i.ask(1, Some(7), later), None);
    assert_eq!(i.ask(1, None, later), None);
    // A gap on the shard lane is asked for on that lane only.
    assert!(i.relay(1, Some(7), 44, 44, later).deliver.is_empty());
    assert_eq!(i.asks_due(later), vec![(1, Some(7), 41)]);
    assert_eq!(i.relay(1, Some(7), 42, 42, later).deliver, vec![42]);
    assert_eq!(i.relay(1, Some(7), 43, 43, later).deliver, vec![43, 44]);
    // The Sync's lane stamps reveal a tail gap on a known lane, and ignore unknown lanes.
    i.stamp_lanes(1, &[(7, 46), (8, 90)], later);
    assert_eq!(i.ask(1, Some(7), later + ms(600)), Some(44));
    assert_eq!(i.ask(1, Some(8), later), None);
    let o = i.missed(1, Some(7), 46);
    assert_eq!((o.lost, o.deliver), (2, vec![]));
    // Unlistening forgets the lane: listening again starts where the origin is then.
    i.unlisten(7);
    i.listen(7, later + ms(100));
    assert_eq!(i.relay(1, Some(7), 60, 60, later).deliver, vec![60]);
}

#[test]
fn an_origin_owed_everything_owes_its_shard_lanes_heard_since() {
    let t = Instant::now();
    let mut i = joined(t);
    i.listen(3, t);
    let later = t + ms(5000);
    // Origin 2 first heard long after joining: it started while this node could not hear.
    i.stamp(2, 0, later);
    // Its shard-3 relay 5 arrives: 1..=4 were sent while this node listened and could not hear.
    assert!(i.relay(2, Some(3), 5, 5, later).deliver.is_empty());
    assert_eq!(i.ask(2, Some(3), later), Some(0));
    // A shard listened to only after origin 2 was heard starts where it is heard.
    i.listen(4, later + ms(10));
    assert_eq!(i.relay(2, Some(4), 9, 9, later).deliver, vec![9]);
    // Leaving forgets every lane.
    i.forget(2);
    assert_eq!(i.ask(2, Some(3), later + ms(600)), None);
}
