//! The `vestnik` binary: flags and environment into a [`Config`], then [`server::run`] until a signal.
//!
//! `main` is the only place that uses `anyhow`; everything below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vestnik_server::config::Config;
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
    /// Directory for durable state: the webhook spool [default: ./vestnik-data].
    #[arg(long, env = "VESTNIK_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
    /// runs, use the signed admin endpoints instead (docs/webhooks.md).
    Webhooks {
        /// The data directory holding the spool [default: ./vestnik-data].
        #[arg(long, env = "VESTNIK_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: WebhooksAction,
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

fn webhooks_command(data_dir: Option<PathBuf>, action: WebhooksAction) -> anyhow::Result<()> {
    let dir = data_dir.unwrap_or_else(|| PathBuf::from(vestnik_webhooks::defaults::DATA_DIR));
    let spool = vestnik_webhooks::Spool::open(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the spool in {}: {e}. If the broker is running, use the admin endpoints \
             (POST /apps/{{id}}/webhooks/dead_letters/replay) instead.",
            dir.display()
        )
    })?;
    let pick = |ids: &[String], all: bool| -> anyhow::Result<Option<Vec<String>>> {
        match (all, ids.is_empty()) {
            (true, _) => Ok(None),
            (false, false) => Ok(Some(ids.to_vec())),
            (false, true) => anyhow::bail!("give dead-letter ids, or --all"),
        }
    };
    match action {
        WebhooksAction::DeadLetters { app } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&spool.dead_letters(&app)?)?
            );
        }
        WebhooksAction::Replay { app, ids, all } => {
            let sel = pick(&ids, all)?;
            let n = spool.replay(&app, sel.as_deref(), vestnik_webhooks::defaults::BATCH_MAX)?;
            println!("replayed {n} dead letter(s); they are sent when the broker starts");
        }
        WebhooksAction::Purge { app, ids, all } => {
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

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if self.no_console {
            config.console.enabled = false;
        }
        let s = &mut config.server;
        if let Some(v) = self.host {
            s.host = v;
        }
        if let Some(v) = self.port {
            s.port = v;
        }
        if let Some(v) = self.max_connections {
            s.max_connections = v;
        }
        if let Some(v) = self.activity_timeout {
            s.activity_timeout = v;
        }
        if let Some(v) = self.metrics_port {
            s.metrics_port = v;
        }
        if self.no_metrics {
            s.metrics = false;
        }
        if let Some(v) = self.drain_window_ms {
            s.drain_window_ms = v;
        }
        if let Some(v) = self.drain_grace_ms {
            s.drain_grace_ms = v;
        }
        if let Some(v) = self.tls_cert {
            s.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            s.tls_key = Some(v);
        }
        if let Some(v) = self.handshake_timeout {
            s.handshake_timeout = v;
        }
        if let Some(v) = self.write_timeout_ms {
            s.write_timeout_ms = v;
        }
        if let Some(v) = self.tls_handshake_timeout {
            s.tls_handshake_timeout = v;
        }
        if self.trust_proxy {
            s.trust_proxy = true;
        }
        if let Some(v) = self.ip_connection_rate {
            s.ip_connection_rate = v;
        }
        if let Some(v) = self.ip_connection_window {
            s.ip_connection_window = v;
        }
        let first = config
            .apps
            .first_mut()
            .expect("Config always holds at least one app");
        if let Some(v) = self.app_id {
            first.id = v;
        }
        if let Some(v) = self.app_key {
            first.key = v;
        }
        if let Some(v) = self.app_secret {
            first.secret = v.into();
        }
        if let Some(v) = self.client_events {
            first.client_events = v;
        }
        if let Some(v) = self.api_rate_limit {
            first.api_rate_limit = v;
        }
        if let Some(v) = self.max_channels_per_socket {
            first.max_channels_per_socket = v;
        }
        if let Some(url) = self.webhook_url {
            first
                .webhooks
                .push(vestnik_webhooks::WebhookTarget::every_event(url));
        }
        if let Some(dir) = self.data_dir {
            config.webhooks.data_dir = dir;
        }
        if let Some(a) = self.adapter {
            config.cluster.adapter = a;
        }
        if let Some(u) = self.redis_url {
            config.cluster.redis_url = u;
        }
        if let Some(u) = self.nats_url {
            config.cluster.nats_url = u;
        }
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
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

fn main() -> ExitCode {
    let mut cli = Cli::parse();
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
            return match webhooks_command(data_dir, action) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    init_logging();
    let config = match cli.into_config() {
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
        server::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
