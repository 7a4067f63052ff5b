//! The processes a chaos run owns: its own backbone (`redis-server` or `nats-server -js`) and the
//! broker nodes, each started with the config file the run wrote, on ports the run chose, so a
//! restart comes back on the same address.
//!
//! Every process here was started by this module and is signalled by its own pid only; the shared
//! services of the machine (the usual Redis and NATS ports) are never touched. Readings (`/metrics`,
//! `/ready`, `/proc`) only read.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::header::HOST;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest wait for one HTTP GET (metrics, readiness, user lists).
const GET_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a process to listen or a node to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A free loopback port (bound and released: the process started next binds it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("finding a free port")?
        .local_addr()?
        .port())
}

/// Which backbone joins the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    /// `redis-server`, pub/sub.
    Redis,
    /// `nats-server -js`.
    Nats,
}

impl Backbone {
    /// The broker's `--adapter` value.
    pub fn adapter(self) -> &'static str {
        match self {
            Backbone::Redis => "redis",
            Backbone::Nats => "nats",
        }
    }

    /// The URL a node gets for a backbone (or its proxy) at `addr`.
    pub fn url(self, addr: SocketAddr) -> String {
        match self {
            Backbone::Redis => format!("redis://{addr}"),
            Backbone::Nats => format!("nats://{addr}"),
        }
    }
}

/// A backbone server owned by the run.
#[derive(Debug)]
pub struct BackboneProc {
    kind: Backbone,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl BackboneProc {
    /// Starts `kind` on a free port, its files under `dir`.
    pub async fn start(kind: Backbone, dir: &Path) -> Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut me = Self {
            kind,
            addr,
            dir: dir.to_owned(),
            child: None,
        };
        me.restart().await?;
        Ok(me)
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<()> {
        let port = self.addr.port().to_string();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("backbone.log"))?;
        let mut cmd = match self.kind {
            Backbone::Redis => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c.current_dir(&self.dir);
                c
            }
            Backbone::Nats => {
                let mut c = Command::new("nats-server");
                let store = self.dir.join("jetstream");
                c.args(["-js", "-a", "127.0.0.1", "-p", &port, "--store_dir"]);
                c.arg(store);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {:?} (is it installed?)", self.kind))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(self.addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("{:?} did not listen on {} in time", self.kind, self.addr);
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        Ok(())
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BackboneProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How nodes are started.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The broker binary.
    pub bin: PathBuf,
    /// The config file the run wrote.
    pub config: PathBuf,
    /// The backbone kind.
    pub backbone: Backbone,
}

/// One broker node owned by the run.
#[derive(Debug)]
pub struct NodeProc {
    /// Node index.
    pub index: usize,
    /// WebSocket and API address.
    pub addr: SocketAddr,
    /// Metrics listener.
    pub metrics: SocketAddr,
    /// The backbone address it is given (its proxy).
    pub backbone: SocketAddr,
    dir: PathBuf,
    spec: NodeSpec,
    child: Option<Child>,
    /// Processes started for this node so far.
    pub incarnations: u32,
}

impl NodeProc {
    /// Starts node `index` and waits until it is ready.
    pub async fn start(
        index: usize,
        spec: &NodeSpec,
        backbone: SocketAddr,
        dir: &Path,
    ) -> Result<Self> {
        let mut me = Self {
            index,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            metrics: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            backbone,
            dir: dir.join(format!("node{index}")),
            spec: spec.clone(),
            child: None,
            incarnations: 0,
        };
        std::fs::create_dir_all(&me.dir)?;
        me.restart().await?;
        Ok(me)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the node (again) on the same ports and waits for `/ready`.
    pub async fn restart(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("vestnik.log"))?;
        let url_flag = match self.spec.backbone {
            Backbone::Redis => "--redis-url",
            Backbone::Nats => "--nats-url",
        };
        let child = Command::new(&self.spec.bin)
            .arg("--config")
            .arg(&self.spec.config)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--metrics-port", &self.metrics.port().to_string()])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--adapter", self.spec.backbone.adapter()])
            .args([url_flag, &self.spec.backbone.url(self.backbone)])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.bin.display()))?;
        self.child = Some(child);
        self.incarnations += 1;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http_get(self.addr, "/ready").await {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "node {} exited at start ({status}); see {}",
                        self.index,
                        self.dir.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} was not ready in time; see {}",
                    self.index,
                    self.dir.display()
                );
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// SIGKILLs the node.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGSTOP (`true`) or SIGCONT (`false`) to the node.
    pub fn pause(&self, stop: bool) -> Result<()> {
        let pid = self.pid().context("the node is not running")?;
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// Stops the node with SIGTERM (its clean drain), waiting for it to end.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(PROBE_EVERY);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node's resident memory and open descriptors, from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub fds: u64,
}

impl Footprint {
    /// Reads `pid` now.
    pub fn read(pid: u32) -> Result<Self> {
        let rss_bytes = crate::procfs::ProcSample::read(pid)?.rss_bytes;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
        Ok(Self { rss_bytes, fds })
    }
}

/// The figures scraped from a node's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    /// `vestnik_adapter_lost_total`.
    pub adapter_lost: u64,
    /// `vestnik_adapter_connected` is 1.
    pub connected: bool,
}

/// Reads the adapter figures from Prometheus text.
pub fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or(name_labels);
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        match name {
            "vestnik_adapter_lost_total" => s.adapter_lost += value as u64,
            "vestnik_adapter_connected" => s.connected = value >= 1.0,
            _ => {}
        }
    }
    s
}

/// GET `path_and_query` from `addr`: status and body.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, String)> {
    tokio::time::timeout(GET_TIMEOUT, async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(path_and_query)
            .header(HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await
    .unwrap_or_else(|_| bail!("GET {path_and_query} from {addr}: no answer in time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_adapter_figures() {
        let text = "# HELP x\n# TYPE vestnik_adapter_lost_total counter\n\
                    vestnik_adapter_lost_total{adapter=\"redis\"} 17\n\
                    vestnik_adapter_connected{adapter=\"redis\"} 1\n\
                    vestnik_adapter_lost_totalx 5\n";
        assert_eq!(
            parse_scrape(text),
            Scrape {
                adapter_lost: 17,
                connected: true
            }
        );
        assert!(!parse_scrape("vestnik_adapter_connected{adapter=\"nats\"} 0\n").connected);
    }
}
