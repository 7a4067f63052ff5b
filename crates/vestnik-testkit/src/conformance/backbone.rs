//! [`BackboneServer`]: a private `redis-server` or `nats-server` on a free loopback port, for the
//! conformance cases that must kill, freeze or restart the backbone.
//!
//! This module must never touch a server it did not start: the shared servers of the machine are
//! left alone, and a started server is killed on drop.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Backbone, EVENT_WAIT};

/// Which server a [`BackboneServer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `redis-server` without persistence.
    Redis,
    /// `nats-server`.
    Nats,
}

/// A private `redis-server` or `nats-server` on a free loopback port, for tests that must kill
/// the backbone. Killed when dropped. Never use it on a port somebody else's server may hold.
#[derive(Debug)]
pub struct BackboneServer {
    /// Which server, for its command line and for failure messages.
    kind: ServerKind,
    /// Chosen once and kept across restarts, so adapters reconnect to the same address, as they
    /// would to a real backbone coming back.
    port: u16,
    /// The running process; `None` while stopped (between `stop` and `start` of the restart case).
    child: Option<Child>,
    /// JetStream's store directory (a NATS started by [`nats_jetstream`](Self::nats_jetstream)),
    /// kept across restarts like a real server's disk, removed on drop.
    store_dir: Option<PathBuf>,
}

impl BackboneServer {
    /// Starts a private Redis: `redis-server --port <free> --save '' --appendonly no`. The binary
    /// is `$VESTNIK_REDIS_SERVER` or `redis-server` on the PATH.
    pub fn redis() -> Self {
        Self::spawn(ServerKind::Redis)
    }

    /// Starts a private NATS: `nats-server -p <free>`. The binary is `$VESTNIK_NATS_SERVER`,
    /// `nats-server` on the PATH, or `/usr/sbin/nats-server` (where Debian puts it).
    pub fn nats() -> Self {
        Self::spawn(ServerKind::Nats)
    }

    /// Starts a private NATS with JetStream: `nats-server -js -p <free> -sd <temp dir>`. The
    /// store directory is new, kept across [`stop`](Backbone::stop) and
    /// [`start`](Backbone::start) (a restart keeps what JetStream stored, as a real server's
    /// disk would), and removed on drop.
    pub fn nats_jetstream() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("vestnik-nats-js-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for JetStream");
        Self::spawn_with(ServerKind::Nats, Some(dir))
    }

    /// Picks a free port and starts the server; both constructors go through here.
    fn spawn(kind: ServerKind) -> Self {
        Self::spawn_with(kind, None)
    }

    /// Like [`spawn`](Self::spawn), with JetStream storing in `store_dir` if given.
    fn spawn_with(kind: ServerKind, store_dir: Option<PathBuf>) -> Self {
        let port = free_port();
        let mut server = Self {
            kind,
            port,
            child: None,
            store_dir,
        };
        server.start();
        server
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to connect to it.
    pub fn url(&self) -> String {
        match self.kind {
            ServerKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            ServerKind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, as in a network
    /// partition. Adapters must notice through their own health checks.
    ///
    /// Freezing rather than killing is the harder case: the TCP connections stay up, so only the
    /// adapter's own heartbeat or ping can tell the backbone is gone.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Sends `sig` to this server's own pid only, never by name: other servers on the machine must
    /// not be touched.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// The server's command line. Redis runs without persistence (`--save ''`, no AOF), so a
    /// restart starts empty and writes nothing to the working directory; both bind to loopback
    /// only. Output is discarded: a test reads its state through the adapter, not the server's log.
    fn command(&self) -> Command {
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            ServerKind::Redis => {
                let bin =
                    std::env::var("VESTNIK_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
                let mut cmd = Command::new(bin);
                cmd.args(["--port", &port, "--bind", "127.0.0.1"]).args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                cmd
            }
            ServerKind::Nats => {
                let bin = std::env::var("VESTNIK_NATS_SERVER").unwrap_or_else(|_| {
                    let on_path = Command::new("nats-server")
                        .arg("--version")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok();
                    if on_path {
                        "nats-server".into()
                    } else {
                        "/usr/sbin/nats-server".into()
                    }
                });
                let mut cmd = Command::new(bin);
                cmd.args(["-p", &port, "-a", "127.0.0.1"]);
                if let Some(dir) = &self.store_dir {
                    cmd.arg("-js").arg("-sd").arg(dir);
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }
}

impl Backbone for BackboneServer {
    /// SIGKILL, not a clean shutdown: the case is a backbone that vanishes, and the adapters must
    /// not get a polite goodbye first.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process and waits (bounded by [`EVENT_WAIT`]) until the port accepts a TCP
    /// connection; a server that exits at start fails at once with its status rather than at the
    /// deadline.
    fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{:?} server is already running",
            self.kind
        );
        let hint = match self.kind {
            ServerKind::Redis => "install it with `apt-get install redis-server`",
            ServerKind::Nats => "install it with `apt-get install nats-server`",
        };
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?} server ({e}); {hint}", self.kind));
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{:?} server on port {} exited at start ({status})",
                    self.kind, self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} server did not listen on port {} within {EVENT_WAIT:?}",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for BackboneServer {
    fn drop(&mut self) {
        // A frozen process still dies of SIGKILL.
        self.stop();
        if let Some(dir) = self.store_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A loopback port that was free a moment ago, and never handed out before in this process.
///
/// The kernel may give a port just released to the next `bind` to port 0, so two servers started
/// at once by parallel tests could both be handed it: the second then fails to bind, while its
/// start-up check connects to the first one's server, and its test loses its server when the other
/// test ends. Remembering the ports handed out rules that out within a process. Another process
/// could still take a port before the server binds; on a test machine this is rare.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("the loopback interface has a free port");
        if given.insert(port) {
            return port;
        }
    }
    panic!("no loopback port that this process has not used already");
}
