//! The command line: `config check` and `--help`.

mod common;

use std::process::Command;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("vestnik-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_check_accepts_a_good_file_and_points_at_the_bad_line() {
    let good = write(
        "good",
        "[server]\nport = 7000\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n",
    );
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 app(s))"));

    let bad = write(
        "bad",
        "[server]\nport = 7000\n\n[[apps]]\nid = \"1\"\nsecrett = \"s\"\n",
    );
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":6:") && err.contains("secrett"), "{err}");
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}

#[test]
fn help_documents_flags_and_environment() {
    let out = Command::new(common::bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--host",
        "--config",
        "VESTNIK_PORT",
        "VESTNIK_APP_SECRET",
        "--adapter",
        "--webhook-url",
        "--metrics-port",
        "--drain-window-ms",
        "VESTNIK_DRAIN_WINDOW_MS",
        "--tls-cert",
        "--tls-key",
        "--trust-proxy",
        "--ip-connection-rate",
        "--handshake-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn config_check_validates_the_operational_settings() {
    let half_tls = write("half-tls", "[server]\ntls_key = \"/etc/hostname\"\n");
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .arg(&half_tls)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_cert and server.tls_key go together"),
        "{err}"
    );

    let typo = write("drain-typo", "[server]\ndrain_windw_ms = 100\n");
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .arg(&typo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(":2:") && err.contains("drain_windw_ms"),
        "{err}"
    );
    let _ = std::fs::remove_file(half_tls);
    let _ = std::fs::remove_file(typo);
}

#[test]
fn a_certificate_that_is_not_pem_stops_the_broker_with_a_clear_error() {
    let junk = write("junk-cert", "not a certificate\n");
    let out = Command::new(common::bin())
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--no-metrics",
            "--tls-cert",
        ])
        .arg(&junk)
        .arg("--tls-key")
        .arg(&junk)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS: tls_cert") && err.contains("no PEM certificate"),
        "{err}"
    );
    let _ = std::fs::remove_file(junk);
}
