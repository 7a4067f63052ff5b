//! `triggers`: HTTP API throughput. One subscriber, `concurrency` keep-alive connections calling
//! `/events` (or `/batch_events`) back to back for the duration; reports triggers per second, call
//! latency, broker CPU per trigger, and checks the subscriber got every event.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::load;
use crate::report::Report;
use crate::target::Channels;

use super::{say, totals, Ctx, Rig, Window};

/// The triggers scenario's settings.
#[derive(Debug, Clone, Copy)]
pub struct Triggers {
    /// Calls in flight.
    pub concurrency: usize,
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
}

/// Runs `triggers` against `ws` (the subscriber) and `http`.
pub async fn triggers(ctx: &Ctx, ws: &str, http: &str, t: Triggers) -> Result<Report> {
    let channels = Channels::new(1, ctx.global.private);
    let ws_target = ctx.ws_target(ws)?;
    let api = ctx.api_target(http, channels.clone(), t.payload)?;
    let (rig, _) = Rig::open(ctx, ws_target, &channels, 1, 1).await?;
    if !t.warmup.is_zero() {
        say(
            ctx,
            format!("warming up for {:.1}s", t.warmup.as_secs_f64()),
        );
        let _ = load::closed_loop(Arc::clone(&api), 0, t.concurrency, t.warmup, t.batch).await;
    }
    say(
        ctx,
        format!(
            "measuring: {} calls in flight for {:.1}s",
            t.concurrency,
            t.duration.as_secs_f64()
        ),
    );
    let window = Window::start(ctx);
    let run = rig
        .deliver(
            1,
            load::closed_loop(Arc::clone(&api), 1, t.concurrency, t.duration, t.batch),
            t.drain,
        )
        .await;
    let end = window.end(ctx);
    let delivery = run.delivery_stats(0.0);
    let http_stats = run.http_stats(0.0, t.concurrency);
    // RSS per socket means nothing with one socket and several HTTP connections: leave it out.
    let broker = end.broker_stats(
        ctx,
        rig.baseline,
        0,
        run.counts.delivered,
        run.accepted_events(),
        0,
    );
    let connect = rig.connect_stats(1, 1);
    let (lost, sockets_failed) = totals(Some(&connect), Some(&delivery));
    rig.ramp.close().await;
    let mut params = ctx.params();
    params.insert("ws".into(), json!(ws));
    params.insert("http".into(), json!(http));
    params.insert("concurrency".into(), json!(t.concurrency));
    params.insert("batch".into(), json!(t.batch));
    params.insert("duration_s".into(), json!(t.duration.as_secs_f64()));
    params.insert("payload".into(), json!(t.payload));
    Ok(Report {
        scenario: "triggers".to_owned(),
        params,
        lost,
        sockets_failed,
        connect: Some(connect),
        delivery: Some(delivery),
        http: Some(http_stats),
        broker,
        bench: ctx.bench_stats(&end),
        sweep: Vec::new(),
        notes: vec![
            "broker cpu per trigger includes delivering each event to the one subscriber"
                .to_owned(),
        ],
    })
}
