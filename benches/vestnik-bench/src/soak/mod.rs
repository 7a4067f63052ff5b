//! `vestnik-bench soak`: a long run of churn against one node, or against a cluster on the run's
//! own backbone, sampling each node's memory, descriptors, tasks and queue depths over time, and a
//! verdict: memory and descriptors must end flat, and every node must return to its idle counts
//! once the clients have left.
//!
//! The run starts every process it measures (so it knows their pids and owns their ports), writes
//! only under its output directory and a temporary work directory, and stops only what it started.
//!
//! # Layout
//! - [`churn`]: the short-lived sessions and the trigger loop.
//! - [`nodes`]: the broker nodes as processes, and their config.
//! - [`sample`]: one reading of one node (`/proc` and `/metrics`), and the CSV row.
//! - [`verdict`]: flatness and idle checks (pure).
//! - [`chart`]: the SVG of the readings.
//! - [`report`]: the figures, the table and the JSON.

mod chart;
mod churn;
pub(crate) mod nodes;
mod report;
mod sample;
mod verdict;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiTarget;
use crate::chaos::procs::BackboneProc;
use crate::cli::{pick, secs, SoakArgs};
use crate::clock;
use crate::target::{App, Channels, Endpoint};
use churn::{ChurnCounts, ChurnPlan};
use nodes::SoakNode;
pub use report::SoakReport;
use sample::{Phase, Sample, CSV_HEADER};
use verdict::IdleCheck;

/// Longest wait for the sessions to leave once the churn stops.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);
/// A session count over this many times the expected live count means the broker stopped
/// answering: the spawner pauses rather than pile up sockets.
const LIVE_CAP_FACTOR: f64 = 10.0;

/// What a `soak` invocation did.
#[derive(Debug)]
pub enum Outcome {
    /// A run, with its judged report.
    Run(Box<SoakReport>),
    /// `--replot`: the plot drawn again and the verdict printed; whether it passed.
    Replot {
        /// The readings passed this build's verdict.
        passed: bool,
    },
}

/// Runs the soak: the report, already judged. Writes `soak.csv`, `soak.svg` and `soak.json`
/// under `args.out`. With `--replot` it only draws `soak.svg` again from a CSV and judges its
/// readings again.
pub async fn soak(args: &SoakArgs, smoke: bool, quiet: bool) -> Result<Outcome> {
    let say = |m: String| {
        if !quiet {
            eprintln!("soak: {m}");
        }
    };
    let duration = secs(pick(args.duration, smoke, 3600.0, 30.0));
    let warmup = secs(pick(args.warmup, smoke, duration.as_secs_f64() * 0.1, 8.0));
    let every = secs(pick(args.sample_every, smoke, 5.0, 1.0)).max(Duration::from_millis(200));
    let rate = pick(args.rate, smoke, 20.0, 10.0);
    let hold = secs(pick(args.hold, smoke, 5.0, 2.0));
    let trigger_rate = pick(args.trigger_rate, smoke, 20.0, 10.0);
    if let Some(csv) = &args.replot {
        return replot(csv, &args.out).map(|passed| Outcome::Replot { passed });
    }
    let seed = args
        .seed
        .unwrap_or_else(|| clock::unix_secs() ^ u64::from(std::process::id()));
    let n_nodes = usize::from(args.cluster.max(1));

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let work = std::env::temp_dir().join(format!("vestnik-soak-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let bin = std::fs::canonicalize(&args.vestnik_bin).with_context(|| {
        format!(
            "broker binary {} (build it, or pass --vestnik-bin / VESTNIK_BIN)",
            args.vestnik_bin.display()
        )
    })?;
    let app = App {
        id: "soak-app".into(),
        key: "soak-key".into(),
        secret: format!("soak-secret-{seed:016x}"),
    };
    let config = nodes::write_config(&work, &app)?;
    let backbone = if n_nodes > 1 {
        let b = BackboneProc::start(args.adapter, &work).await?;
        say(format!("{:?} on {}", args.adapter, b.addr));
        Some(b)
    } else {
        None
    };
    let mut procs = Vec::new();
    for i in 0..n_nodes {
        let on = backbone.as_ref().map(|b| (args.adapter, b.addr));
        let n = SoakNode::start(i, &bin, &config, on, &work).await?;
        say(format!("node {i} on {} (pid {})", n.addr, n.pid));
        procs.push(n);
    }
    let result = run(
        args,
        &procs,
        &app,
        seed,
        duration,
        warmup,
        every,
        rate,
        hold,
        trigger_rate,
        &say,
    )
    .await;
    for n in &mut procs {
        n.stop();
    }
    drop(backbone);
    match result {
        Ok(report) => {
            if report.passed() && !args.keep {
                let _ = std::fs::remove_dir_all(&work);
            } else {
                eprintln!("soak: node logs and config kept in {}", work.display());
            }
            Ok(Outcome::Run(Box::new(report)))
        }
        Err(e) => {
            eprintln!("soak: node logs and config kept in {}", work.display());
            Err(e)
        }
    }
}

/// The run proper, on nodes already started.
#[allow(clippy::too_many_arguments)]
async fn run(
    args: &SoakArgs,
    procs: &[SoakNode],
    app: &App,
    seed: u64,
    duration: Duration,
    warmup: Duration,
    every: Duration,
    rate: f64,
    hold: Duration,
    trigger_rate: f64,
    say: &dyn Fn(String),
) -> Result<SoakReport> {
    let n_nodes = procs.len();
    let csv_path = args.out.join("soak.csv");
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&csv_path)
            .with_context(|| format!("creating {}", csv_path.display()))?,
    );
    writeln!(csv, "{CSV_HEADER}")?;
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut sampler = Sampler {
        procs,
        start,
        samples: &mut samples,
        csv: &mut csv,
    };
    // Baseline: the nodes up (and joined), no client yet.
    let baseline = sampler.take(Phase::Baseline).await?;
    say(format!(
        "baseline: {}",
        baseline
            .iter()
            .map(|s| format!("node {} {} fds, {} tasks", s.node, s.fds, s.alive_tasks))
            .collect::<Vec<_>>()
            .join("; ")
    ));

    let plan = Arc::new(ChurnPlan {
        nodes: procs.iter().map(|n| format!("ws://{}", n.addr)).collect(),
        app: app.clone(),
        rate,
        hold,
        channels: args.channels.max(1),
        trigger_rate,
    });
    let targets: Vec<Arc<ApiTarget>> = procs
        .iter()
        .map(|n| {
            Ok(Arc::new(ApiTarget {
                endpoint: Endpoint::parse(&format!("http://{}", n.addr), &["http"], false)?,
                app: app.clone(),
                channels: Channels::new(1, false),
                pad: String::new(),
            }))
        })
        .collect::<Result<_>>()?;
    let counts = Arc::new(ChurnCounts::default());
    let sessions = TaskTracker::new();
    let stop = CancellationToken::new();
    let live_cap = (rate * hold.as_secs_f64() * LIVE_CAP_FACTOR).max(100.0) as usize;
    let spawner = tokio::spawn(churn::spawn_sessions(
        Arc::clone(&plan),
        Arc::clone(&counts),
        sessions.clone(),
        stop.clone(),
        seed,
        live_cap,
    ));
    let triggers = tokio::spawn(churn::trigger(
        Arc::clone(&plan),
        targets,
        Arc::clone(&counts),
        stop.clone(),
        seed.rotate_left(17),
    ));
    say(format!(
        "churn for {duration:?} (warm-up {warmup:?}): {rate} sessions/s held {hold:?} on average, \
         {trigger_rate} events/s, samples every {every:?} in {}",
        csv_path.display()
    ));

    // Churn, sampling on a fixed beat.
    let churn_start = Instant::now();
    let mut next = churn_start + every;
    let mut last_note = churn_start;
    while churn_start.elapsed() < duration {
        tokio::time::sleep_until(next.min(churn_start + duration)).await;
        next += every;
        let phase = if churn_start.elapsed() < warmup {
            Phase::Warmup
        } else {
            Phase::Churn
        };
        if churn_start.elapsed() >= duration {
            break;
        }
        match sampler.take(phase).await {
            Ok(row) => {
                if last_note.elapsed() >= Duration::from_secs(60) {
                    last_note = Instant::now();
                    let c = counts.figures();
                    say(format!(
                        "{:.0} s: {} sessions ({} failed), {} triggers; {}",
                        churn_start.elapsed().as_secs_f64(),
                        c.sessions,
                        c.failed,
                        c.triggers_ok,
                        row.iter()
                            .map(|s| format!(
                                "node {} {:.1} MiB {} fds {} sockets {} tasks",
                                s.node,
                                s.rss_bytes as f64 / 1048576.0,
                                s.fds,
                                s.sockets,
                                s.alive_tasks
                            ))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
            }
            Err(e) => {
                stop.cancel();
                return Err(e.context("a node stopped answering during the churn"));
            }
        }
    }

    // Stop: every session leaves, the API connections close.
    stop.cancel();
    let _ = spawner.await;
    let _ = triggers.await;
    sessions.close();
    if tokio::time::timeout(LEAVE_TIMEOUT, sessions.wait())
        .await
        .is_err()
    {
        say(format!(
            "{} sessions still running {LEAVE_TIMEOUT:?} after the stop",
            sessions.len()
        ));
    }
    let figures = counts.figures();
    say(format!(
        "churn over: {} sessions, {} opened, {} failed; waiting for idle",
        figures.sessions, figures.opened, figures.failed
    ));

    // Idle: sample until every node is back to its idle counts, or the timeout.
    let idle_timeout = secs(args.idle_timeout);
    let idle_start = Instant::now();
    let mut idle: Vec<IdleCheck>;
    loop {
        tokio::time::sleep(every).await;
        let row = sampler.take(Phase::Idle).await?;
        idle = baseline
            .iter()
            .zip(&row)
            .map(|(b, l)| IdleCheck::new(b, l))
            .collect();
        if idle.iter().all(|c| c.problem().is_none()) || idle_start.elapsed() > idle_timeout {
            break;
        }
    }
    csv.flush()?;
    drop(csv);
    let idle_after_s = idle_start.elapsed().as_secs_f64();

    let svg = args.out.join("soak.svg");
    let title = format!(
        "vestnik soak: {} for {}, {rate} sessions/s, {trigger_rate} events/s",
        if n_nodes > 1 {
            format!("{n_nodes} nodes on {:?}", args.adapter)
        } else {
            "one node".to_owned()
        },
        if duration.as_secs() >= 300 {
            format!("{:.0} min", duration.as_secs_f64() / 60.0)
        } else {
            format!("{:.0} s", duration.as_secs_f64())
        }
    );
    chart::write_svg(&svg, &title, &samples, n_nodes)?;
    let mut report = SoakReport {
        scenario: "soak",
        adapter: (n_nodes > 1).then_some(args.adapter),
        nodes: n_nodes,
        seed,
        duration_s: duration.as_secs_f64(),
        warmup_s: warmup.as_secs_f64(),
        rate,
        trigger_rate,
        churn: figures,
        summary: SoakReport::summarize(&samples, n_nodes),
        flatness: verdict::flatness(&samples, n_nodes),
        idle,
        idle_after_s,
        samples: samples.len(),
        violations: Vec::new(),
    };
    report.judge();
    let json = args.out.join("soak.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    say(format!(
        "wrote {}, {} and {}",
        csv_path.display(),
        svg.display(),
        json.display()
    ));
    Ok(report)
}

/// Draws `soak.svg` under `out` again from the CSV of an earlier run.
/// Prints the verdict on those readings again; true when it passes.
fn replot(csv: &std::path::Path, out: &std::path::Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let samples = sample::read_csv(&text)?;
    let nodes = samples.iter().map(|s| s.node + 1).max().unwrap_or(0);
    let churn_s = samples
        .iter()
        .filter(|s| matches!(s.phase, Phase::Warmup | Phase::Churn))
        .map(|s| s.t_s)
        .fold(0.0, f64::max);
    let title = format!(
        "vestnik soak: {} for {:.0} min (from {})",
        if nodes > 1 {
            format!("{nodes} nodes")
        } else {
            "one node".to_owned()
        },
        churn_s / 60.0,
        csv.file_name().unwrap_or_default().to_string_lossy()
    );
    std::fs::create_dir_all(out)?;
    let svg = out.join("soak.svg");
    chart::write_svg(&svg, &title, &samples, nodes)?;
    println!("wrote {} ({} samples)", svg.display(), samples.len());
    // The verdict again, with this build's tolerances: flatness, and idle against the baseline.
    let mut passed = true;
    for f in verdict::flatness(&samples, nodes) {
        passed &= f.flat();
        println!("{}", f.describe());
    }
    for node in 0..nodes {
        let last = |p: Phase| samples.iter().rfind(|s| s.node == node && s.phase == p);
        let (Some(base), Some(idle)) = (last(Phase::Baseline), last(Phase::Idle)) else {
            passed = false;
            println!("node {node}: no baseline or idle reading");
            continue;
        };
        let problem = IdleCheck::new(base, idle).problem();
        passed &= problem.is_none();
        println!(
            "node {node} idle: {}",
            problem.unwrap_or_else(|| "back to 0 sockets, 0 channels, baseline fds".into())
        );
    }
    Ok(passed)
}

/// Takes readings of every node, keeps them and writes them to the CSV.
struct Sampler<'a, W: std::io::Write> {
    procs: &'a [SoakNode],
    start: Instant,
    samples: &'a mut Vec<Sample>,
    csv: &'a mut W,
}

impl<W: std::io::Write> Sampler<'_, W> {
    /// One reading of every node in `phase`.
    async fn take(&mut self, phase: Phase) -> Result<Vec<Sample>> {
        let mut row = Vec::new();
        for n in self.procs {
            let mut s = Sample::read(n.index, n.pid, n.metrics).await?;
            s.t_s = self.start.elapsed().as_secs_f64();
            s.phase = phase;
            row.push(s);
        }
        for s in &row {
            writeln!(self.csv, "{}", s.csv_row())?;
        }
        self.csv.flush()?;
        self.samples.extend(row.iter().copied());
        Ok(row)
    }
}
