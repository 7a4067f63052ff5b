//! Shared setup for the shop's API tests: the shop in-process on a free port with a fresh SQLite
//! file, pointed at the real `vestnik` binary (spawned by the testkit), plus signed-in calls.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use clap::Parser;
use order_tracking::{start, Running, Settings};
use serde_json::{json, Value};
pub use vestnik_testkit::*;

pub const APPS: &str = r#"
[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"
"#;

pub const ALICE: i64 = 1;
pub const BOB: i64 = 2;
pub const VERA: i64 = 3;
pub const MANAGER: i64 = 10;
pub const COURIER: i64 = 20;
pub const OTHER_COURIER: i64 = 21;
pub const ADMIN_AUTH: &str = "Basic c2hvcC1hcHA6c2hvcC1hZG1pbi1wYXNzd29yZA=="; // shop-app:shop-admin-password
pub const MOBILE_SECRET: &str = "mobile-secret";
pub const PARTNER_KEY: &str = "demo-partner-key";

async fn start_shop(broker: &BrokerProcess, dir: &tempfile::TempDir, extra: &[&str]) -> Running {
    start_shop_on(broker, dir, "127.0.0.1:0", extra).await
}

async fn start_shop_on(
    broker: &BrokerProcess,
    dir: &tempfile::TempDir,
    listen: &str,
    extra: &[&str],
) -> Running {
    start_shop_custom(broker, dir, listen, extra, |_| {}).await
}

async fn start_shop_custom(
    broker: &BrokerProcess,
    dir: &tempfile::TempDir,
    listen: &str,
    extra: &[&str],
    customise: impl FnOnce(&mut Settings),
) -> Running {
    let db = dir.path().join("shop.sqlite3");
    let port = broker.port.to_string();
    let mut args = vec![
        "order-tracking",
        "--listen",
        listen,
        "--database",
        db.to_str().unwrap(),
        "--pusher-port",
        &port,
        "--pusher-app-id",
        "shop",
        "--pusher-key",
        "shop-key",
        "--pusher-secret",
        "shop-secret",
    ];
    args.extend_from_slice(extra);
    let mut settings = Settings::try_parse_from(args).expect("valid settings");
    customise(&mut settings);
    start(settings).await.expect("shop starts")
}

pub struct Shop {
    pub running: Running,
    pub broker: BrokerProcess,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// A broker and a shop with the default demo partner (its own receiver).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with extra `--flag value` settings.
    pub async fn start_with(extra: &[&str]) -> Self {
        let broker = BrokerProcess::spawn(&broker_binary(), APPS);
        let dir = tempfile::tempdir().unwrap();
        let running = start_shop(&broker, &dir, extra).await;
        Self {
            running,
            broker,
            _dir: dir,
        }
    }

    /// A shop on `listen` with extra flags and settings that flags cannot give (a TLS config).
    pub async fn start_custom(
        listen: &str,
        extra: &[&str],
        customise: impl FnOnce(&mut Settings),
    ) -> Self {
        let broker = BrokerProcess::spawn(&broker_binary(), APPS);
        let dir = tempfile::tempdir().unwrap();
        let running = start_shop_custom(&broker, &dir, listen, extra, customise).await;
        Self {
            running,
            broker,
            _dir: dir,
        }
    }

    /// A shop whose broker sends it every webhook (`POST /pusher/webhooks`) at once (no batching
    /// wait, no vacate hold). The shop's port is picked first so the broker's config can name it.
    pub async fn start_with_broker_webhooks() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "[webhooks]\ndata_dir = \"{}\"\nbatch_ms = 10\nhold_ms = 0\n{APPS}\n[[apps.webhooks]]\nurl = \"http://127.0.0.1:{port}/pusher/webhooks\"\n",
            dir.path().join("spool").display()
        );
        let broker = BrokerProcess::spawn(&broker_binary(), &config);
        let running = start_shop_on(&broker, &dir, &format!("127.0.0.1:{port}"), &[]).await;
        Self {
            running,
            broker,
            _dir: dir,
        }
    }

    /// Stops the shop abruptly and starts a new one on the same database and broker.
    pub async fn restart(self, extra: &[&str]) -> Self {
        let Shop {
            running,
            broker,
            _dir,
        } = self;
        running.abort();
        let running = start_shop(&broker, &_dir, extra).await;
        Self {
            running,
            broker,
            _dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.running.addr.port()
    }

    /// A request with the given headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        raw_http_with(self.port(), method, path, headers, body).await
    }

    /// A JSON request, signed in as `cookie` when given.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: &Value,
    ) -> HttpResponse {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.call(method, path, &headers, &body).await
    }

    /// A form POST, signed in as `cookie` when given.
    pub async fn form(&self, path: &str, cookie: Option<&str>, body: &str) -> HttpResponse {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        self.call("POST", path, &headers, body).await
    }

    /// An admin API call with HTTP Basic.
    pub async fn admin(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.call(
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", ADMIN_AUTH),
            ],
            &body,
        )
        .await
    }

    /// Signs in a seeded user; returns the `Cookie` header value.
    pub async fn login(&self, user_id: i64) -> String {
        let r = self
            .call(
                "POST",
                "/login",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                &format!("user_id={user_id}"),
            )
            .await;
        assert_eq!(r.status, 303, "login answered {}: {}", r.status, r.body);
        let cookie = r.header("set-cookie").expect("a session cookie");
        cookie.split(';').next().unwrap().to_owned()
    }

    /// A socket subscribed to `private-user-{user}`, authorised through the shop's endpoint.
    pub async fn customer_socket(&self, user_id: i64) -> WsClient {
        let cookie = self.login(user_id).await;
        let mut ws = WsClient::connect(&self.broker.ws_url("shop-key")).await;
        let channel = format!("private-user-{user_id}");
        let r = self
            .call(
                "POST",
                "/pusher/auth",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Cookie", &cookie),
                ],
                &format!("socket_id={}&channel_name={channel}", ws.socket_id),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let ok = ws
            .subscribe(json!({"channel": channel, "auth": r.json["auth"]}))
            .await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        ws
    }

    /// Runs a query on the shop's database.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> T {
        self.running
            .state
            .db
            .run(move |c| Ok(f(c)?))
            .await
            .expect("query runs")
    }
}

/// The `data` of a Pusher frame, decoded.
pub fn data(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("JSON data")
}

/// Waits up to `timeout` for `f` to return `Some`.
/// A free local port (bound, read, released), for a shop whose address must be known before it
/// starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
