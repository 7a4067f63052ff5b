//! `vestnik-bench`: a load generator for any Pusher Channels protocol v7 broker.
//!
//! It opens WebSocket sockets and subscribes them, triggers events through the signed HTTP API, and
//! accounts for every delivery exactly (run and sequence numbers in each event's data) with latency
//! from trigger send to socket receipt in HDR histograms. With `--pid` it reads the broker's CPU time
//! and RSS from /proc. It knows the broker only through the wire protocol and the protocol crate's
//! signing helpers.
//!
//! # Layout
//! - [`cli`]: options and scenario subcommands, `--smoke` sizes.
//! - [`chaos`]: the chaos run (a cluster it starts itself, faults, exact loss accounting).
//! - [`recovery`]: the recovery run (sockets cut and resubscribed with `recover`, exact loss
//!   accounting).
//! - [`soak`]: the soak run (long churn, memory, descriptors and tasks over time, flat or not).
//! - [`scenario`]: the scenarios and the rig they share.
//! - [`pusher`]: the WebSocket client side of the protocol; [`ramp`]: opening many sockets.
//! - [`api`]: the signed HTTP API; [`load`]: open-loop, closed-loop and probe triggering.
//! - [`tracker`]: per-socket delivery accounting and latency histograms.
//! - [`report`]: the report (table, JSON); [`plot`]: latency-versus-load SVG.
//! - [`procfs`]: /proc readings; [`fdlimit`]: descriptor limits and limit errors.
//! - [`target`]: addresses, credentials, channel names; [`clock`]: the shared time base.

mod api;
mod chaos;
mod cli;
mod clock;
mod fdlimit;
mod load;
mod plot;
mod procfs;
mod pusher;
mod ramp;
mod recovery;
mod report;
mod scaleout;
mod scenario;
mod soak;
mod target;
mod tracker;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{pick, secs, Cli, Scenario};
use report::Report;
use scenario::fanout::Route;
use scenario::Ctx;

fn main() -> ExitCode {
    clock::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        // A chaos or soak run that violated a guaranteed figure: the report says which.
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("vestnik-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario; false when a chaos run found a violation.
fn run(cli: Cli) -> Result<bool> {
    let Cli { global, scenario } = cli;
    if let Scenario::Plot(p) = &scenario {
        let mut points = Vec::new();
        for input in &p.inputs {
            points.extend(plot::points_of(&Report::read_json(input)?));
        }
        plot::write_svg(&p.output, &p.title, &points)?;
        println!("wrote {} ({} points)", p.output.display(), points.len());
        return Ok(true);
    }
    if let Scenario::Chaos(a) = &scenario {
        return run_chaos(&global, a);
    }
    if let Scenario::Soak(a) = &scenario {
        return run_soak(&global, a);
    }
    if let Scenario::Recovery(a) = &scenario {
        return recovery::run(&global, a);
    }
    if let Scenario::ScaleOut(a) = &scenario {
        return run_scale_out(&global, a);
    }
    let nofile = fdlimit::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let json_path = global.json.clone();
    let ctx = Arc::new(Ctx { global, nofile });
    // Run the scenario on the runtime's workers, not on this thread: with --threads 1 and taskset,
    // a second busy thread on the same core would add scheduler delays to every measurement.
    let task_ctx = Arc::clone(&ctx);
    let report = runtime.block_on(async move {
        tokio::spawn(async move { scenario_report(&task_ctx, scenario).await })
            .await
            .context("the scenario task failed")?
    })?;
    print!("{}", report.table());
    if let Some(path) = json_path {
        report.write_json(&path)?;
        scenario::say(&ctx, format!("report written to {}", path.display()));
    }
    Ok(true)
}

/// The chaos run: its own runtime (several workers: it drives a cluster, not a measurement of
/// one core), its table, its JSON, and whether it passed.
fn run_chaos(global: &cli::Global, args: &cli::ChaosArgs) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(2))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let quiet = global.quiet;
    let (report, work) = runtime.block_on(chaos::chaos(args, quiet))?;
    print!("{}", report.table());
    if let Some(path) = &global.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.violations.is_empty() || args.keep {
        eprintln!("chaos: logs and config kept in {}", work.display());
    }
    Ok(report.violations.is_empty())
}

/// The scale-out run: its own runtime (it drives a cluster), its table, its JSON.
fn run_scale_out(global: &cli::Global, args: &cli::ScaleOutArgs) -> Result<bool> {
    let _ = fdlimit::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(2))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(scaleout::scale_out(args, global.quiet))?;
    print!("{}", report.table());
    if let Some(path) = &global.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

/// The soak run: its own runtime (several workers, like chaos), its table, its JSON (always
/// written to the output directory, and to --json when given), and whether it passed.
fn run_soak(global: &cli::Global, args: &cli::SoakArgs) -> Result<bool> {
    let _ = fdlimit::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(2))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = match runtime.block_on(soak::soak(args, global.smoke, global.quiet))? {
        soak::Outcome::Run(report) => report,
        // The verdict on an earlier run's readings, already printed.
        soak::Outcome::Replot { passed } => return Ok(passed),
    };
    print!("{}", report.table());
    if let Some(path) = &global.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed())
}

async fn scenario_report(ctx: &Ctx, scenario: Scenario) -> Result<Report> {
    let smoke = ctx.global.smoke;
    match scenario {
        Scenario::Fanout(a) => {
            let route = Route {
                scenario: "fanout",
                ws: &a.targets.ws,
                http: &a.targets.http,
            };
            scenario::fanout::fanout(ctx, route, a.load.resolve(smoke)).await
        }
        Scenario::CrossNode(a) => {
            let route = Route {
                scenario: "cross-node",
                ws: &a.ws_b,
                http: &a.http_a,
            };
            scenario::fanout::fanout(ctx, route, a.load.resolve(smoke)).await
        }
        Scenario::Sweep(a) => {
            let rates = if a.rates.is_empty() {
                if smoke {
                    vec![20.0, 50.0]
                } else {
                    vec![100.0, 200.0, 500.0, 1000.0, 2000.0]
                }
            } else {
                a.rates.clone()
            };
            let route = Route {
                scenario: "sweep",
                ws: &a.targets.ws,
                http: &a.targets.http,
            };
            scenario::fanout::sweep(ctx, route, a.load.resolve(smoke), &rates, a.plot.as_deref())
                .await
        }
        Scenario::Idle(a) => {
            let idle = scenario::idle::Idle {
                sockets: pick(a.sockets, smoke, 10_000, 50),
                channels: pick(a.channels, smoke, 10, 5).max(1),
                hold: secs(pick(a.hold, smoke, 5.0, 1.0)),
                drain: secs(10.0),
            };
            scenario::idle::idle(ctx, &a.targets.ws, &a.targets.http, idle).await
        }
        Scenario::Connect(a) => {
            let c = scenario::connect::Connect {
                sockets: pick(a.sockets, smoke, 5_000, 50),
                channels: pick(a.channels, smoke, 10, 5).max(1),
                concurrency: a.concurrency.unwrap_or(ctx.global.connect_concurrency),
                drain: secs(10.0),
            };
            scenario::connect::connect(ctx, &a.targets.ws, &a.targets.http, c).await
        }
        Scenario::Triggers(a) => {
            let t = scenario::triggers::Triggers {
                concurrency: a.concurrency.max(1),
                batch: a.batch.max(1),
                duration: secs(pick(a.duration, smoke, 10.0, 2.0)),
                warmup: secs(pick(a.warmup, smoke, 1.0, 0.5)),
                drain: secs(a.drain),
                payload: a.payload,
            };
            scenario::triggers::triggers(ctx, &a.targets.ws, &a.targets.http, t).await
        }
        Scenario::Floor(a) => {
            let f = scenario::floor::Floor {
                sockets: pick(a.sockets, smoke, 1_000, 50),
                channels: pick(a.channels, smoke, 10, 5).max(1),
                rate: pick(a.rate, smoke, 200.0, 50.0),
                duration: secs(pick(a.duration, smoke, 10.0, 2.0)),
                warmup: secs(pick(a.warmup, smoke, 2.0, 0.5)),
                payload: a.payload,
                writer_cpu: a.writer_cpu,
                drain: secs(10.0),
            };
            scenario::floor::floor(ctx, f).await
        }
        Scenario::Plot(_)
        | Scenario::Chaos(_)
        | Scenario::Soak(_)
        | Scenario::Recovery(_)
        | Scenario::ScaleOut(_) => {
            unreachable!(
                "plot, chaos, soak, recovery and scale-out are handled before this runtime starts"
            )
        }
    }
}
