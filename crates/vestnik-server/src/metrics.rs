//! Prometheus metrics on their own listener (`--metrics-port`, default 9601), so scrapes never
//! compete with sockets and the API port can stay public while metrics stay internal.
//!
//! Counters on the hot paths are `metrics` handles created once per socket or per route and bumped
//! with an atomic add; gauges that the broker already knows (sockets, channels, webhook and cluster
//! counts, process figures) are read at scrape time instead of being tracked twice. This module must
//! never block a socket or the API.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{counter, gauge, Counter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing::{info, warn};

use serde_json::json;

use crate::reply::json_response;
use crate::state::AppState;

/// The `vestnik_http_requests_total` handles made so far, by app id, then route and status, and the
/// recorder they were made with (its address).
type RequestCounters = (usize, HashMap<String, Vec<(&'static str, u16, Counter)>>);

/// `vestnik_http_requests_total` handles, made once per app, route and status: a labelled
/// `counter!` builds its key (the labels' strings) and looks it up in the registry on each call.
/// The ids are apps' ids or `unknown`, never a client's text, so this stays as small as the series.
static HTTP_REQUESTS: LazyLock<RwLock<RequestCounters>> =
    LazyLock::new(|| RwLock::new((0, HashMap::new())));

/// The address of the recorder in use, so that handles made before one was installed (a test
/// process starts several servers) are made again from the one that counts.
fn recorder_id() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize)
}

/// Counts one signed API call in `vestnik_http_requests_total{app_id, route, status}`.
pub fn count_http_request(app_id: &str, route: &'static str, status: u16) {
    let recorder = recorder_id();
    {
        let cache = HTTP_REQUESTS.read().unwrap_or_else(PoisonError::into_inner);
        if cache.0 == recorder {
            let found = cache
                .1
                .get(app_id)
                .and_then(|handles| handles.iter().find(|(r, s, _)| *r == route && *s == status));
            if let Some((_, _, counter)) = found {
                counter.increment(1);
                return;
            }
        }
    }
    let counter = counter!(
        "vestnik_http_requests_total",
        "app_id" => app_id.to_owned(),
        "route" => route,
        "status" => status.to_string()
    );
    counter.increment(1);
    let mut cache = HTTP_REQUESTS
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if cache.0 != recorder {
        *cache = (recorder, HashMap::new());
    }
    let handles = cache.1.entry(app_id.to_owned()).or_default();
    if !handles.iter().any(|(r, s, _)| *r == route && *s == status) {
        handles.push((route, status, counter));
    }
}

/// Installs the process-wide Prometheus recorder. Only the first call in a process installs it.
///
/// The sockets' sent traffic (`vestnik_ws_messages_sent_total`, `vestnik_ws_bytes_sent_total` and
/// the `vestnik_publish_to_write_seconds` histogram) is not kept by the recorder but counted on the
/// delivery path with plain atomics and appended at scrape time ([`crate::ws::counters`]): a
/// recorder histogram sample costs a clock read and a queued sample per delivered frame. Returns
/// `None` (and says why) when a recorder is already installed, as in a test process that starts
/// several servers.
pub fn install() -> Option<PrometheusHandle> {
    // A failure leaves /metrics unserved, so say why instead of silently serving nothing.
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| warn!("metrics not served: recorder not installed: {e}"))
        .ok()
}

/// Reads the figures the broker already keeps into gauges, just before a scrape.
///
/// Reading at scrape time keeps the hot paths free of gauge updates: a socket joining a channel
/// changes the registry only, and the gauge catches up on the next scrape.
fn refresh(state: &AppState) {
    // The apps served now: with an app database or after a reload they differ from the file's.
    for app in state.broker.apps().all() {
        let rt = state.broker.runtime(&app);
        let id = app.id.clone();
        gauge!("vestnik_sockets_connected", "app_id" => id.clone())
            .set(rt.connection_count() as f64);
        gauge!("vestnik_channels", "app_id" => id.clone()).set(rt.registry.channel_count() as f64);
        gauge!("vestnik_subscriptions", "app_id" => id.clone())
            .set(rt.registry.subscription_count() as f64);
        // In a cluster that keeps its history in the backbone: events sent without positions
        // (the store failed) and gaps the store could not fill (events lost on this node).
        counter!("vestnik_history_unnumbered_total", "app_id" => id.clone())
            .absolute(rt.history.unnumbered_sends());
        counter!("vestnik_history_gaps_skipped_total", "app_id" => id.clone())
            .absolute(rt.history.gaps_skipped());
        gauge!("vestnik_signed_in_users", "app_id" => id).set(rt.user_count() as f64);
    }
    if let Some(hooks) = &state.webhooks {
        for s in hooks.stats() {
            let id = s.app_id.clone();
            // Totals the sender keeps are exported as counters set to their absolute value, so
            // Prometheus's rate() works on them.
            counter!("vestnik_webhooks_delivered_total", "app_id" => id.clone())
                .absolute(s.delivered);
            counter!("vestnik_webhooks_failed_total", "app_id" => id.clone()).absolute(s.failed);
            counter!("vestnik_webhooks_retried_total", "app_id" => id.clone()).absolute(s.retried);
            gauge!("vestnik_webhooks_pending", "app_id" => id.clone()).set(s.pending as f64);
            gauge!("vestnik_webhooks_dead_lettered", "app_id" => id.clone())
                .set(s.dead_lettered as f64);
            counter!("vestnik_webhooks_dropped_total", "app_id" => id).absolute(s.dropped);
        }
    }
    if let Some(c) = state.broker.cluster() {
        let a = c.adapter_name();
        counter!("vestnik_adapter_published_total", "adapter" => a)
            .absolute(c.counters.sent.load(Ordering::Relaxed));
        counter!("vestnik_adapter_received_total", "adapter" => a)
            .absolute(c.counters.received.load(Ordering::Relaxed));
        // Refused by the adapter (counted by the cluster layer), plus accepted and lost later
        // (held past the relay hold, in a publish that failed), which only the adapter sees.
        let after_send = state
            .backbone
            .get()
            .map_or(0, |b| b.stats().lost_after_send);
        counter!("vestnik_adapter_lost_total", "adapter" => a)
            .absolute(c.counters.lost.load(Ordering::Relaxed) + after_send);
        gauge!("vestnik_adapter_connected", "adapter" => a).set(if c.is_connected() {
            1.0
        } else {
            0.0
        });
        gauge!("vestnik_cluster_peers", "adapter" => a).set(c.peers().len() as f64);
        // Interest routing: channel event relays applied here, those for channels nobody here
        // serves (the waste the route shards bound), and the shards listened to.
        counter!("vestnik_cluster_relays_received_total", "adapter" => a)
            .absolute(c.counters.relays_received.load(Ordering::Relaxed));
        counter!("vestnik_cluster_relays_unserved_total", "adapter" => a)
            .absolute(c.counters.relays_unserved.load(Ordering::Relaxed));
        gauge!("vestnik_cluster_route_shards_listened", "adapter" => a)
            .set(c.route_shards_listened() as f64);
    }
    task_figures(state);
    process_figures();
}

/// Live tasks and the runtime's shared queue, so a soak run can see a task leak (a connection
/// whose tasks outlive its socket) that memory would show only slowly.
///
/// `vestnik_connection_tasks` counts the tasks on the shutdown tracker: one per accepted
/// connection (WebSocket or HTTP) and one per console stream, so it is 0 on an idle node.
/// `vestnik_runtime_alive_tasks` counts every task the runtime holds, background tasks included,
/// so it settles at a constant on an idle node. Both are read here, at scrape time, for free.
fn task_figures(state: &AppState) {
    gauge!("vestnik_connection_tasks").set(state.shutdown.tracker().len() as f64);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let m = rt.metrics();
        gauge!("vestnik_runtime_alive_tasks").set(m.num_alive_tasks() as f64);
        gauge!("vestnik_runtime_global_queue_depth").set(m.global_queue_depth() as f64);
    }
}

/// Resident memory, open descriptors and CPU seconds of this process, from /proc (Linux).
fn process_figures() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kib) = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
        {
            gauge!("vestnik_process_resident_memory_bytes").set(kib * 1024.0);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("vestnik_process_open_fds").set(fds.count() as f64);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
        if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
            if let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>()) {
                // Linux reports clock ticks of 1/100 s on every platform Vestnik supports.
                gauge!("vestnik_process_cpu_seconds_total").set((u + s) / 100.0);
            }
        }
    }
}

/// Serves `GET /metrics` and `GET /usage` on `listener` until shutdown; anything else is a 404.
/// Each connection is its own small task, outside the shutdown tracker: scrapes never hold the
/// drain up. Request headers are bounded by
/// `handshake_timeout`, like on the main listener, so a slow client cannot hold a connection.
///
/// # The loop
/// Accepts until the drain's `finishing` step, like the main accept loop, but untracked: a scrape
/// in flight is simply dropped at exit, which Prometheus retries on its next interval.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, state: AppState) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    let header_timeout = Duration::from_secs(state.config.server.handshake_timeout);
    let token = state.shutdown.finish_token().clone();
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (handle, state) = (handle.clone(), state.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (handle, state) = (handle.clone(), state.clone());
                async move {
                    let resp = if req.uri().path() == "/usage" {
                        usage(&state)
                    } else if req.uri().path() == "/metrics" {
                        refresh(&state);
                        let mut body = handle.render();
                        state.sessions.counters.render(&mut body);
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(
                            b"see /metrics or /usage\n",
                        )));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `GET /usage` on the metrics listener: memory, and counts per app and for the cluster, as JSON.
fn usage(state: &AppState) -> Response<Full<Bytes>> {
    let stats = state.broker.stats();
    // The apps served now (the live list with an app database), not the config file's.
    let apps: Vec<_> = state
        .broker
        .apps()
        .all()
        .iter()
        .map(|a| {
            let rt = state.broker.runtime(a);
            json!({
                "id": a.id,
                "connections": rt.connection_count(),
                "channels": rt.registry.channel_count(),
                "users": rt.user_count(),
                "history": {
                    "bytes": rt.history.bytes(),
                    "max_bytes": a.history.max_bytes,
                    "channels": rt.history.stream_count(),
                    "quiet_channels": rt.history.quiet_count(),
                    "unnumbered_sends": rt.history.unnumbered_sends(),
                    "gaps_skipped": rt.history.gaps_skipped(),
                },
            })
        })
        .collect();
    let cluster = state.broker.cluster().map(|c| {
        json!({
            "node": c.node.to_string(),
            "adapter": c.adapter_name(),
            "connected": c.is_connected(),
            "peers": c.peers().len(),
            "draining_peers": c.draining_peers(),
            "sent": c.counters.sent.load(Ordering::Relaxed),
            "received": c.counters.received.load(Ordering::Relaxed),
            "lost": c.counters.lost.load(Ordering::Relaxed),
            "relays_received": c.counters.relays_received.load(Ordering::Relaxed),
            "relays_unserved": c.counters.relays_unserved.load(Ordering::Relaxed),
            "route_shards": c.route_shards(),
            "route_shards_listened": c.route_shards_listened(),
        })
    });
    json_response(
        StatusCode::OK,
        &json!({
            "memory": {"rss_bytes": rss_bytes()},
            "connections": stats.connections,
            "channels": stats.channels,
            "apps": apps,
            "cluster": cluster,
        }),
    )
}
