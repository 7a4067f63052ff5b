//! A PostgreSQL server of a test's own: `initdb` and `pg_ctl` on a free port in a temp dir, never
//! the shared one, so a test may stop and start it. Shared by this crate's outage test and the
//! broker's (`crates/vestnik-server/tests`, through `#[path]`), so there is one copy.
//!
//! initdb refuses to run as root, so when the test runs as root the PostgreSQL binaries run as the
//! `postgres` system user through `runuser -u postgres --`, in a temp dir handed to that user.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The newest PostgreSQL's binaries under /usr/lib/postgresql/*/bin.
fn pg_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .expect(cmd);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PostgreSQL cluster in a temp dir, stopped when dropped.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres_user: bool,
}

impl OwnPostgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The command for a PostgreSQL binary, as the postgres user when we are root.
    fn command(&self, tool: &str) -> tokio::process::Command {
        let path = self.bin.join(tool);
        if self.as_postgres_user {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            tokio::process::Command::new(path)
        }
    }

    async fn run(&self, tool: &str, args: &[&str]) {
        let status = self
            .command(tool)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .expect(tool);
        assert!(status.success(), "{tool} {args:?} failed: {status}");
    }

    pub async fn init() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres_user = output("id", &["-u"]) == "0";
        if as_postgres_user {
            let uid: u32 = output("id", &["-u", "postgres"])
                .parse()
                .expect("a postgres user");
            let gid: u32 = output("id", &["-g", "postgres"])
                .parse()
                .expect("a postgres group");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let pg = Self {
            dir,
            bin: pg_bin(),
            port,
            as_postgres_user,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )
        .await;
        pg
    }

    pub async fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path(self.dir.path())
        );
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data()),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .await;
    }

    pub async fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data()), "-m", "fast", "-w", "stop"],
        )
        .await;
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut c = if self.as_postgres_user {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        // Already stopped is fine; a server left running would outlive the test.
        let _ = c
            .args(["-D", path(&data), "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}
