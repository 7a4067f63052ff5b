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
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
