//! Shared setup for the integration tests: the apps every test can use.
#![allow(dead_code, missing_docs)]

use std::path::Path;
use std::time::Duration;

pub use vestnik_testkit::*;

pub const KEY: &str = "key-main";
pub const SECRET: &str = "secret-main";

/// Apps: a main one, a disabled one, a quota-1 one, one without client events, one that requires
/// sign-in within 1 s, one with an origin list, one with small limits.
pub const APPS: &str = r#"
[[apps]]
id = "main"
key = "key-main"
secret = "secret-main"
client_event_rate = 5

[[apps]]
id = "off"
key = "key-off"
secret = "secret-off"
enabled = false

[[apps]]
id = "quota"
key = "key-quota"
secret = "secret-quota"
max_connections = 1

[[apps]]
id = "noclient"
key = "key-noclient"
secret = "secret-noclient"
client_events = false

[[apps]]
id = "signin"
key = "key-signin"
secret = "secret-signin"
signin_timeout = 1

[[apps]]
id = "origins"
key = "key-origins"
secret = "secret-origins"
allowed_origins = ["https://shop.example"]

[[apps]]
id = "small"
key = "key-small"
secret = "secret-small"
max_presence_members = 2
max_user_info_bytes = 32
max_event_bytes = 100
max_channels_per_trigger = 3
max_batch_events = 2
"#;

/// An app with small abuse limits: 3 signed API calls per second, 2 channels per socket.
pub const LIMITED_APPS: &str = r#"
[[apps]]
id = "limited"
key = "key-limited"
secret = "secret-limited"
api_rate_limit = 3
max_channels_per_socket = 2
"#;

/// The shared Redis the cluster tests use: `$VESTNIK_TEST_REDIS_URL` (scripts/test.sh sets it to
/// the one it found or started), else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("VESTNIK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Panics with a clear message when the shared Redis ([`redis_url`]) is not running (for a
/// Redis Cluster URL, its first seed).
pub fn require_redis() {
    let url = redis_url();
    let address = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit('@').next())
        // A cluster's seed list (`redis+cluster://h:p,h:p`): the first seed.
        .map(|rest| {
            let rest = rest.split('/').next().unwrap_or(rest);
            rest.split(',').next().unwrap_or(rest).to_owned()
        })
        .unwrap_or_default();
    if std::net::TcpStream::connect(&address).is_err() {
        panic!(
            "this test needs Redis at {url}: start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, \
             or set VESTNIK_TEST_REDIS_URL to another (scripts/test.sh does both)"
        );
    }
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vestnik"))
}

pub fn spawn() -> BrokerProcess {
    BrokerProcess::spawn(bin(), APPS)
}

pub fn spawn_with_server(server: &str) -> BrokerProcess {
    BrokerProcess::spawn(bin(), &format!("[server]\n{server}\n{APPS}"))
}

pub fn api(b: &BrokerProcess) -> Api {
    Api::new(b.port, "main", KEY, SECRET)
}

/// The metrics port the broker logged (start it with `metrics_port = 0`).
pub async fn metrics_port(b: &BrokerProcess) -> u16 {
    let mut seen = b.startup_logs().to_vec();
    for _ in 0..250 {
        seen.extend(b.drain_logs());
        if let Some(line) = seen.iter().find(|l| l.contains("metrics on http://")) {
            let rest = line.split("metrics on http://").nth(1).unwrap();
            let port = rest.split('/').next().unwrap().rsplit(':').next().unwrap();
            return port.parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no metrics line in the log: {seen:?}");
}

/// One scrape of `/metrics` on `port`, asserting it answers 200.
pub async fn scrape(port: u16) -> String {
    let r = raw_http(port, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The value of the first sample of `family` whose labels include every one of `labels` (each
/// written `name="value"`), in any order; `None` when there is none.
pub fn sample(body: &str, family: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (name, rest) = l.split_once(['{', ' ']).unwrap_or((l, ""));
            name == family && labels.iter().all(|label| rest.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The value of the first sample of `series` in a Prometheus scrape.
pub fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
}
