//! `idle`: open N sockets, hold them, report what they cost the broker (RSS per socket, idle CPU),
//! then send one event per channel to check that every socket is still alive.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::load;
use crate::report::Report;
use crate::target::Channels;

use super::{say, totals, Ctx, Rig, Window};

/// The idle scenario's settings.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Sockets.
    pub sockets: usize,
    /// Channels.
    pub channels: usize,
    /// How long to hold.
    pub hold: Duration,
    /// Longest wait for the probe's deliveries.
    pub drain: Duration,
}

/// Runs `idle` against `ws` (sockets) and `http` (the probe).
pub async fn idle(ctx: &Ctx, ws: &str, http: &str, idle: Idle) -> Result<Report> {
    let channels = Channels::new(idle.channels, ctx.global.private);
    let ws_target = ctx.ws_target(ws)?;
    let api = ctx.api_target(http, channels.clone(), 0)?;
    let mut notes = ctx.limit_notes(idle.sockets);
    let (rig, _) = Rig::open(
        ctx,
        ws_target,
        &channels,
        idle.sockets,
        ctx.global.connect_concurrency,
    )
    .await?;
    say(ctx, format!("holding for {:.1}s", idle.hold.as_secs_f64()));
    let window = Window::start(ctx);
    tokio::time::sleep(idle.hold).await;
    let end = window.end(ctx);
    let broker = end.broker_stats(ctx, rig.baseline, rig.ramp.connected, 0, 0, 0);

    say(ctx, "probing every channel once");
    let probe = rig
        .deliver(1, load::probe(Arc::clone(&api), 1), idle.drain)
        .await;
    let delivery = probe.delivery_stats(0.0);
    let connect = rig.connect_stats(idle.sockets, ctx.global.connect_concurrency);
    notes.push(
        "broker cpu is over the hold only (idle cost); delivery is the one-event-per-channel probe \
         after it"
            .to_owned(),
    );
    if ctx.global.pid.is_some() {
        notes.push("rss per socket = (rss with sockets open - rss before) / sockets".to_owned());
    }
    let (lost, sockets_failed) = totals(Some(&connect), Some(&delivery));
    rig.ramp.close().await;
    let mut params = ctx.params();
    params.insert("ws".into(), json!(ws));
    params.insert("sockets".into(), json!(idle.sockets));
    params.insert("channels".into(), json!(idle.channels));
    params.insert("hold_s".into(), json!(idle.hold.as_secs_f64()));
    Ok(Report {
        scenario: "idle".to_owned(),
        params,
        lost,
        sockets_failed,
        connect: Some(connect),
        delivery: Some(delivery),
        http: Some(probe.http_stats(0.0, 1)),
        broker,
        bench: ctx.bench_stats(&end),
        sweep: Vec::new(),
        notes,
    })
}
