//! The shop's settings, from flags or environment variables, with defaults that match a local
//! Vestnik started with no config (`127.0.0.1:6001`, app `app-id` / `app-key` / `app-secret`).
//!
//! Point the `PUSHER_*` variables at Pusher or any compatible broker and nothing else changes. This
//! module only parses: it never opens a file or a socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use vestnik_sdk::{Config, Scheme};

use crate::limits::OUTBOX_GIVE_UP_SECS;

/// Where the database goes by default, relative to the working directory: a data directory that
/// `.gitignore` lists, as the broker's `vestnik-data/`.
pub const DEFAULT_DATABASE: &str = "order-tracking-data/shop.sqlite3";

/// Settings of the order-tracking shop.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "order-tracking",
    about = "Vestnik's showcase order-tracking shop"
)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free one and logs it).
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// The SQLite file (created with its directory, and migrated, on start). The default sits in a
    /// data directory the repository ignores, so a shop run from a checkout leaves it clean.
    #[arg(long, env = "SHOP_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: PathBuf,
    /// The URL customers and partners reach the shop at (order permalinks, tracking URLs). Defaults
    /// to `http://{listen}` once bound.
    #[arg(long, env = "SHOP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Broker API scheme: http or https.
    #[arg(long, env = "PUSHER_SCHEME", default_value = "http", value_parser = parse_scheme)]
    pub pusher_scheme: Scheme,
    /// Broker API host (Pusher: `api-{cluster}.pusher.com`).
    #[arg(long, env = "PUSHER_HOST", default_value = "127.0.0.1")]
    pub pusher_host: String,
    /// Broker API port.
    #[arg(long, env = "PUSHER_PORT", default_value_t = 6001)]
    pub pusher_port: u16,
    /// The app id.
    #[arg(long, env = "PUSHER_APP_ID", default_value = "app-id")]
    pub pusher_app_id: String,
    /// The app key (sent to browsers).
    #[arg(long, env = "PUSHER_KEY", default_value = "app-key")]
    pub pusher_key: String,
    /// The app secret (never sent anywhere).
    #[arg(
        long,
        env = "PUSHER_SECRET",
        default_value = "app-secret",
        hide_env_values = true
    )]
    pub pusher_secret: String,
    /// WebSocket host for browsers, when it differs from the API host (e.g. behind a proxy). With
    /// `PUSHER_CLUSTER` and no WS host, pusher-js picks Pusher's own hosts.
    #[arg(long, env = "PUSHER_WS_HOST")]
    pub pusher_ws_host: Option<String>,
    /// WebSocket port for browsers; defaults to the API port.
    #[arg(long, env = "PUSHER_WS_PORT")]
    pub pusher_ws_port: Option<u16>,
    /// Pusher cluster (e.g. `eu`), for pusher-js against hosted Pusher.
    #[arg(long, env = "PUSHER_CLUSTER", default_value = "mt1")]
    pub pusher_cluster: String,
    /// HTTP Basic login of the inSales-shaped admin API.
    #[arg(long, env = "SHOP_ADMIN_LOGIN", default_value = "shop-app")]
    pub admin_login: String,
    /// HTTP Basic password of the admin API.
    #[arg(
        long,
        env = "SHOP_ADMIN_PASSWORD",
        default_value = "shop-admin-password",
        hide_env_values = true
    )]
    pub admin_password: String,
    /// The shared secret the mobile app's server sends (`Authorization: Bearer …` or a body `key`).
    #[arg(
        long,
        env = "SHOP_MOBILE_SECRET",
        default_value = "mobile-secret",
        hide_env_values = true
    )]
    pub mobile_secret: String,
    /// Partners that get order webhooks: `partner_id|base_url|api_key[|ucp_version]`, comma
    /// separated. `self` as base URL means this shop's own demo receiver. Empty: no partner.
    #[arg(
        long,
        env = "SHOP_PARTNERS",
        default_value = "demo-partner|self|demo-partner-key|2026-01-23"
    )]
    pub partners: String,
    /// The demo partner receiver's keys, one per partner id: `partner_id|api_key`, comma
    /// separated. A key opens only its own partner's path; an id not listed gets 404.
    #[arg(
        long,
        env = "SHOP_PARTNER_RECEIVER_KEYS",
        default_value = "demo-partner|demo-partner-key",
        hide_env_values = true
    )]
    pub partner_receiver_keys: String,
    /// How long the outbox keeps retrying a row, in seconds from its commit, before parking it as
    /// failed with its last error (order-specs §6.2: give up after 24 hours).
    #[arg(long, env = "SHOP_OUTBOX_GIVE_UP_SECS", default_value_t = OUTBOX_GIVE_UP_SECS)]
    pub outbox_give_up_secs: u64,
    /// The TLS settings for `https://` partners. `None` (the only value flags can give) trusts the
    /// Mozilla roots (webpki-roots); embedders and tests set it to trust a private CA.
    #[arg(skip)]
    pub partner_tls: Option<rustls::ClientConfig>,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    Scheme::parse(s).ok_or_else(|| format!("scheme must be http or https, not {s:?}"))
}

/// One configured partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerSetting {
    /// The path segment the partner knows itself by.
    pub partner_id: String,
    /// Where to POST, without the `/webhooks/…` path; `self` for the demo receiver.
    pub base_url: String,
    /// The API key sent in `X-Goog-Api-Key`.
    pub api_key: String,
    /// The UCP version of the body.
    pub ucp_version: String,
}

impl Settings {
    /// Settings with every default, as if started with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["order-tracking"])
    }

    /// The SDK config for the broker.
    pub fn broker(&self) -> Config {
        Config {
            scheme: self.pusher_scheme,
            host: self.pusher_host.clone(),
            port: self.pusher_port,
            app_id: self.pusher_app_id.clone(),
            key: self.pusher_key.clone(),
            secret: self.pusher_secret.clone(),
            ..Config::local(&self.pusher_app_id, &self.pusher_key, &self.pusher_secret)
        }
    }

    /// The demo receiver's `(partner_id, api_key)` pairs.
    pub fn receiver_keys(&self) -> Result<Vec<(String, String)>, String> {
        self.partner_receiver_keys
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('|') {
                Some((id, key)) if !id.trim().is_empty() && !key.trim().is_empty() => {
                    Ok((id.trim().to_owned(), key.trim().to_owned()))
                }
                _ => Err(format!("receiver key {p:?} must be partner_id|api_key")),
            })
            .collect()
    }

    /// The configured partners.
    pub fn partner_list(&self) -> Result<Vec<PartnerSetting>, String> {
        self.partners
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let parts: Vec<&str> = p.split('|').map(str::trim).collect();
                match parts.as_slice() {
                    [id, url, key] | [id, url, key, _] if !id.is_empty() && !key.is_empty() => {
                        Ok(PartnerSetting {
                            partner_id: (*id).into(),
                            base_url: (*url).trim_end_matches('/').into(),
                            api_key: (*key).into(),
                            ucp_version: parts.get(3).copied().unwrap_or("2026-01-23").into(),
                        })
                    }
                    _ => Err(format!(
                        "partner {p:?} must be partner_id|base_url|api_key[|ucp_version]"
                    )),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_a_local_vestnik() {
        let s = Settings::defaults();
        let b = s.broker();
        assert_eq!(b.base_url(), "http://127.0.0.1:6001");
        assert_eq!(
            (b.app_id.as_str(), b.key.as_str(), b.secret.as_str()),
            ("app-id", "app-key", "app-secret")
        );
        let partners = s.partner_list().unwrap();
        assert_eq!(partners.len(), 1);
        assert_eq!(partners[0].base_url, "self");
    }

    #[test]
    fn the_default_database_is_ignored_by_git() {
        let s = Settings::defaults();
        assert_eq!(s.database, PathBuf::from(DEFAULT_DATABASE));
        // Run from the repository root, the shop's files must not show in `git status`.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for file in [DEFAULT_DATABASE, "order-tracking-data/shop.sqlite3-wal"] {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["check-ignore", "-q", "--no-index", file])
                .status()
                .expect("git runs");
            assert!(out.success(), "{file} is not ignored by .gitignore");
        }
    }

    #[test]
    fn partners_parse_or_say_why_not() {
        let mut s = Settings::defaults();
        s.partners = "a|http://x/|k, b|http://y|k2|2026-04-08".into();
        let p = s.partner_list().unwrap();
        assert_eq!(p[0].base_url, "http://x");
        assert_eq!(p[0].ucp_version, "2026-01-23");
        assert_eq!(p[1].ucp_version, "2026-04-08");
        s.partners = "only-an-id".into();
        assert!(s
            .partner_list()
            .unwrap_err()
            .contains("partner_id|base_url|api_key"));
        s.partners = String::new();
        assert!(s.partner_list().unwrap().is_empty());
        assert!(Settings::try_parse_from(["order-tracking", "--pusher-scheme", "ftp"]).is_err());
    }

    #[test]
    fn receiver_keys_are_per_partner() {
        let mut s = Settings::defaults();
        assert_eq!(
            s.receiver_keys().unwrap(),
            [("demo-partner".to_owned(), "demo-partner-key".to_owned())]
        );
        assert_eq!(s.outbox_give_up_secs, 24 * 3600);
        s.partner_receiver_keys = "a|k1, b | k2".into();
        assert_eq!(s.receiver_keys().unwrap()[1], ("b".into(), "k2".into()));
        s.partner_receiver_keys = "a|".into();
        assert!(s
            .receiver_keys()
            .unwrap_err()
            .contains("partner_id|api_key"));
    }
}
