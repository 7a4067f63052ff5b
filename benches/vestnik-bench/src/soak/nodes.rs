//! The broker nodes a soak run owns: one alone, or N joined by the run's own `redis-server` or
//! `nats-server` on a free port (never the machine's shared backbone). Each node gets the config
//! file the run wrote, its own ports and data directory, and its log under the run's directory.
//!
//! Processes are started here and stopped by their own pid only.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use crate::chaos::procs::{free_port, http_get, Backbone};
use crate::target::App;

/// Longest wait for a node to answer `/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for a node's clean exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One broker node of the run.
#[derive(Debug)]
pub struct SoakNode {
    /// Node index.
    pub index: usize,
    /// WebSocket and API address.
    pub addr: SocketAddr,
    /// Metrics listener.
    pub metrics: SocketAddr,
    /// Its process id.
    pub pid: u32,
    child: Child,
}

impl SoakNode {
    /// Starts node `index` with `config`, on `backbone` when given, and waits for `/ready`.
    pub async fn start(
        index: usize,
        bin: &Path,
        config: &Path,
        backbone: Option<(Backbone, SocketAddr)>,
        dir: &Path,
    ) -> Result<Self> {
        let dir = dir.join(format!("node{index}"));
        std::fs::create_dir_all(&dir)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = File::create(dir.join("vestnik.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--metrics-port", &metrics.port().to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"));
        if let Some((kind, at)) = backbone {
            let url_flag = match kind {
                Backbone::Redis => "--redis-url",
                Backbone::Nats => "--nats-url",
            };
            cmd.args(["--adapter", kind.adapter()])
                .args([url_flag, &kind.url(at)]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http_get(addr, "/ready").await {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "node {index} exited at start ({status}); see {}",
                    dir.display()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("node {index} was not ready in time; see {}", dir.display());
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        Ok(Self {
            index,
            addr,
            metrics,
            pid: child.id(),
            child,
        })
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the node with SIGTERM (its drain), then SIGKILL if it outlasts [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(PROBE_EVERY);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SoakNode {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes the nodes' config: one app with client events on; the cluster on its own prefix.
pub fn write_config(dir: &Path, app: &App) -> Result<PathBuf> {
    let text = format!(
        r#"# Written by vestnik-bench soak.
[[apps]]
id = "{id}"
key = "{key}"
secret = "{secret}"
client_events = true
max_presence_members = 1000

[cluster]
prefix = "soak"
"#,
        id = app.id,
        key = app.key,
        secret = app.secret,
    );
    let path = dir.join("vestnik.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
