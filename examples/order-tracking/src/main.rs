//! `cargo run -p order-tracking`: starts the shop with settings from flags and `SHOP_*` /
//! `PUSHER_*` environment variables, and logs the URL it listens on (tests read that line).
//!
//! The log goes to stderr, coloured only when stderr is a terminal (and `NO_COLOR` is unset): a
//! log redirected to a file or a pipe never carries ANSI escape codes.

use std::io::IsTerminal;

use clap::Parser;
use order_tracking::{start, Running, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let settings = Settings::parse();
    let broker = settings.broker();
    let running = start(settings).await?;
    tracing::info!(broker = %broker.base_url(), app_id = %broker.app_id, "using broker");
    eprintln!("order-tracking listening on {}", running.public_url);
    eprintln!("order-tracking bound to http://{}", running.addr);
    let Running { task, worker, .. } = running;
    tokio::select! {
        r = task => { r??; }
        _ = tokio::signal::ctrl_c() => { tracing::info!("stopping"); }
    }
    worker.abort();
    Ok(())
}
