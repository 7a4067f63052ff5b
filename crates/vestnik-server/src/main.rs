//! The `vestnik` binary: flags and environment into a [`Config`], then [`server::run`] until a signal.
//!
//! `main` is the only place that uses `anyhow`; everything below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vestnik_server::config::{Config, Draft};
use vestnik_server::{server, shutdown::Shutdown};

/// Vestnik: a self-hosted realtime broker that speaks the Pusher Channels protocol v7 and the signed
/// Pusher HTTP API.
///
/// With no arguments it serves one development app (id `app-id`, key `app-key`, secret `app-secret`)
/// on 0.0.0.0:6001. Settings come from the defaults, then `--config FILE`, then `VESTNIK_*` variables,
/// then flags. Boolean variables take true/false, 1/0, yes/no or on/off. Logs go to stderr; set
/// `RUST_LOG` (for example `RUST_LOG=vestnik=debug`).
#[derive(Debug, Parser)]
#[command(name = "vestnik", version, about, long_about)]
struct Cli {
    /// TOML file with `[server]` settings and any number of `[[apps]]` (see docs/configuration.md).
    #[arg(long, env = "VESTNIK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "VESTNIK_HOST")]
    host: Option<String>,
    /// Port for WebSocket and HTTP API [default: 6001]; 0 picks a free port and logs it.
    #[arg(long, env = "VESTNIK_PORT")]
    port: Option<u16>,
    /// Most sockets on this node; 0 means no cap.
    #[arg(long, env = "VESTNIK_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds of silence before the server pings a socket [default: 120].
    #[arg(long, env = "VESTNIK_ACTIVITY_TIMEOUT")]
    activity_timeout: Option<u64>,
    /// Id of the first app (the default app when there is no config file).
    #[arg(long, env = "VESTNIK_APP_ID")]
    app_id: Option<String>,
    /// Key of the first app.
    #[arg(long, env = "VESTNIK_APP_KEY")]
    app_key: Option<String>,
    /// Secret of the first app.
    #[arg(long, env = "VESTNIK_APP_SECRET")]
    app_secret: Option<String>,
    /// Whether the first app accepts client events (true/false, also 1/0, yes/no, on/off).
    #[arg(long, env = "VESTNIK_CLIENT_EVENTS", value_parser = BoolishValueParser::new())]
    client_events: Option<bool>,
    /// Send every webhook event of the first app to this URL (quick start; see docs/webhooks.md).
    #[arg(long, env = "VESTNIK_WEBHOOK_URL", value_name = "URL")]
    webhook_url: Option<String>,
    /// Port of the Prometheus metrics listener [default: 9601].
    #[arg(long, env = "VESTNIK_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Do not serve metrics.
    #[arg(long, env = "VESTNIK_NO_METRICS", value_parser = BoolishValueParser::new())]
    no_metrics: bool,
    /// Do not serve the debug console at /console.
    #[arg(long, env = "VESTNIK_NO_CONSOLE", value_parser = BoolishValueParser::new())]
    no_console: bool,
    /// Cluster backbone: local (one node), redis or nats.
    #[arg(long, env = "VESTNIK_ADAPTER", value_enum)]
    adapter: Option<vestnik_server::config::AdapterKind>,
    /// Redis URL for --adapter redis [default: redis://127.0.0.1:6379].
    #[arg(long, env = "VESTNIK_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// NATS URL for --adapter nats [default: nats://127.0.0.1:4222].
    #[arg(long, env = "VESTNIK_NATS_URL", value_name = "URL")]
    nats_url: Option<String>,
    /// How long relays are held for the other nodes while the backbone is unreachable, ms; 0
    /// holds nothing [default: 10000].
    #[arg(long, env = "VESTNIK_RELAY_HOLD_MS", value_name = "MS")]
    relay_hold_ms: Option<u64>,
    /// Route shards of interest routing (the same on every node); 0 relays every event to every
    /// node [default: 4096].
    #[arg(long, env = "VESTNIK_ROUTE_SHARDS", value_name = "N")]
    route_shards: Option<u32>,
    /// Directory for durable state: the webhook spool [default: ./vestnik-data].
    #[arg(long, env = "VESTNIK_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of the usage files when apps come from the config file [default: DATA_DIR/usage].
    #[arg(long, env = "VESTNIK_USAGE_DIR", value_name = "DIR")]
    usage_dir: Option<PathBuf>,
    /// Milliseconds between two flushes of usage counts to the ledger [default: 10000].
    #[arg(long, env = "VESTNIK_USAGE_FLUSH_MS", value_name = "MS")]
    usage_flush_ms: Option<u64>,
    /// Milliseconds a drain spreads its 4200 closes over [default: 10000].
    #[arg(long, env = "VESTNIK_DRAIN_WINDOW_MS", value_name = "MS")]
    drain_window_ms: Option<u64>,
    /// Milliseconds between turning unready and the drain's first close [default: 1000].
    #[arg(long, env = "VESTNIK_DRAIN_GRACE_MS", value_name = "MS")]
    drain_grace_ms: Option<u64>,
    /// PEM certificate chain: serve wss:// and https:// on the port (with --tls-key).
    #[arg(long, env = "VESTNIK_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "VESTNIK_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Seconds a client has to send its request headers (upgrade included), and as long again for
    /// a request body [default: 10].
    #[arg(long, env = "VESTNIK_HANDSHAKE_TIMEOUT", value_name = "SECS")]
    handshake_timeout: Option<u64>,
    /// Milliseconds one write to a socket may take before the client counts as stuck and is dropped
    /// (4100) [default: 5000].
    #[arg(long, env = "VESTNIK_WRITE_TIMEOUT_MS", value_name = "MS")]
    write_timeout_ms: Option<u64>,
    /// Seconds a client has to finish the TLS handshake [default: 10].
    #[arg(long, env = "VESTNIK_TLS_HANDSHAKE_TIMEOUT", value_name = "SECS")]
    tls_handshake_timeout: Option<u64>,
    /// Take the client IP from the right-most X-Forwarded-For entry (only behind your own proxy).
    #[arg(long, env = "VESTNIK_TRUST_PROXY", value_parser = BoolishValueParser::new())]
    trust_proxy: bool,
    /// New sockets per client IP per --ip-connection-window; over it: HTTP 429 [default: 0, off].
    #[arg(long, env = "VESTNIK_IP_CONNECTION_RATE", value_name = "N")]
    ip_connection_rate: Option<u32>,
    /// Seconds of the per-IP connection window [default: 60].
    #[arg(long, env = "VESTNIK_IP_CONNECTION_WINDOW", value_name = "SECS")]
    ip_connection_window: Option<u64>,
    /// Signed API requests per second for the first app; over it: 429 [default: 0, off].
    #[arg(long, env = "VESTNIK_API_RATE_LIMIT", value_name = "N")]
    api_rate_limit: Option<u32>,
    /// Most channels one socket of the first app may join [default: 100; 0: no limit].
    #[arg(long, env = "VESTNIK_MAX_CHANNELS_PER_SOCKET", value_name = "N")]
    max_channels_per_socket: Option<usize>,
    /// App database: postgres://… or mysql://… (apps then come from it, live; see docs/apps.md).
    #[arg(long, env = "VESTNIK_APPS_URL", value_name = "URL", global = true)]
    apps_url: Option<String>,
    /// Bearer token of the admin API at /admin/apps; unset, the routes answer 404.
    #[arg(
        long,
        env = "VESTNIK_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Inspect and replay dead-lettered webhooks in the spool of a stopped broker. While the broker
    /// runs, use the signed admin endpoints instead (docs/webhooks.md). The apps and the data dir
    /// come from the configuration: `vestnik --config FILE webhooks …`.
    Webhooks {
        /// The data directory holding the spool [default: the configuration's, ./vestnik-data].
        #[arg(long, env = "VESTNIK_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Manage the apps of an app database (--apps-url): migrate, list, create, update, disable,
    /// enable, rotate-secret, delete. Prints JSON. See docs/apps.md.
    Apps {
        #[command(subcommand)]
        action: vestnik_server::catalogue::cli::AppsAction,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksAction {
    /// Print an app's dead letters as JSON.
    DeadLetters {
        /// The app id.
        app: String,
    },
    /// Queue dead letters for delivery again at the broker's next start.
    Replay {
        /// The app id.
        app: String,
        /// Ids to replay.
        ids: Vec<String>,
        /// Replay every dead letter of the app.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        /// The app id.
        app: String,
        /// Ids to delete.
        ids: Vec<String>,
        /// Delete every dead letter of the app.
        #[arg(long)]
        all: bool,
    },
}

/// Runs a `webhooks` subcommand on the spool of a stopped broker. The data dir is `--data-dir`,
/// else the configuration's; the app must be configured or have records in the spool, so a typo
/// is an error rather than an empty list. Listing opens the spool read-only.
fn webhooks_command(
    config: &Config,
    data_dir: Option<PathBuf>,
    action: WebhooksAction,
) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(|| config.webhooks.data_dir.clone());
    let known = |app: &str, in_spool: &std::collections::BTreeSet<String>| {
        if config.apps.iter().any(|a| a.id == app) || in_spool.contains(app) {
            return Ok(());
        }
        let configured: Vec<&str> = config.apps.iter().map(|a| a.id.as_str()).collect();
        anyhow::bail!(
            "unknown app {app:?}: the configuration has {configured:?} (give --config FILE before \
             the subcommand for yours), and the spool in {} holds nothing of it",
            dir.display()
        )
    };
    let pick = |ids: &[String], all: bool| -> anyhow::Result<Option<Vec<String>>> {
        match (all, ids.is_empty()) {
            (true, _) => Ok(None),
            (false, false) => Ok(Some(ids.to_vec())),
            (false, true) => anyhow::bail!("give dead-letter ids, or --all"),
        }
    };
    let open = || vestnik_webhooks::Spool::open_existing(&dir);
    match action {
        WebhooksAction::DeadLetters { app } => {
            let view = vestnik_webhooks::SpoolView::open(&dir)?;
            known(&app, &view.app_ids()?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&view.dead_letters(&app)?)?
            );
        }
        WebhooksAction::Replay { app, ids, all } => {
            let spool = open()?;
            known(&app, &spool.app_ids()?)?;
            let sel = pick(&ids, all)?;
            let n = spool.replay(&app, sel.as_deref(), vestnik_webhooks::defaults::BATCH_MAX)?;
            println!("replayed {n} dead letter(s); they are sent when the broker starts");
        }
        WebhooksAction::Purge { app, ids, all } => {
            let spool = open()?;
            known(&app, &spool.app_ids()?)?;
            let sel = pick(&ids, all)?;
            println!(
                "purged {} dead letter(s)",
                spool.purge(&app, sel.as_deref())?
            );
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate a config file: unknown keys, bad values and the line where each is. Every bad value is
    /// reported, and the TLS certificate and key are loaded as the server would.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// Which flag or variable gave each value, so that an error names what the user wrote.
struct Origins<'a> {
    matches: &'a ArgMatches,
    command: clap::Command,
}

impl Origins<'_> {
    /// `--flag` or `VESTNIK_VAR`, whichever set the argument `id` (a field name of [`Cli`]).
    fn name(&self, id: &str) -> String {
        let arg = self
            .command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .expect("every recorded id is a field of Cli");
        match (self.matches.value_source(id), arg.get_env()) {
            (Some(ValueSource::EnvVariable), Some(var)) => var.to_string_lossy().into_owned(),
            _ => format!(
                "--{}",
                arg.get_long().expect("every setting has a long flag")
            ),
        }
    }
}

impl Cli {
    /// The configuration: the file (or the defaults), then the variables and flags, checked once.
    fn into_config(self, matches: &ArgMatches) -> anyhow::Result<Config> {
        Ok(self.into_draft(matches)?.finish()?)
    }

    /// The file (or the defaults) with every variable and flag applied, not yet checked.
    fn into_draft(self, matches: &ArgMatches) -> anyhow::Result<Draft> {
        let origins = Origins {
            matches,
            command: Cli::command(),
        };
        let mut draft = match &self.config {
            Some(path) => Draft::from_file(path)?,
            None => Draft::defaults(),
        };
        let mut given = Vec::new();
        let mut note = |id: &str, key: &str| given.push((key.to_owned(), origins.name(id)));
        let config = &mut draft.config;
        if self.no_console {
            config.console.enabled = false;
            note("no_console", "console.enabled");
        }
        let s = &mut config.server;
        if let Some(v) = self.host {
            s.host = v;
            note("host", "server.host");
        }
        if let Some(v) = self.port {
            s.port = v;
            note("port", "server.port");
        }
        if let Some(v) = self.max_connections {
            s.max_connections = v;
            note("max_connections", "server.max_connections");
        }
        if let Some(v) = self.activity_timeout {
            s.activity_timeout = v;
            note("activity_timeout", "server.activity_timeout");
        }
        if let Some(v) = self.metrics_port {
            s.metrics_port = v;
            note("metrics_port", "server.metrics_port");
        }
        if self.no_metrics {
            s.metrics = false;
            note("no_metrics", "server.metrics");
        }
        if let Some(v) = self.drain_window_ms {
            s.drain_window_ms = v;
            note("drain_window_ms", "server.drain_window_ms");
        }
        if let Some(v) = self.drain_grace_ms {
            s.drain_grace_ms = v;
            note("drain_grace_ms", "server.drain_grace_ms");
        }
        if let Some(v) = self.tls_cert {
            s.tls_cert = Some(v);
            note("tls_cert", "server.tls_cert");
        }
        if let Some(v) = self.tls_key {
            s.tls_key = Some(v);
            note("tls_key", "server.tls_key");
        }
        if let Some(v) = self.handshake_timeout {
            s.handshake_timeout = v;
            note("handshake_timeout", "server.handshake_timeout");
        }
        if let Some(v) = self.write_timeout_ms {
            s.write_timeout_ms = v;
            note("write_timeout_ms", "server.write_timeout_ms");
        }
        if let Some(v) = self.tls_handshake_timeout {
            s.tls_handshake_timeout = v;
            note("tls_handshake_timeout", "server.tls_handshake_timeout");
        }
        if self.trust_proxy {
            s.trust_proxy = true;
            note("trust_proxy", "server.trust_proxy");
        }
        if let Some(v) = self.ip_connection_rate {
            s.ip_connection_rate = v;
            note("ip_connection_rate", "server.ip_connection_rate");
        }
        if let Some(v) = self.ip_connection_window {
            s.ip_connection_window = v;
            note("ip_connection_window", "server.ip_connection_window");
        }
        let first = config
            .apps
            .first_mut()
            .expect("Config always holds at least one app");
        if let Some(v) = self.app_id {
            first.id = v;
            note("app_id", "apps.0.id");
        }
        if let Some(v) = self.app_key {
            first.key = v;
            note("app_key", "apps.0.key");
        }
        if let Some(v) = self.app_secret {
            first.secret = v.into();
            note("app_secret", "apps.0.secret");
        }
        if let Some(v) = self.client_events {
            first.client_events = v;
            note("client_events", "apps.0.client_events");
        }
        if let Some(v) = self.api_rate_limit {
            first.api_rate_limit = v;
            note("api_rate_limit", "apps.0.api_rate_limit");
        }
        if let Some(v) = self.max_channels_per_socket {
            first.max_channels_per_socket = v;
            note("max_channels_per_socket", "apps.0.max_channels_per_socket");
        }
        if let Some(url) = self.webhook_url {
            first
                .webhooks
                .push(vestnik_webhooks::WebhookTarget::every_event(url));
            let key = format!("apps.0.webhooks.{}.url", first.webhooks.len() - 1);
            note("webhook_url", &key);
        }
        if let Some(dir) = self.data_dir {
            config.webhooks.data_dir = dir;
            note("data_dir", "webhooks.data_dir");
        }
        if let Some(dir) = self.usage_dir {
            config.usage.data_dir = Some(dir);
            note("usage_dir", "usage.data_dir");
        }
        if let Some(ms) = self.usage_flush_ms {
            config.usage.flush_interval_ms = ms;
            note("usage_flush_ms", "usage.flush_interval_ms");
        }
        if let Some(a) = self.adapter {
            config.cluster.adapter = a;
            note("adapter", "cluster.adapter");
        }
        if let Some(u) = self.redis_url {
            config.cluster.redis_url = u;
            note("redis_url", "cluster.redis_url");
        }
        if let Some(u) = self.nats_url {
            config.cluster.nats_url = u;
            note("nats_url", "cluster.nats_url");
        }
        if let Some(ms) = self.relay_hold_ms {
            config.cluster.relay_hold_ms = ms;
            note("relay_hold_ms", "cluster.relay_hold_ms");
        }
        if let Some(n) = self.route_shards {
            config.cluster.route_shards = n;
            note("route_shards", "cluster.route_shards");
        }
        if let Some(u) = self.apps_url {
            config.apps_url = Some(vestnik_server::config::DatabaseUrl(u));
            note("apps_url", "apps_url");
        }
        if let Some(t) = self.admin_token {
            config.admin.token = Some(t.into());
            note("admin_token", "admin.token");
        }
        for (key, name) in given {
            draft.given(key, name);
        }
        Ok(draft)
    }
}

/// Parses the command line. A bad value that came from a `VESTNIK_*` variable is reported under
/// the variable's name: clap names the flag, which the user never typed.
fn parse_cli() -> (Cli, ArgMatches) {
    let mut command = Cli::command();
    let matches = match command.try_get_matches_from_mut(std::env::args_os()) {
        Ok(m) => m,
        Err(e) => name_the_variable(e, &command).exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

/// `e` naming the variable instead of the flag, when the flag is not on the command line but its
/// variable is set.
fn name_the_variable(mut e: clap::Error, command: &clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let flag = shown
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    let typed = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let var = command
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == flag))
        .and_then(|a| a.get_env())
        .filter(|var| std::env::var_os(var).is_some());
    if let (false, Some(var)) = (typed, var) {
        let name = var.to_string_lossy().into_owned();
        e.insert(ContextKind::InvalidArg, ContextValue::String(name));
    }
    e
}

fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Every socket is a file descriptor, and distributions start processes with a soft limit of 1024:
/// raise it to the hard limit, as servers holding many sockets do, and say what it is.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
}

/// Runs `vestnik apps …` against the app database of `--apps-url` (or the config's `apps_url`).
fn apps_command(
    cli: Cli,
    matches: &ArgMatches,
    action: vestnik_server::catalogue::cli::AppsAction,
) -> ExitCode {
    let url = match cli.into_config(matches).map(|c| c.apps_url) {
        Ok(Some(url)) => url,
        Ok(None) => {
            eprintln!("give the app database: --apps-url postgres://… (or VESTNIK_APPS_URL)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vestnik_server::catalogue::cli::run(url.expose(), action)) {
        Ok(out) => {
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error ({}): {e}", e.status);
            ExitCode::FAILURE
        }
    }
}

/// jemalloc serves the many small, short-lived blocks of a request from a per-thread cache (see
/// Cargo.toml); replaced by dhat's counting allocator under `--features dhat-heap`.
#[cfg(all(not(feature = "dhat-heap"), not(target_env = "msvc")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// With `--features dhat-heap`, every allocation is counted (see the feature in Cargo.toml).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    // Written when it drops, as main returns (a SIGTERM drains and returns too).
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(std::env::var_os("VESTNIK_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into()))
        .build();
    let (mut cli, matches) = parse_cli();
    match cli.command.take() {
        Some(Command::Config {
            action: ConfigAction::Check { file },
        }) => {
            // Also loads the TLS files, as the server will, so a bad PEM is caught here.
            return match Config::check_file(&file) {
                Ok(c) => {
                    println!("{}: OK ({} app(s))", file.display(), c.apps.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Webhooks { data_dir, action }) => {
            let run = cli
                .into_config(&matches)
                .and_then(|config| webhooks_command(&config, data_dir, action));
            return match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Apps { action }) => return apps_command(cli, &matches, action),
        None => {}
    }
    init_logging();
    let config = match cli.into_config(&matches) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        // SIGHUP re-reads the file, the variables and the flags as at start.
        let reload: server::Reload = Box::new(|| {
            let (cli, matches) = parse_cli();
            cli.into_config(&matches)
                .map(|c| c.apps)
                .map_err(|e| format!("{e:#}"))
        });
        server::run_with_reload(config, shutdown, Some(reload)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
