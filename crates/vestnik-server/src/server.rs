//! Binds the listener, serves HTTP/1.1 with upgrades (over TLS when configured) on every accepted
//! socket, and hands shutdown to [`crate::drain`].
//!
//! The node accepts as soon as it is bound, before it has joined its cluster, so that probes get an
//! answer while it starts: `/up` 200, `/ready` 503, upgrades and API calls 503 (an event could not
//! reach the other nodes yet) until it has joined or `join_timeout_ms` passed. One accept loop serves
//! the whole life of the process, starting and draining included, and one shutdown path ends it.
//!
//! Each accepted TCP connection becomes one task on the shutdown tracker: the TLS handshake (bounded
//! by `tls_handshake_timeout`), then one hyper connection (request headers bounded by
//! `handshake_timeout`, so slowloris does not hold sockets). Every request goes to the one
//! [`crate::router`], which decides once whether it is an upgrade, the console, a probe or the API.
//! This module must never hold broker state of its own, and never look into a request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vestnik_webhooks::Webhooks;

use crate::config::Config;
use crate::drain::Service;
use crate::hooks::app_hooks;
use crate::shutdown::Shutdown;
use crate::state::AppState;

/// How often expired cache entries are dropped.
///
/// A cache entry past its TTL is already ignored when read; the purge only frees the memory of
/// channels nobody asks about any more, so once a minute is enough and costs one registry scan.
const CACHE_PURGE_INTERVAL_SECS: u64 = 60;

/// First wait before connecting to an unreachable backbone again at start; doubled after each
/// failure up to [`JOIN_RETRY_MAX`]. A backbone started together with the node (one compose file,
/// one pod) comes up within a second or two, so the first retries are quick.
const JOIN_RETRY_MIN: Duration = Duration::from_millis(100);

/// Longest wait between two connection attempts at start, so a backbone that comes up is found
/// within a second.
const JOIN_RETRY_MAX: Duration = Duration::from_secs(1);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The apps cannot be served.
    #[error("invalid apps: {0}")]
    Apps(#[from] vestnik_broker::app::AppStoreError),
    /// The cluster backbone could not be reached at start.
    #[error("cluster backbone: {0}")]
    Backbone(String),
    /// The webhook spool could not be opened.
    #[error("webhooks: {0}")]
    Webhooks(#[from] vestnik_webhooks::Error),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The app database (`apps_url`) could not be opened, migrated or read at start.
    #[error("app database: {0}")]
    AppsDb(#[from] vestnik_apps::StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds to the configured address.
///
/// Called before the webhook spool or the broker are built, so a port already in use fails the
/// start at once, naming the address.
pub async fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Reads the config file's apps again, for `SIGHUP` (the binary re-reads the file, the variables and
/// the flags exactly as at start).
pub type Reload = Box<dyn Fn() -> Result<Vec<vestnik_broker::App>, String> + Send + Sync>;

/// Runs the broker until `shutdown` triggers, then drains (see [`crate::drain`]) and returns once the
/// process may exit.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServerError> {
    run_with_reload(config, shutdown, None).await
}

/// [`run`], reloading the apps with `reload` on every `SIGHUP` (new apps live at once, removed
/// ones' sockets closed with 4001, disabled ones' with 4003; see [`crate::catalogue::reload`]).
pub async fn run_with_reload(
    config: Config,
    shutdown: Shutdown,
    reload: Option<Reload>,
) -> Result<(), ServerError> {
    let tls = crate::tls::acceptor(&config.server)?;
    let listener = bind(&config).await?;
    // The sender stops only after the sockets are closed, so the last vacates reach the spool.
    let hooks_stop = CancellationToken::new();
    let hooks = app_hooks(&config);
    // With an app database the service always runs: an app created or changed later may add
    // targets. With the config file, only when some app has targets at start.
    let (webhooks, sender) = if hooks.is_empty() && config.apps_url.is_none() {
        (None, None)
    } else {
        let dir = config.webhooks.data_dir.display().to_string();
        let (h, task) = Webhooks::start(hooks, config.webhooks.clone(), hooks_stop.clone())?;
        info!(data_dir = %dir, "webhooks enabled");
        (Some(h), Some(task))
    };
    let cluster_config = config.cluster.clone();
    let metrics_addr = config
        .server
        .metrics
        .then(|| format!("{}:{}", config.server.host, config.server.metrics_port));
    let state = AppState::build(config, shutdown, webhooks)?;
    if let Some(addr) = metrics_addr {
        // Metrics are for operators: a port clash is logged loudly but does not stop the broker.
        match (crate::metrics::install(), TcpListener::bind(&addr).await) {
            (Some(handle), Ok(listener)) => {
                tokio::spawn(crate::metrics::serve(listener, handle, state.clone()));
            }
            (_, Err(e)) => warn!("metrics not served: cannot listen on {addr}: {e}"),
            (None, Ok(_)) => {}
        }
    }
    if let Some(url) = state.config.apps_url.clone() {
        // The node serves only once it knows the database's apps: never a guessed set.
        // After the metrics recorder is installed, so its gauge is exported.
        crate::catalogue::open(&state, &url).await?;
    }
    let usage_stop = CancellationToken::new();
    let usage_task = start_usage(&state, usage_stop.clone());
    if let Some(reload) = reload {
        listen_for_reload(state.clone(), reload);
    }
    let acceptor = start_accepting(listener, tls, &state);
    let cluster_stop = CancellationToken::new();
    let cluster_task = join_cluster(&state, &cluster_config, cluster_stop.clone()).await?;
    let cluster = Service {
        stop: cluster_stop,
        task: cluster_task,
    };
    let webhooks = Service {
        stop: hooks_stop,
        task: sender,
    };
    if !state.shutdown.token().is_cancelled() {
        state
            .serving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(addr) = acceptor.addr {
            if state.config.console.enabled {
                info!("console on {}://{addr}/console", acceptor.scheme);
            }
            info!("listening on {}://{addr}", acceptor.scheme);
        }
    }
    state.shutdown.started().await;
    crate::drain::run(&state, cluster, webhooks).await;
    // The sockets are closed: flush the last counts, but never hang the exit on a dead ledger.
    usage_stop.cancel();
    if let Some(task) = usage_task {
        if tokio::time::timeout(USAGE_FINAL_FLUSH, task).await.is_err() {
            warn!("the last usage flush did not finish in time; its counts are lost");
        }
    }
    let _ = acceptor.task.await;
    Ok(())
}

/// How long the exit waits for the last usage flush.
const USAGE_FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Opens the usage ledger (the app database, or the usage files in the data dir) and starts the
/// flusher. Without a writable data dir the node serves on, recording no usage, and says so.
fn start_usage(state: &AppState, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let ledger = match state.apps_db.get() {
        Some(db) => crate::usage::Ledger {
            store: db.clone(),
            shared: true,
        },
        None => match crate::usage::file_ledger(state) {
            Ok(ledger) => ledger,
            Err(e) => {
                warn!("usage not recorded: {e}");
                return None;
            }
        },
    };
    let _ = state.usage_ledger.set(ledger.clone());
    Some(crate::usage::spawn(state, ledger, stop))
}

/// Reloads the apps on every `SIGHUP` until shutdown.
fn listen_for_reload(state: AppState, reload: Reload) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                warn!("SIGHUP reload unavailable: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hup.recv() => {
                        if got.is_none() {
                            break;
                        }
                        match reload() {
                            Ok(apps) => crate::catalogue::reload(&state, apps),
                            Err(e) => warn!("SIGHUP: configuration not reloaded, keeping the old apps: {e}"),
                        }
                    }
                    () = state.shutdown.started() => break,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (state, reload);
}

/// Connects the configured backbone and joins the cluster, waiting until this node has heard the
/// others, so it is fully part of the cluster when it serves sockets. An unreachable backbone is
/// tried again until `join_timeout_ms`, then stops the node (a misconfigured backbone should fail
/// at boot, not leave the node silently alone); a reachable one that stays quiet only delays
/// serving until then. Returns early, with whatever task it started, once shutdown starts. Returns
/// the cluster task, or `None` for a single node.
pub async fn join_cluster(
    state: &AppState,
    config: &crate::config::ClusterConfig,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServerError> {
    use crate::config::AdapterKind;
    use vestnik_broker::cluster::{new_node_id, ClusterSettings};

    if config.adapter == AdapterKind::Local {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(config.join_timeout_ms);
    let node = new_node_id();
    let adapter = tokio::select! {
        adapter = connect_backbone(config, node, deadline) => adapter?,
        () = state.shutdown.started() => return Ok(None),
    };
    // Set once: join_cluster runs once per process.
    let _ = state.backbone.set(adapter.clone());
    let settings = ClusterSettings {
        heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
        node_timeout: Duration::from_millis(config.node_timeout_ms),
        query_timeout: Duration::from_millis(config.query_timeout_ms),
        route_shards: config.route_shards,
        route_linger: Duration::from_millis(config.route_linger_ms),
    };
    let task = state.broker.join_cluster(
        node,
        adapter,
        settings,
        async move { stop.cancelled().await },
    );
    let handle = tokio::spawn(task);
    let link = state
        .broker
        .cluster()
        .expect("join_cluster sets the cluster link");
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    tokio::select! {
        joined = link.ready(left) => if !joined {
            warn!("the cluster did not answer in time; serving anyway and catching up as it does");
        },
        () = state.shutdown.started() => {}
    }
    Ok(Some(handle))
}

/// Connects the configured adapter, trying again (with a doubling wait) while the backbone cannot be
/// reached, until `deadline`. Configuration errors (URL, prefix) fail at once.
async fn connect_backbone(
    config: &crate::config::ClusterConfig,
    node: vestnik_broker::adapter::NodeId,
    deadline: tokio::time::Instant,
) -> Result<Arc<dyn vestnik_broker::adapter::Adapter>, ServerError> {
    use crate::config::AdapterKind;
    let mut wait = JOIN_RETRY_MIN;
    let mut logged = false;
    let hold = vestnik_broker::adapter::HoldLimits {
        time: Duration::from_millis(config.relay_hold_ms),
        ..Default::default()
    };
    loop {
        let attempt = async {
            match config.adapter {
                AdapterKind::Local => unreachable!("a single node has no backbone"),
                AdapterKind::Redis => {
                    let options = vestnik_redis::RedisOptions {
                        relay_hold: hold,
                        ..Default::default()
                    };
                    vestnik_redis::RedisAdapter::connect_with(
                        &config.redis_url,
                        &config.prefix,
                        node,
                        options,
                    )
                    .await
                    .map(|a| a as Arc<dyn vestnik_broker::adapter::Adapter>)
                    .map_err(|e| {
                        let retry = matches!(
                            e,
                            vestnik_redis::Error::Redis(_) | vestnik_redis::Error::Timeout(_)
                        );
                        (format!("redis: {e}"), retry)
                    })
                }
                AdapterKind::Nats => {
                    let options = vestnik_nats::NatsOptions {
                        relay_hold: hold,
                        ..Default::default()
                    };
                    vestnik_nats::NatsAdapter::connect_with(
                        &config.nats_url,
                        &config.prefix,
                        node,
                        options,
                    )
                    .await
                    .map(|a| a as Arc<dyn vestnik_broker::adapter::Adapter>)
                    .map_err(|e| {
                        let retry = matches!(
                            e,
                            vestnik_nats::Error::Connect(_)
                                | vestnik_nats::Error::Subscribe(_)
                                | vestnik_nats::Error::Timeout(_)
                        );
                        (format!("nats: {e}"), retry)
                    })
                }
            }
        };
        let (error, retry) = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(adapter)) => return Ok(adapter),
            Ok(Err(failure)) => failure,
            Err(_) => ("not connected within join_timeout_ms".to_owned(), false),
        };
        let now = tokio::time::Instant::now();
        if !retry || now + wait >= deadline {
            return Err(ServerError::Backbone(error));
        }
        if !logged {
            warn!("cluster backbone not reachable yet ({error}); retrying until join_timeout_ms, /ready answers 503 meanwhile");
            logged = true;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(JOIN_RETRY_MAX);
    }
}

/// The accept loop, started before the node joins its cluster.
struct Acceptor {
    /// The accept loop; it ends after the drain's `finishing` step.
    task: tokio::task::JoinHandle<()>,
    /// The bound address, for the `listening on` line (the port may have been 0).
    addr: Option<SocketAddr>,
    /// `https` with TLS, else `http`.
    scheme: &'static str,
}

/// Logs what is served and starts the one accept loop (over TLS when `tls` is given). The node is
/// still starting: it answers probes, and refuses upgrades and API calls, until `serving` is set.
fn start_accepting(listener: TcpListener, tls: Option<TlsAcceptor>, state: &AppState) -> Acceptor {
    let addr = listener.local_addr().ok();
    if state.config.apps_url.is_none() && state.config.uses_development_credentials() {
        warn!(
            "!!! DEVELOPMENT CREDENTIALS: an app uses the public secret `app-secret`. Anyone can sign \
             requests for it. Set VESTNIK_APP_SECRET or use --config before exposing this server. !!!"
        );
    }
    // The apps served now: with an app database, its apps rather than the file's.
    for app in state.broker.apps().all() {
        info!(app_id = %app.id, key = %app.key, enabled = app.enabled, "serving app");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let joining = state.config.cluster.adapter != crate::config::AdapterKind::Local;
    match addr {
        // The address ends the line, where tools (and the test kit) read the port.
        Some(addr) if joining => info!(
            "joining the cluster (/ready answers 503 until joined); accepting on {scheme}://{addr}"
        ),
        // A single node serves at once: the address is named once, by `listening on`, in `run`.
        Some(_) => {}
        None => info!("accepting"),
    }
    spawn_cache_purge(state);
    Acceptor {
        task: tokio::spawn(accept_loop(listener, tls, state.clone())),
        addr,
        scheme,
    }
}

/// The node's one accept loop, from before it joins its cluster until the drain is over: every
/// accepted TCP connection gets `TCP_NODELAY` (frames are small and coalesced by the session's
/// writer already) and becomes one task on the shutdown tracker (see [`spawn_connection`]), so the
/// drain waits for it. It keeps accepting while the drain runs, so that `/ready` answers 503 (rather
/// than refusing the probe's connection) and the API keeps working; it stops when the drain's
/// `finishing` step comes. A failed accept (out of descriptors, usually) backs off 50 ms and is
/// logged at most once a second, instead of spinning.
async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, state: AppState) {
    let shutdown = state.shutdown.clone();
    let mut last_accept_warning: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.finishing() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(stream, peer, tls.clone(), state.clone());
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning, and say so
                    // once a second rather than on every attempt.
                    let now = tokio::time::Instant::now();
                    if last_accept_warning.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                        warn!("accept failed: {e} (new connections wait until sockets close)");
                        last_accept_warning = Some(now);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Drops expired cache-channel entries every [`CACHE_PURGE_INTERVAL_SECS`] until the drain is over.
fn spawn_cache_purge(state: &AppState) {
    let broker = state.broker.clone();
    let token = state.shutdown.finish_token().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(CACHE_PURGE_INTERVAL_SECS));
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => broker.purge_expired(),
            }
        }
    });
}

/// Serves one accepted TCP connection as a tracked task: the TLS handshake first when configured
/// (bounded by `tls_handshake_timeout`), then HTTP.
///
/// The TLS handshake runs on the connection's own task, never on the accept loop, so one slow or
/// hostile handshake cannot delay accepting everyone else.
fn spawn_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    state: AppState,
) {
    let tracker = state.shutdown.tracker().clone();
    tracker.spawn(async move {
        let Some(tls) = tls else {
            return serve_http(stream, peer, state).await;
        };
        let timeout = Duration::from_secs(state.config.server.tls_handshake_timeout);
        match tokio::time::timeout(timeout, tls.accept(stream)).await {
            Ok(Ok(stream)) => serve_http(stream, peer, state).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake not finished within {timeout:?}"),
        }
    });
}

/// Serves one HTTP/1.1 connection (plain or TLS) until it ends or the drain is over; then the request
/// in flight finishes and the connection closes.
///
/// Every request on the connection goes to [`crate::router::route`] with the connection's state,
/// shared behind one reference count (an upgrade clones it for its session). Upgrades are enabled on the connection, so a request the router sends to the
/// WebSocket edge can take the socket over after its 101; the session then runs on its own task
/// and outlives this function.
///
/// At `finishing`, `graceful_shutdown` lets the request in flight complete and closes the
/// connection instead of cutting a response in half; idle keep-alive connections close at once.
async fn serve_http<IO>(io: IO, peer: SocketAddr, state: AppState)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = state.shutdown.clone();
    let header_timeout = Duration::from_secs(state.config.server.handshake_timeout);
    // One reference count per request rather than a clone of the whole state (17 of them, up and
    // down): 0.94x the CPU per trigger (docs/benchmarks.md).
    let state = Arc::new(state);
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(crate::router::route(req, &state, peer).await) }
    });
    // Responses are small (`{}` for a trigger): one flattened write costs less than a `writev`
    // of the head and the body.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .writev(false)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, "http connection ended: {e}");
            }
        }
        _ = shutdown.finishing() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
