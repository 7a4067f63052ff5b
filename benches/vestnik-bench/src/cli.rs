//! The command line: global options, one subcommand per scenario, and the sizes each scenario uses
//! by default and under `--smoke` (tiny, for CI: a few seconds per scenario).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for any Pusher Channels protocol v7 broker (WebSocket + signed HTTP API).
///
/// Every run is bounded in sockets, events and time, and ends by itself. Targets must be loopback
/// addresses unless --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "vestnik-bench", version)]
pub struct Cli {
    /// Options shared by every scenario.
    #[command(flatten)]
    pub global: Global,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options shared by every scenario.
#[derive(Debug, Args)]
pub struct Global {
    /// Tokio worker threads; 1 lets `taskset -c N` pin the generator to one core.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The broker's process id: report its CPU time and RSS from /proc.
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Spread sockets over this many loopback source addresses, 127.0.0.1 to 127.0.0.N, so
    /// ephemeral ports do not run out.
    #[arg(long, global = true, default_value_t = 8,
          value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
    /// Sockets being opened at once while ramping up.
    #[arg(long, global = true, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// App id (API paths).
    #[arg(
        long,
        global = true,
        default_value = "app-id",
        env = "VESTNIK_BENCH_APP_ID"
    )]
    pub app_id: String,
    /// App key (socket URLs, API signatures).
    #[arg(
        long,
        global = true,
        default_value = "app-key",
        env = "VESTNIK_BENCH_APP_KEY"
    )]
    pub app_key: String,
    /// App secret (API signatures, private channels).
    #[arg(
        long,
        global = true,
        default_value = "app-secret",
        env = "VESTNIK_BENCH_APP_SECRET"
    )]
    pub app_secret: String,
    /// Subscribe to private channels (private-bench-N), each subscription signed.
    #[arg(long, global = true)]
    pub private: bool,
    /// WebSocket read buffer per socket, bytes.
    #[arg(long, global = true, default_value_t = 8192)]
    pub read_buffer: usize,
    /// Tiny sizes for CI (50 sockets, 2 s); explicit options still win.
    #[arg(long, global = true)]
    pub smoke: bool,
    /// Allow targets that are not loopback addresses (only hosts you own).
    #[arg(long, global = true)]
    pub allow_remote: bool,
    /// No progress bar.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N sockets on C channels (socket i on channel i % C); trigger at R events/s over the HTTP API
    /// for a duration after a warm-up; report deliveries and latency.
    Fanout(FanoutArgs),
    /// Fan-out at several offered rates on the same sockets; report latency against load and draw
    /// it with --plot.
    Sweep(SweepArgs),
    /// N sockets connect, subscribe and hold; report broker RSS per socket, then check every socket
    /// still receives.
    Idle(IdleArgs),
    /// Connect and subscribe N sockets with a concurrency limit; report sockets per second.
    Connect(ConnectArgs),
    /// HTTP API throughput with one subscriber: triggers per second and call latency.
    Triggers(TriggersArgs),
    /// Trigger on node A, receive on node B: trigger-to-delivery latency across the cluster.
    CrossNode(CrossNodeArgs),
    /// No broker: one thread writes a pre-encoded WebSocket frame to loopback sockets at the
    /// fan-out's sizes and rate and reports its CPU per write, the floor a broker's CPU per delivery
    /// is compared with.
    Floor(FloorArgs),
    /// Draw latency against offered load (SVG) from JSON reports of fanout or sweep runs.
    Plot(PlotArgs),
    /// Start a cluster of broker nodes on their own backbone, publish numbered events, inject
    /// faults at seeded random moments and report losses, duplicates, ghosts, webhooks and leaks;
    /// exits non-zero when a guaranteed figure is violated (docs/reliability.md).
    Chaos(ChaosArgs),
    /// Start one node, or a cluster on its own backbone, and churn against it for a long time:
    /// sockets connecting and leaving, subscriptions, presence, sign-ins, client events, triggers.
    /// Samples RSS, descriptors, tasks and queue depths to a CSV and an SVG; exits non-zero when
    /// memory or descriptors do not end flat or a node does not return to idle (docs/reliability.md).
    Soak(SoakArgs),
    /// Sockets cut and reconnected in a loop while numbered events flow, each coming back with
    /// `recover` (channel history); reports events lost and repeated (both must be 0), how
    /// recoveries ended and how long they took; exits non-zero on any loss (docs/recovery.md).
    Recovery(RecoveryArgs),
    /// Start N nodes on their own backbone, each channel served by one node, trigger through
    /// every node's API as fast as it goes: per node relays received (and for channels it does
    /// not serve), backbone messages per publish, publish capacity (docs/scaling.md).
    ScaleOut(ScaleOutArgs),
}

/// The recovery run's settings.
#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// Sockets [default: 200; smoke 20].
    #[arg(long)]
    pub sockets: Option<usize>,
    /// Public channels, socket i on channel i % C [default: 10; smoke 2].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Events per second over all channels [default: 200; smoke 50].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds events flow and sockets are cut [default: 20; smoke 3].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Mean seconds between two cuts of one socket (uniform from 0 to twice this)
    /// [default: 2; smoke 0.5].
    #[arg(long)]
    pub cut_every: Option<f64>,
    /// Mean seconds a cut socket stays away before it reconnects [default: 0.3; smoke 0.1].
    #[arg(long)]
    pub away: Option<f64>,
    /// Longest wait, in seconds, for every socket to be back with every event.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Seed of the cuts (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `scale-out`.
#[derive(Debug, Args)]
pub struct ScaleOutArgs {
    /// Broker nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub nodes: u16,
    /// The backbone (its own server on a free port, never the shared one).
    #[arg(long, value_enum, default_value = "redis")]
    pub adapter: crate::chaos::procs::Backbone,
    /// Channels each node serves (one socket there subscribed to all of them).
    #[arg(long, default_value_t = 16)]
    pub channels: usize,
    /// Route shards (`cluster.route_shards`); 0 relays every event to every node.
    #[arg(long, default_value_t = 4096)]
    pub route_shards: u32,
    /// Concurrent API callers.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds of triggering.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The broker binary.
    #[arg(long, env = "VESTNIK_BIN", default_value = "target/release/vestnik")]
    pub vestnik_bin: PathBuf,
}

/// The soak run's settings.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Seconds of churn [default: 3600; smoke 30].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds at the start that are not judged [default: a tenth of the duration; smoke 8].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Broker nodes; above 1 they are joined by their own backbone (--adapter).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub cluster: u16,
    /// The backbone of a cluster (its own server on a free port, never the shared one).
    #[arg(long, value_enum, default_value = "redis")]
    pub adapter: crate::chaos::procs::Backbone,
    /// New sockets per second, spread over the nodes [default: 20; smoke 10].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Mean seconds a socket stays (uniform from 0 to twice this) [default: 5; smoke 2].
    #[arg(long)]
    pub hold: Option<f64>,
    /// Events triggered per second over the API, a quarter of the calls as batches
    /// [default: 20; smoke 10].
    #[arg(long)]
    pub trigger_rate: Option<f64>,
    /// Channels in each pool (public, private, presence).
    #[arg(long, default_value_t = 20)]
    pub channels: u64,
    /// Seconds between two readings of every node [default: 5; smoke 1].
    #[arg(long)]
    pub sample_every: Option<f64>,
    /// Longest wait, in seconds, for the nodes to return to idle after the clients leave.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Seed of the churn (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where soak.csv, soak.svg and soak.json are written.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    /// The broker binary.
    #[arg(long, env = "VESTNIK_BIN", default_value = "target/release/vestnik")]
    pub vestnik_bin: PathBuf,
    /// Keep the work directory (config, node logs) even when the run passes.
    #[arg(long)]
    pub keep: bool,
    /// Run nothing: draw --out/soak.svg again from this soak.csv of an earlier run.
    #[arg(long, value_name = "CSV")]
    pub replot: Option<PathBuf>,
}

/// The chaos run's settings.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The backbone joining the nodes (its own server on a free port, never the shared one).
    #[arg(long, value_enum, default_value = "redis")]
    pub adapter: crate::chaos::procs::Backbone,
    /// Publishing time, seconds; every fault starts and ends within it.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seed of the fault schedule (printed; default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Broker nodes (node 0 is never a fault's victim: its sockets are the control group).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub nodes: u16,
    /// Events per second over all publishers (one publisher per channel per node).
    #[arg(long, default_value_t = 60.0)]
    pub rate: f64,
    /// Event channels; every socket subscribes to all of them.
    #[arg(long, default_value_t = 2)]
    pub channels: usize,
    /// Sockets per node (roles in turn: plain, signed in, presence member, churn member).
    #[arg(long, default_value_t = 8)]
    pub sockets_per_node: usize,
    /// The nodes' `node_timeout_ms`; a stopped node stays stopped longer than this.
    #[arg(long, default_value_t = 3000)]
    pub node_timeout_ms: u64,
    /// The relay hold the broker promises, ms: a backbone outage shorter than this must lose
    /// nothing. 0 (today's broker holds nothing) reports such losses without failing on them.
    #[arg(long, default_value_t = 0)]
    pub relay_hold_ms: u64,
    /// Fault classes to inject, comma-separated (default: all).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,stop,backbone,cut,client-cut,slow-reader"
    )]
    pub faults: Vec<crate::chaos::schedule::FaultClass>,
    /// The broker binary.
    #[arg(long, env = "VESTNIK_BIN", default_value = "target/release/vestnik")]
    pub vestnik_bin: PathBuf,
    /// Keep the work directory (config, logs, spools) even when the run passes.
    #[arg(long)]
    pub keep: bool,
}

/// The broker to load.
#[derive(Debug, Args)]
pub struct Targets {
    /// WebSocket address of the broker.
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    pub ws: String,
    /// HTTP API address of the broker.
    #[arg(long, default_value = "http://127.0.0.1:6001")]
    pub http: String,
}

/// The size and pace of a fan-out.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Sockets [default: 1000; smoke 50].
    #[arg(long, short = 'n')]
    pub sockets: Option<usize>,
    /// Channels; socket i subscribes channel i % C [default: 10; smoke 5].
    #[arg(long, short = 'c')]
    pub channels: Option<usize>,
    /// Events triggered per second, in total over all channels [default: 200; smoke 50].
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Events per HTTP call; above 1, calls go to /batch_events (the broker's max_batch_events
    /// applies, 10 by default).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds of measured triggering [default: 10; smoke 2].
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Seconds of unmeasured triggering before [default: 2; smoke 0.5].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Longest wait, in seconds, for deliveries still in flight after the last trigger.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Bytes of padding added to each event's data.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Concurrent HTTP connections for triggering; enough that a slow API answer delays no send
    /// (the load stays open-loop).
    #[arg(long, default_value_t = 32)]
    pub http_conns: usize,
}

/// `fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// Size and pace.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `cross-node`.
#[derive(Debug, Args)]
pub struct CrossNodeArgs {
    /// HTTP API of node A, where events are triggered.
    #[arg(long, default_value = "http://127.0.0.1:6001")]
    pub http_a: String,
    /// WebSocket address of node B, where sockets subscribe.
    #[arg(long, default_value = "ws://127.0.0.1:6002")]
    pub ws_b: String,
    /// Size and pace.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// Size and pace; --rate is replaced by each of --rates.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Event rates to offer, comma-separated [default: 100,200,500,1000,2000; smoke 20,50].
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Write an SVG of p50/p99 latency against offered deliveries per second.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// Sockets [default: 10000; smoke 50].
    #[arg(long, short = 'n')]
    pub sockets: Option<usize>,
    /// Channels [default: 10; smoke 5].
    #[arg(long, short = 'c')]
    pub channels: Option<usize>,
    /// Seconds to hold the sockets open [default: 5; smoke 1].
    #[arg(long)]
    pub hold: Option<f64>,
}

/// `floor`.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Sockets written to [default: 1000; smoke 50].
    #[arg(long, short = 'n')]
    pub sockets: Option<usize>,
    /// Channels; socket i is on channel i % C [default: 10; smoke 5].
    #[arg(long, short = 'c')]
    pub channels: Option<usize>,
    /// Triggers per second over all channels [default: 200; smoke 50].
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Seconds of measured writing [default: 10; smoke 2].
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Seconds of unmeasured writing before [default: 2; smoke 0.5].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Bytes of padding in each event's data, as `fanout --payload`.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Pin the writer thread to this CPU (where the broker runs in a pinned A/B).
    #[arg(long)]
    pub writer_cpu: Option<usize>,
}

/// `connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// Sockets [default: 5000; smoke 50].
    #[arg(long, short = 'n')]
    pub sockets: Option<usize>,
    /// Channels [default: 10; smoke 5].
    #[arg(long, short = 'c')]
    pub channels: Option<usize>,
    /// Sockets being opened at once [default: --connect-concurrency].
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// `triggers`.
#[derive(Debug, Args)]
pub struct TriggersArgs {
    /// The broker.
    #[command(flatten)]
    pub targets: Targets,
    /// HTTP calls in flight (one connection each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Events per call; above 1, calls go to /batch_events.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds of measured triggering [default: 10; smoke 2].
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Seconds of unmeasured triggering before [default: 1; smoke 0.5].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Longest wait, in seconds, for deliveries still in flight.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Bytes of padding added to each event's data.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
}

/// `plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// JSON reports of fanout, cross-node or sweep runs.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long, short, default_value = "latency.svg")]
    pub output: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Delivery latency against offered load")]
    pub title: String,
}

/// `full` unless `--smoke`, then `smoke`; an explicit value wins over both.
pub fn pick<T>(given: Option<T>, smoke: bool, full: T, small: T) -> T {
    given.unwrap_or(if smoke { small } else { full })
}

/// Seconds as a duration, refusing negative or non-finite values.
pub fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// A fan-out's settings after defaults.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Sockets.
    pub sockets: usize,
    /// Channels.
    pub channels: usize,
    /// Events per second.
    pub rate: f64,
    /// Events per call.
    pub batch: usize,
    /// Measured time.
    pub duration: Duration,
    /// Warm-up time.
    pub warmup: Duration,
    /// Longest drain.
    pub drain: Duration,
    /// Padding bytes.
    pub payload: usize,
    /// HTTP connections.
    pub http_conns: usize,
}

impl LoadArgs {
    /// Applies the defaults (full or smoke).
    pub fn resolve(&self, smoke: bool) -> Load {
        Load {
            sockets: pick(self.sockets, smoke, 1000, 50),
            channels: pick(self.channels, smoke, 10, 5).max(1),
            rate: pick(self.rate, smoke, 200.0, 50.0),
            batch: self.batch.max(1),
            duration: secs(pick(self.duration, smoke, 10.0, 2.0)),
            warmup: secs(pick(self.warmup, smoke, 2.0, 0.5)),
            drain: secs(self.drain),
            payload: self.payload,
            http_conns: self.http_conns.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn smoke_shrinks_only_what_is_not_given() {
        let cli = Cli::parse_from(["vestnik-bench", "fanout", "--smoke", "--rate", "70"]);
        let Scenario::Fanout(f) = cli.scenario else {
            panic!("fanout expected")
        };
        let load = f.load.resolve(cli.global.smoke);
        assert_eq!((load.sockets, load.rate), (50, 70.0));
        assert_eq!(load.duration, Duration::from_secs(2));
    }
}
