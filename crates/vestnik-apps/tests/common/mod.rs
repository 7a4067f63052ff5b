//! Shared test support: a uniquely named database per test on the shared PostgreSQL and MariaDB
//! (dropped when the guard goes, even after a failed assertion), waiting helpers, and the store
//! suite that both databases run.

#![allow(dead_code)]

pub mod own_pg;
pub mod suite;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;
use vestnik_apps::{Change, ChangeFeed};

/// The shared PostgreSQL (trust auth), without a database name.
pub fn pg_server() -> String {
    std::env::var("VESTNIK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The shared MariaDB (root, empty password), without a database name.
pub fn mysql_server() -> String {
    std::env::var("VESTNIK_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database name no other test (or test run) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Which server a [`TestDb`] lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MySql,
}

/// A database created for one test and dropped with the guard.
pub struct TestDb {
    pub server: Server,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn postgres() -> Self {
        let name = unique_name("vestnik_apps_test");
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
            .await
            .expect("the shared PostgreSQL on 127.0.0.1:5432 is reachable");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            server: Server::Postgres,
            url: format!("{}/{name}", pg_server()),
            name,
        }
    }

    pub async fn mysql() -> Self {
        let name = unique_name("vestnik_apps_test");
        let mut admin = sqlx::MySqlConnection::connect(&mysql_server())
            .await
            .expect("the shared MariaDB on 127.0.0.1:3306 is reachable");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            server: Server::MySql,
            url: format!("{}/{name}", mysql_server()),
            name,
        }
    }

    /// Runs one SQL statement as an admin panel would, on its own connection.
    pub async fn raw(&self, sql: &str) {
        match self.server {
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::Executor::execute(&mut c, sql).await.expect(sql);
                c.close().await.ok();
            }
            Server::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::Executor::execute(&mut c, sql).await.expect(sql);
                c.close().await.ok();
            }
        }
    }

    /// Runs one SQL statement and returns whether it failed.
    pub async fn raw_fails(&self, sql: &str) -> bool {
        match self.server {
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::Executor::execute(&mut c, sql).await.is_err()
            }
            Server::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::Executor::execute(&mut c, sql).await.is_err()
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any runtime we may block: use a thread with its own.
        let (server, name) = (self.server, self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match server {
                    Server::Postgres => {
                        let mut c =
                            sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
                                .await?;
                        sqlx::Executor::execute(
                            &mut c,
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                        )
                        .await?;
                    }
                    Server::MySql => {
                        let mut c = sqlx::MySqlConnection::connect(&mysql_server()).await?;
                        // Connections a failed test left open would hold metadata locks: end them.
                        let ids: Vec<i64> = sqlx::query_scalar(
                            "SELECT id FROM information_schema.processlist WHERE db = ?",
                        )
                        .bind(&name)
                        .fetch_all(&mut c)
                        .await?;
                        for id in ids {
                            sqlx::Executor::execute(&mut c, format!("KILL {id}").as_str())
                                .await
                                .ok();
                        }
                        sqlx::Executor::execute(
                            &mut c,
                            format!("DROP DATABASE IF EXISTS {name}").as_str(),
                        )
                        .await?;
                    }
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// The next change, or a panic after `within`.
pub async fn next_change(feed: &mut ChangeFeed, within: Duration) -> Change {
    tokio::time::timeout(within, feed.recv())
        .await
        .unwrap_or_else(|_| panic!("no change within {within:?}"))
        .expect("the feed is running")
}

/// Waits until `check` holds, polling every 20 ms, or panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
