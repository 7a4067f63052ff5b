//! Support for the tests of apps in a database: a PostgreSQL database per test on the shared
//! server (dropped with the guard), the admin API as a client, and nodes started on it.
#![allow(dead_code, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use sqlx::Connection;
use vestnik_testkit::{raw_http_with, BrokerProcess, HttpResponse};

/// The admin token every node of these tests is given.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// The shared PostgreSQL (trust auth), without a database name.
pub fn pg_server() -> String {
    std::env::var("VESTNIK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
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

/// A database on the shared PostgreSQL for one test, dropped (forcibly) with the guard.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = unique("vestnik_server_apps");
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server()))
            .await
            .expect("the shared PostgreSQL (VESTNIK_TEST_POSTGRES) is reachable");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            url: format!("{}/{name}", pg_server()),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut c) =
                    sqlx::PgConnection::connect(&format!("{}/postgres", pg_server())).await
                {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::Executor::execute(&mut c, sql.as_str()).await;
                }
            });
        })
        .join();
    }
}

/// A node on `apps_url` with the admin token, and `extra_toml` (a `[cluster]` table, say). Its
/// data dir (the webhook spool, which runs with an app database) is a fresh temp dir.
pub fn node(apps_url: &str, extra_toml: &str) -> BrokerProcess {
    let data = std::env::temp_dir().join(unique("vestnik_apps_data"));
    let data = data.display().to_string();
    BrokerProcess::spawn_with(
        crate::common::bin(),
        extra_toml,
        &[
            ("VESTNIK_APPS_URL", apps_url),
            ("VESTNIK_ADMIN_TOKEN", TOKEN),
            ("VESTNIK_NO_METRICS", "true"),
            ("VESTNIK_DATA_DIR", data.as_str()),
        ],
    )
}

/// An admin API call with the test token.
pub async fn admin(port: u16, method: &str, path: &str, body: &str) -> HttpResponse {
    admin_as(port, TOKEN, method, path, body).await
}

/// An admin API call with `token`.
pub async fn admin_as(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    raw_http_with(
        port,
        method,
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", auth.as_str()),
        ],
        body,
    )
    .await
}

/// A string field of an admin reply.
pub fn field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {v}"))
        .to_owned()
}
