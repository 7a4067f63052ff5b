//! Shared setup for the integration tests: the apps every test can use.
#![allow(dead_code, missing_docs)]

use std::path::Path;

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
