//! [`Hearing`]: whether this node may judge the others by their silence, and since when.
//!
//! A node declares another dead when it has not heard from it for `node_timeout`. That silence
//! means something only if this node was listening the whole time: connected to the backbone, its
//! own loop running, its own messages coming back to it. A node that was stopped (SIGSTOP, a long
//! pause of the process) or cut off from the backbone heard nothing from anyone, and the fault was
//! its own: if it judged by that silence it would write off every other node and send
//! `member_removed` for members who never left. So the cluster loop measures a peer's silence from
//! no earlier than the instant since which this node has been hearing without a break, the way
//! centrifuge and sockudo only expire a node from a registry they can actually read.
//!
//! Three things end a spell of hearing: the adapter says the backbone is lost; the loop's own
//! ticks come late (the process was stopped or starved); this node's own messages stop coming back
//! (a backbone that echoes `Destination::All` to its sender, as Redis, NATS and the memory hub do,
//! proves the path both ways; one that never echoes is judged by the other two signs only). A new
//! spell starts when the backbone is back, or the loop runs again, and, once echoes were ever seen,
//! only when this node hears itself again.
//!
//! This module must never decide anything about a peer and never read the clock: the loop passes
//! the time, which keeps every rule unit-testable.

use std::time::{Duration, Instant};

use super::ClusterSettings;

/// What the loop learns from one heartbeat tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The tick came on time and the node hears itself (or cannot tell): nothing changed.
    Steady,
    /// The loop did not run for this long: the node was stopped or starved, heard nothing
    /// meanwhile, and must resync instead of judging anyone.
    Stalled(Duration),
    /// The node's own messages stopped coming back this long ago: it cannot hear the others.
    Deaf(Duration),
}

/// Since when this node has been able to hear the others without a break.
#[derive(Debug)]
pub(crate) struct Hearing {
    /// Start of the current spell of hearing; `None` while the node cannot hear.
    since: Option<Instant>,
    /// Whether the adapter says the backbone is connected.
    connected: bool,
    /// When the loop last ticked.
    last_tick: Instant,
    /// When this node last heard one of its own messages; `None` until the backbone first echoes.
    last_echo: Option<Instant>,
    /// A gap between ticks longer than this is a stall.
    stall_limit: Duration,
    /// Own messages not heard back for longer than this make the node deaf.
    echo_limit: Duration,
    /// The current spell was ended by deafness (not by a reconnection or a stall, which resync at
    /// once): the echo that ends it calls for a resync.
    deaf: bool,
}

impl Hearing {
    /// A node that has not connected yet: it hears nothing until the adapter says `Connected`.
    pub(crate) fn new(now: Instant, settings: &ClusterSettings) -> Self {
        Self {
            since: None,
            connected: false,
            last_tick: now,
            last_echo: None,
            // Two missed ticks, and never less than half the node timeout, so that scheduling
            // jitter on a busy machine is not taken for a stop.
            stall_limit: (settings.heartbeat_interval * 2).max(settings.node_timeout / 2),
            echo_limit: settings.node_timeout,
            deaf: false,
        }
    }

    /// The backbone is (again) connected. With an echoing backbone the node hears again once its
    /// own announcement comes back; otherwise from now.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.deaf = false;
        self.restart(now);
    }

    /// The backbone is lost: the node hears nothing until it is back.
    pub(crate) fn disconnected(&mut self) {
        self.connected = false;
        self.since = None;
    }

    /// One of this node's own messages came back. Returns whether that ends a spell of deafness
    /// (the node then resyncs: it may have missed anything the others said meanwhile).
    pub(crate) fn echo(&mut self, now: Instant) -> bool {
        self.last_echo = Some(now);
        if self.connected && self.since.is_none() {
            self.since = Some(now);
        }
        std::mem::take(&mut self.deaf)
    }

    /// The heartbeat tick: notices a stalled loop or a deaf node.
    pub(crate) fn tick(&mut self, now: Instant) -> Tick {
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        if gap > self.stall_limit {
            self.deaf = false;
            self.restart(now);
            return Tick::Stalled(gap);
        }
        if let (Some(echo), Some(_)) = (self.last_echo, self.since) {
            let quiet = now.saturating_duration_since(echo);
            if quiet > self.echo_limit {
                self.since = None;
                self.deaf = true;
                return Tick::Deaf(quiet);
            }
        }
        Tick::Steady
    }

    /// How long a peer last heard at `last_seen` has been silent while this node could hear it;
    /// `None` while this node cannot hear (then nobody is judged).
    pub(crate) fn silence(&self, last_seen: Instant, now: Instant) -> Option<Duration> {
        let since = self.since?;
        Some(now.saturating_duration_since(last_seen.max(since)))
    }

    /// Starts listening anew after a reconnection or a stall: from now on a backbone that never
    /// echoed, from the next echo on one that does.
    fn restart(&mut self, now: Instant) {
        self.since = match (self.connected, self.last_echo) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, Some(_)) => {
                // The echo that proves the path must come after this instant.
                self.last_echo = Some(now);
                None
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClusterSettings {
        ClusterSettings {
            heartbeat_interval: Duration::from_millis(750),
            node_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(1),
            ..ClusterSettings::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_connected_node_that_hears_itself_measures_silence_from_the_peer() {
        let t0 = Instant::now();
        let mut h = Hearing::new(t0, &settings());
        assert_eq!(
            h.silence(t0, t0),
            None,
            "nothing is judged before connecting"
        );
        h.connected(t0);
        assert!(!h.echo(t0 + ms(5)), "the first echo is no recovery");
        assert_eq!(h.tick(t0 + ms(750)), Tick::Steady);
        h.echo(t0 + ms(755));
        assert_eq!(h.tick(t0 + ms(1500)), Tick::Steady);
        h.echo(t0 + ms(1505));
        assert_eq!(h.silence(t0 + ms(10), t0 + ms(1500)), Some(ms(1490)));
    }

    #[test]
    fn a_stalled_loop_restarts_the_clock_and_waits_for_its_echo() {
        let t0 = Instant::now();
        let mut h = Hearing::new(t0, &settings());
        h.connected(t0);
        h.echo(t0);
        let back = t0 + ms(6000);
        assert_eq!(h.tick(back), Tick::Stalled(ms(6000)));
        assert_eq!(
            h.silence(t0, back),
            None,
            "deaf until its own heartbeat returns"
        );
        assert!(!h.echo(back + ms(3)), "the stall resynced already");
        assert_eq!(h.silence(t0, back + ms(503)), Some(ms(500)));
    }

    #[test]
    fn a_disconnected_node_judges_nobody_and_restarts_after_reconnecting() {
        let t0 = Instant::now();
        let mut h = Hearing::new(t0, &settings());
        h.connected(t0);
        h.echo(t0);
        h.disconnected();
        for i in 1..10 {
            assert_eq!(h.tick(t0 + ms(750 * i)), Tick::Steady);
            assert_eq!(h.silence(t0, t0 + ms(750 * i)), None);
        }
        let back = t0 + ms(7600);
        h.connected(back);
        assert_eq!(h.silence(t0, back), None);
        assert!(!h.echo(back + ms(2)), "the reconnection resynced already");
        assert_eq!(h.silence(t0, back + ms(1002)), Some(ms(1000)));
    }

    #[test]
    fn own_messages_that_stop_coming_back_make_the_node_deaf() {
        let t0 = Instant::now();
        let mut h = Hearing::new(t0, &settings());
        h.connected(t0);
        h.echo(t0);
        let mut t = t0;
        for _ in 0..4 {
            t += ms(750);
            assert_eq!(h.tick(t), Tick::Steady);
        }
        t += ms(750);
        assert_eq!(h.tick(t), Tick::Deaf(ms(3750)));
        assert_eq!(h.silence(t0, t), None);
        assert!(
            h.echo(t + ms(1)),
            "the spell of deafness ends with an echo and a resync"
        );
        assert!(!h.echo(t + ms(2)));
        assert_eq!(h.silence(t0, t + ms(101)), Some(ms(100)));
    }

    #[test]
    fn a_backbone_that_never_echoes_is_judged_by_connection_and_stalls_only() {
        let t0 = Instant::now();
        let mut h = Hearing::new(t0, &settings());
        h.connected(t0);
        let mut t = t0;
        for _ in 0..20 {
            t += ms(750);
            assert_eq!(h.tick(t), Tick::Steady);
        }
        assert_eq!(h.silence(t0, t), Some(ms(15000)));
        t += ms(5000);
        assert_eq!(h.tick(t), Tick::Stalled(ms(5000)));
        assert_eq!(h.silence(t0, t), Some(Duration::ZERO));
    }
}
