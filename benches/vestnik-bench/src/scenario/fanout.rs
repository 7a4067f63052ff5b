//! `fanout`, `cross-node` and `sweep`: many sockets on a few channels, events triggered open-loop at
//! a fixed rate over the signed HTTP API, every delivery accounted for.
//!
//! Each measured run is preceded by a warm-up at the same rate whose events carry run 0 and are never
//! counted; then the measured run sends for its duration and waits, bounded by `--drain`, for the
//! deliveries still in flight.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::api::ApiTarget;
use crate::cli::Load;
use crate::load::{self, Paced};
use crate::plot;
use crate::report::{Report, SweepPoint};
use crate::target::Channels;

use super::{say, totals, Ctx, Rig, Window};

/// Where a fan-out's sockets and triggers go.
pub struct Route<'a> {
    /// Scenario name for the report.
    pub scenario: &'a str,
    /// WebSocket address the sockets use.
    pub ws: &'a str,
    /// HTTP API address the triggers use.
    pub http: &'a str,
}

fn paced(load: &Load, rate: f64, duration: std::time::Duration) -> Paced {
    Paced {
        rate,
        duration,
        batch: load.batch,
        conns: load.http_conns,
    }
}

fn params(ctx: &Ctx, route: &Route<'_>, load: &Load) -> serde_json::Map<String, serde_json::Value> {
    let mut p = ctx.params();
    p.insert("ws".into(), json!(route.ws));
    p.insert("http".into(), json!(route.http));
    p.insert("sockets".into(), json!(load.sockets));
    p.insert("channels".into(), json!(load.channels));
    p.insert("rate".into(), json!(load.rate));
    p.insert("batch".into(), json!(load.batch));
    p.insert("duration_s".into(), json!(load.duration.as_secs_f64()));
    p.insert("warmup_s".into(), json!(load.warmup.as_secs_f64()));
    p.insert("payload".into(), json!(load.payload));
    p.insert("http_conns".into(), json!(load.http_conns));
    p
}

async fn warm_up(ctx: &Ctx, api: &Arc<ApiTarget>, load: &Load, rate: f64) {
    if load.warmup.is_zero() {
        return;
    }
    say(
        ctx,
        format!(
            "warming up: {rate} events/s for {:.1}s",
            load.warmup.as_secs_f64()
        ),
    );
    let _ = load::paced(Arc::clone(api), 0, paced(load, rate, load.warmup)).await;
}

/// Opens the sockets, warms up, measures one run at `load.rate`, and reports.
pub async fn fanout(ctx: &Ctx, route: Route<'_>, load: Load) -> Result<Report> {
    let channels = Channels::new(load.channels, ctx.global.private);
    let ws = ctx.ws_target(route.ws)?;
    let api = ctx.api_target(route.http, channels.clone(), load.payload)?;
    let mut notes = ctx.limit_notes(load.sockets);
    let (rig, _) = Rig::open(
        ctx,
        ws,
        &channels,
        load.sockets,
        ctx.global.connect_concurrency,
    )
    .await?;

    warm_up(ctx, &api, &load, load.rate).await;
    say(
        ctx,
        format!(
            "measuring: {} events/s for {:.1}s{}",
            load.rate,
            load.duration.as_secs_f64(),
            if load.batch > 1 {
                format!(" in batches of {}", load.batch)
            } else {
                String::new()
            }
        ),
    );
    let window = Window::start(ctx);
    let run = rig
        .deliver(
            1,
            load::paced(Arc::clone(&api), 1, paced(&load, load.rate, load.duration)),
            load.drain,
        )
        .await;
    let end = window.end(ctx);

    let offered = load.rate * run.counts.sockets_live as f64 / channels.count() as f64;
    let delivery = run.delivery_stats(offered);
    let http = run.http_stats(load.rate, load.http_conns);
    let broker = end.broker_stats(
        ctx,
        rig.baseline,
        rig.ramp.connected,
        run.counts.delivered,
        run.accepted_events(),
        0,
    );
    let connect = rig.connect_stats(load.sockets, ctx.global.connect_concurrency);
    if http.events_per_s < load.rate * 0.95 {
        notes.push(format!(
            "sent {:.0} of {:.0} offered events/s: the API answered too slowly for {} connections \
             (raise --http-conns), or the generator is saturated",
            http.events_per_s, load.rate, load.http_conns
        ));
    }
    if delivery.per_s < offered * 0.95 && delivery.per_s > 0.0 {
        notes.push(format!(
            "achieved {:.0} of {:.0} offered deliveries/s: the broker or the generator is saturated \
             (compare broker cpu_cores with generator cpu_s / window)",
            delivery.per_s, offered
        ));
    }
    if route.scenario == "cross-node" {
        notes.push(cross_node_note(route.ws, route.http));
    }
    for r in rig.tracker.close_reasons().into_iter().take(3) {
        notes.push(format!("socket closed: {r}"));
    }
    let (lost, sockets_failed) = totals(Some(&connect), Some(&delivery));
    rig.ramp.close().await;
    Ok(Report {
        scenario: route.scenario.to_owned(),
        params: params(ctx, &route, &load),
        lost,
        sockets_failed,
        connect: Some(connect),
        delivery: Some(delivery),
        http: Some(http),
        broker,
        bench: ctx.bench_stats(&end),
        sweep: Vec::new(),
        notes,
    })
}

fn cross_node_note(ws: &str, http: &str) -> String {
    let same = ws.split("://").last().map(|s| s.trim_end_matches('/'))
        == http.split("://").last().map(|s| s.trim_end_matches('/'));
    if same {
        "node A and node B are the same address: this is the single-node path; a real cross-node \
         figure needs two brokers joined by a cluster adapter"
            .to_owned()
    } else {
        format!("triggers on node A ({http}), sockets on node B ({ws}); latency includes the adapter hop")
    }
}

/// Opens the sockets once, then for each rate warms up, measures and records a point; draws the
/// points to `plot_path` when given.
pub async fn sweep(
    ctx: &Ctx,
    route: Route<'_>,
    load: Load,
    rates: &[f64],
    plot_path: Option<&std::path::Path>,
) -> Result<Report> {
    let channels = Channels::new(load.channels, ctx.global.private);
    let ws = ctx.ws_target(route.ws)?;
    let api = ctx.api_target(route.http, channels.clone(), load.payload)?;
    let mut notes = ctx.limit_notes(load.sockets);
    let (rig, _) = Rig::open(
        ctx,
        ws,
        &channels,
        load.sockets,
        ctx.global.connect_concurrency,
    )
    .await?;
    let mut points = Vec::with_capacity(rates.len());
    let mut self_cpu = 0.0;
    let mut last_end = Window::start(ctx).end(ctx);
    let mut dropped = 0;
    for (i, &rate) in rates.iter().enumerate() {
        warm_up(ctx, &api, &load, rate).await;
        say(
            ctx,
            format!(
                "step {}/{}: {rate} events/s for {:.1}s",
                i + 1,
                rates.len(),
                load.duration.as_secs_f64()
            ),
        );
        let window = Window::start(ctx);
        let run_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let run = rig
            .deliver(
                run_no,
                load::paced(Arc::clone(&api), run_no, paced(&load, rate, load.duration)),
                load.drain,
            )
            .await;
        let end = window.end(ctx);
        self_cpu += end.self_cpu_s;
        last_end = end.clone();
        let offered = rate * run.counts.sockets_live as f64 / channels.count() as f64;
        let d = run.delivery_stats(offered);
        dropped += d.sockets_dropped;
        let broker = end.broker_stats(ctx, rig.baseline, rig.ramp.connected, d.delivered, 0, 0);
        say(
            ctx,
            format!(
                "  {:.0} deliveries/s, lost {}, p50 {}µs p99 {}µs",
                d.per_s, d.lost, d.latency_us.p50, d.latency_us.p99
            ),
        );
        let sent = run.http_stats(rate, load.http_conns);
        points.push(SweepPoint {
            rate,
            offered_per_s: offered,
            per_s: d.per_s,
            sent_per_s: sent.events_per_s,
            cores: end.cores.clone(),
            other_cores: end.other_cores(),
            broker_cpu_cores: broker.as_ref().map(|b| b.cpu_cores),
            bench_cpu_cores: if end.secs > 0.0 {
                end.self_cpu_s / end.secs
            } else {
                0.0
            },
            expected: d.expected,
            delivered: d.delivered,
            lost: d.lost,
            latency_us: d.latency_us,
            cpu_us_per_delivery: broker.and_then(|b| b.cpu_us_per_delivery),
        });
    }
    let connect = rig.connect_stats(load.sockets, ctx.global.connect_concurrency);
    rig.ramp.close().await;
    if let Some(path) = plot_path {
        plot::write_svg(path, "Delivery latency against offered load", &points)?;
        notes.push(format!("plot written to {}", path.display()));
    }
    let mut p = params(ctx, &route, &load);
    p.insert("rates".into(), json!(rates));
    p.remove("rate");
    Ok(Report {
        scenario: route.scenario.to_owned(),
        params: p,
        lost: points.iter().map(|p| p.lost).sum(),
        sockets_failed: (connect.requested - connect.connected) as u64 + dropped,
        connect: Some(connect),
        delivery: None,
        http: None,
        broker: None,
        bench: crate::report::BenchStats {
            cpu_s: self_cpu,
            cores: Vec::new(),
            other_cores: None,
            ..ctx.bench_stats(&last_end)
        },
        sweep: points,
        notes,
    })
}
