//! `connect`: how fast the broker admits sockets. Opens and subscribes N sockets with at most K in
//! flight, reports sockets per second, connect-to-subscribed latency and broker CPU per socket, then
//! checks with one event per channel that every socket receives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::load;
use crate::report::Report;
use crate::target::Channels;

use super::{totals, Ctx, Rig};

/// The connect scenario's settings.
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    /// Sockets.
    pub sockets: usize,
    /// Channels.
    pub channels: usize,
    /// Sockets opening at once.
    pub concurrency: usize,
    /// Longest wait for the probe's deliveries.
    pub drain: Duration,
}

/// Runs `connect` against `ws` (sockets) and `http` (the probe).
pub async fn connect(ctx: &Ctx, ws: &str, http: &str, c: Connect) -> Result<Report> {
    let channels = Channels::new(c.channels, ctx.global.private);
    let ws_target = ctx.ws_target(ws)?;
    let api = ctx.api_target(http, channels.clone(), 0)?;
    let notes = ctx.limit_notes(c.sockets);
    let (rig, end) = Rig::open(ctx, ws_target, &channels, c.sockets, c.concurrency).await?;
    let broker = end.broker_stats(
        ctx,
        rig.baseline,
        rig.ramp.connected,
        0,
        0,
        rig.ramp.connected as u64,
    );
    let probe = rig
        .deliver(1, load::probe(Arc::clone(&api), 1), c.drain)
        .await;
    let delivery = probe.delivery_stats(0.0);
    let connect = rig.connect_stats(c.sockets, c.concurrency);
    let (lost, sockets_failed) = totals(Some(&connect), Some(&delivery));
    rig.ramp.close().await;
    let mut params = ctx.params();
    params.insert("ws".into(), json!(ws));
    params.insert("sockets".into(), json!(c.sockets));
    params.insert("channels".into(), json!(c.channels));
    params.insert("concurrency".into(), json!(c.concurrency));
    Ok(Report {
        scenario: "connect".to_owned(),
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
