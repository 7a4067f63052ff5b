//! A private Redis Cluster for tests: 3 masters and 3 replicas of `redis-server` on free ports,
//! their files in a temp dir, created with `redis-cli --cluster create`, killed on drop. A short
//! `cluster-node-timeout` (1 s) makes automatic failover after a killed master take seconds.
//!
//! Nothing here sleeps to wait for a condition: every wait polls with a deadline and panics with
//! what did not happen. It never touches a Redis it did not start.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tempfile_path::TempDir;

/// How long starting the cluster, or a failover, may take before the test fails.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(60);

/// How many times [`RedisCluster::start`] makes a cluster on fresh ports before it gives up.
const START_TRIES: usize = 3;

/// A running Redis Cluster, killed (and its files removed) on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes: port and process (`None` once killed).
    nodes: Vec<(u16, Option<Child>)>,
    /// Every node's files.
    dir: TempDir,
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// `redis-cli -p port args…`, its output; `None` when it fails to run or answer.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `cond` every 50 ms until it holds, or panics with `what` after `timeout`.
fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl RedisCluster {
    /// Starts 6 nodes on free ports, creates the cluster (3 masters with a replica each), and
    /// waits until every node says `cluster_state:ok` and every replica is in sync.
    pub fn start() -> Self {
        // A node can die before the cluster forms (another process took its bus port, +10000,
        // between the check and the bind), and `redis-cli --cluster create` then waits for it
        // forever: so each try is bounded, and a failed one starts again on fresh ports.
        let mut failures = Vec::new();
        for _ in 0..START_TRIES {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("no Redis Cluster after {START_TRIES} tries: {failures:?}");
    }

    /// One try of [`start`](Self::start): the nodes (killed on drop if the try fails), the create
    /// within [`CLUSTER_WAIT`], and a healthy cluster.
    fn try_start() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "vestnik-redis-cluster-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let dir = TempDir(dir);
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        let mut ports = Vec::new();
        for _ in 0..6 {
            let port = free_port(&ports);
            ports.push(port);
            let child = cluster.spawn(port);
            cluster.nodes.push((port, Some(child)));
        }
        for &port in &ports {
            wait(
                &format!("redis-server on port {port}"),
                CLUSTER_WAIT,
                || cli(port, &["PING"]).is_some_and(|o| o.trim() == "PONG"),
            );
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        let deadline = Instant::now() + CLUSTER_WAIT;
        let created = loop {
            if let Some(status) = create.try_wait().expect("wait for redis-cli") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = create.kill();
                let _ = create.wait();
                let live = ports
                    .iter()
                    .filter(|&&p| cli(p, &["PING"]).is_some_and(|o| o.trim() == "PONG"))
                    .count();
                return Err(format!(
                    "redis-cli --cluster create did not finish within {CLUSTER_WAIT:?} \
                     ({live} of 6 nodes answer)"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !created.success() {
            return Err(format!("redis-cli --cluster create failed: {created}"));
        }
        cluster.wait_healthy(6);
        Ok(cluster)
    }

    /// Starts one node on `port`, its files in the temp dir.
    fn spawn(&self, port: u16) -> Child {
        let conf: PathBuf = self.dir.0.join(format!("nodes-{port}.conf"));
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--dir")
            .arg(&self.dir.0)
            .args(["--save", "", "--appendonly", "no"])
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (is Redis installed?)")
    }

    /// Waits until every live node says `cluster_state:ok`, the live masters number 3 and own all
    /// slots, and each live replica's link to its master is up (`live` nodes in all).
    fn wait_healthy(&self, live: usize) {
        wait("a healthy Redis Cluster", CLUSTER_WAIT, || {
            let ports = self.live_ports();
            if ports.len() != live {
                return false;
            }
            ports.iter().all(|&port| {
                let ok =
                    cli(port, &["CLUSTER", "INFO"]).is_some_and(|o| o.contains("cluster_state:ok"));
                let replication = cli(port, &["INFO", "replication"]).unwrap_or_default();
                let synced = replication.contains("role:master")
                    || (replication.contains("master_link_status:up")
                        && replication.contains("master_sync_in_progress:0"));
                ok && synced
            }) && self.masters().len() == 3
        });
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
            .collect()
    }

    /// The seed list URL: `redis+cluster://127.0.0.1:p,…` (every node, killed ones included,
    /// as a configuration written before a failure would name them).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The live masters as a live node sees them: `(port, slot ranges)`.
    fn masters(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let Some(port) = self.live_ports().first().copied() else {
            return Vec::new();
        };
        let nodes = cli(port, &["CLUSTER", "NODES"]).unwrap_or_default();
        let mut out = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                continue;
            }
            let flags = fields[2];
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let Some(port) = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
            else {
                continue;
            };
            let ranges: Vec<(u16, u16)> = fields[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            if !ranges.is_empty() {
                out.push((port, ranges));
            }
        }
        out
    }

    /// The port of the live master owning `slot`.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|(port, _)| port)
            .unwrap_or_else(|| panic!("no live master owns slot {slot}"))
    }

    /// The hash slot of `key` (or sharded channel), as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        cli(port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|o| o.trim().parse().ok())
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key} failed"))
    }

    /// The ports of the live masters.
    pub fn master_ports(&self) -> Vec<u16> {
        self.masters().into_iter().map(|(port, _)| port).collect()
    }

    /// Hands `slot` (which must hold no key) from its master to the master on `to`, the way a
    /// resharding ends (`CLUSTER SETSLOT slot NODE id` on both, then on the other masters), and
    /// waits until the cluster names `to` as the owner.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let id = cli(to, &["CLUSTER", "MYID"])
            .map(|o| o.trim().to_owned())
            .unwrap_or_else(|| panic!("CLUSTER MYID on {to} failed"));
        let from = self.master_of_slot(slot);
        let slot = slot.to_string();
        let mut order = vec![to, from];
        // SETSLOT is for masters only; replicas learn the new owner from their masters.
        order.extend(
            self.master_ports()
                .into_iter()
                .filter(|p| *p != to && *p != from),
        );
        for port in order {
            let out = cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &id]).unwrap_or_default();
            assert!(
                out.trim() == "OK",
                "CLUSTER SETSLOT {slot} on {port}: {out}"
            );
        }
        let slot: u16 = slot.parse().expect("a slot");
        wait("the slot to move", CLUSTER_WAIT, || {
            self.master_of_slot(slot) == to
        });
    }

    /// Kills the node on `port` with SIGKILL (it stays down).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        if let Some(mut child) = node.1.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the cluster has failed over from the killed nodes: every live node says
    /// `cluster_state:ok`, and 3 live masters own all slots.
    pub fn wait_failover(&self) {
        let live = self.live_ports().len();
        wait("the Redis Cluster to fail over", CLUSTER_WAIT, || {
            let ports = self.live_ports();
            let masters = self.masters();
            let owned: u32 = masters
                .iter()
                .flat_map(|(_, r)| r.iter())
                .map(|&(a, b)| u32::from(b - a) + 1)
                .sum();
            ports.len() == live
                && masters.len() == 3
                && masters.iter().all(|(p, _)| ports.contains(p))
                && owned == 16_384
                && ports.iter().all(|&port| {
                    cli(port, &["CLUSTER", "INFO"]).is_some_and(|o| o.contains("cluster_state:ok"))
                })
        });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
