//! A PostgreSQL of the test's own (initdb + pg_ctl on a free port in a temp dir; the shared server
//! is never touched) is stopped while a feed follows it: the feed reports down and keeps its
//! snapshot, and after a restart it reconnects, resyncs, and sees changes again.
//!
//! initdb refuses to run as root, so when the test runs as root it runs the PostgreSQL binaries as
//! the `postgres` system user through `runuser -u postgres --`, in a temp dir handed to that user.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, next_change};
use sqlx::Connection;
use vestnik_apps::{Catalogue, Change, FeedOptions, FeedState, NewApp, Secret};

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
struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
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

    async fn init() -> Self {
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

    async fn start(&self) {
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

    async fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data()), "-m", "fast", "-w", "stop"],
        )
        .await;
    }

    fn url(&self) -> String {
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

async fn raw(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::Executor::execute(&mut c, sql).await.expect(sql);
    c.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_survives_a_postgres_restart() {
    let pg = OwnPostgres::init().await;
    pg.start().await;
    let store = vestnik_apps::PgStore::connect(&pg.url())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
        .create(NewApp {
            id: Some("1001".into()),
            key: Some("k1".into()),
            secret: Some(Secret::new("first-secret")),
            ..NewApp::generated()
        })
        .await
        .expect("create");
    let mut feed = store
        .watch(FeedOptions {
            refresh_interval: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            ..FeedOptions::default()
        })
        .await
        .expect("watch");
    let before = feed.snapshot();
    assert_eq!(before.apps.len(), 1);

    pg.stop().await;
    let mut states = feed.state_changes();
    tokio::time::timeout(
        Duration::from_secs(10),
        states.wait_for(|s| matches!(s, FeedState::Down { .. })),
    )
    .await
    .expect("the feed reports down within 10 s")
    .expect("feed running");
    // Down, it keeps serving what it knew.
    let during = feed.snapshot();
    assert_eq!(during.apps, before.apps);
    assert_eq!(during.revision, before.revision);
    let unreachable = store.show("1001").await.unwrap_err();
    assert_eq!(unreachable.status(), 503);
    assert!(feed.try_recv().is_none(), "an outage is not a deletion");

    pg.start().await;
    // A change made as soon as the database is back, possibly before the feed reconnects: the
    // resync (or the notification) brings it.
    raw(
        &pg.url(),
        "UPDATE vestnik_apps SET api_rate_limit = 5 WHERE id = '1001'",
    )
    .await;
    tokio::time::timeout(
        Duration::from_secs(15),
        states.wait_for(|s| *s == FeedState::Up),
    )
    .await
    .expect("the feed reconnects within 15 s")
    .expect("feed running");
    eventually(
        Duration::from_secs(5),
        "the change made at the restart",
        || {
            let limit = feed.snapshot().apps[0].limits.api_rate_limit;
            async move { limit == 5 }
        },
    )
    .await;
    while feed.try_recv().is_some() {}

    // And a change after the reconnect arrives through LISTEN again, within a second.
    raw(
        &pg.url(),
        "UPDATE vestnik_apps SET api_rate_limit = 6 WHERE id = '1001'",
    )
    .await;
    match next_change(&mut feed, Duration::from_secs(1)).await {
        Change::Upsert(app) => assert_eq!(app.limits.api_rate_limit, 6),
        other => panic!("expected an upsert, got {other:?}"),
    }
    drop(feed);
    drop(store);
    pg.stop().await;
}
