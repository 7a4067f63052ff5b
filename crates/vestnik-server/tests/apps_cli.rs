//! `vestnik apps …` against a real PostgreSQL (issue 15): migrate (idempotent), create with
//! generated credentials, list without secrets, update merging a group, rotate, disable, delete,
//! and a clear error with a non-zero exit for bad input or a missing `--apps-url`.

mod apps_support;
mod common;

use std::process::Output;

use apps_support::TestDb;
use common::bin;
use serde_json::Value;

fn apps(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .arg("apps")
        .args(args)
        .env("VESTNIK_APPS_URL", url)
        .output()
        .expect("vestnik runs")
}

fn json_ok(url: &str, args: &[&str]) -> Value {
    let out = apps(url, args);
    assert!(
        out.status.success(),
        "vestnik apps {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_apps() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    let first = json_ok(&url, &["migrate"]);
    assert_eq!(
        (first["schema_from"].as_i64(), first["schema_to"].as_i64()),
        (Some(0), Some(1))
    );
    let again = json_ok(&url, &["migrate"]);
    assert_eq!(again["schema_from"], again["schema_to"], "idempotent");

    let created = json_ok(&url, &["create", "--limits", r#"{"max_connections": 5}"#]);
    let id = created["id"].as_str().expect("generated id").to_owned();
    let secret = created["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert_eq!(id.len(), 9);
    assert_eq!(created["limits"]["max_connections"], 5);

    // The URL as a flag after the subcommand, as the docs write it.
    let listed = std::process::Command::new(bin())
        .args(["apps", "list", "--apps-url", &url])
        .env_remove("VESTNIK_APPS_URL")
        .output()
        .expect("vestnik runs");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&id) && !text.contains(&secret), "{text}");

    let updated = json_ok(
        &url,
        &["update", &id, "--options", r#"{"watchlist": false}"#],
    );
    assert_eq!(updated["options"]["watchlist"], false);
    assert_eq!(updated["limits"]["max_connections"], 5, "other groups kept");

    let rotated = json_ok(&url, &["rotate-secret", &id, "--grace", "60"]);
    assert_ne!(rotated["secret"], Value::String(secret));
    assert!(rotated["previous_secret_expires_at"].as_u64().is_some());

    assert_eq!(json_ok(&url, &["disable", &id])["enabled"], false);
    assert_eq!(json_ok(&url, &["enable", &id])["enabled"], true);

    // Usage rows, as nodes record them, read back per hour.
    let store = vestnik_apps::open(&url).await.expect("the store");
    let hour = vestnik_apps::Hour::from_unix(1_764_892_800);
    let row = |received| vestnik_apps::UsageRow {
        app_id: id.clone(),
        hour,
        usage: vestnik_apps::Usage {
            messages_received: received,
            ..Default::default()
        },
    };
    store.record_usage(vec![row(2)]).await.expect("recorded");
    store.record_usage(vec![row(3)]).await.expect("recorded");
    let from = hour.unix().to_string();
    let to = hour.next().unix().to_string();
    let usage = json_ok(&url, &["usage", &id, "--from", &from, "--to", &to]);
    assert_eq!(usage["hours"][0]["hour_start"], hour.unix());
    assert_eq!(usage["hours"][0]["messages_received"], 5, "{usage}");
    assert_eq!(
        json_ok(&url, &["delete", &id])["deleted"],
        Value::String(id.clone())
    );

    // Errors: the status and the reason on stderr, a failing exit.
    for (args, expect) in [
        (vec!["show", id.as_str()], "404"),
        (vec!["create", "--limits", "{bad"], "400"),
        (vec!["create", "--id", "a/b"], "422"),
    ] {
        let out = apps(&url, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    let none = std::process::Command::new(bin())
        .args(["apps", "list"])
        .env_remove("VESTNIK_APPS_URL")
        .output()
        .expect("vestnik runs");
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--apps-url"));
}
