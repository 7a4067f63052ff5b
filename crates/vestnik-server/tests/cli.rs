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

/// `vestnik config check FILE`: exit status and stderr.
fn check(file: &std::path::Path) -> (bool, String) {
    let out = Command::new(common::bin())
        .args(["config", "check"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed EC certificate and its key, made with openssl in `dir`.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed (scripts/test.sh)");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

#[test]
fn config_check_loads_the_tls_files_like_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "a");
    let (_, other_key) = self_signed(dir.path(), "b");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let file = |cert: &std::path::Path, key: &std::path::Path| {
        let p = dir.path().join("vestnik.toml");
        std::fs::write(
            &p,
            format!(
                "[server]\nport = 7000\ntls_cert = {:?}\ntls_key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
        p
    };
    let (ok, err) = check(&file(&cert, &key));
    assert!(ok, "a good pair passes: {err}");

    let (ok, err) = check(&file(&junk, &key));
    assert!(
        !ok && err.contains(":3:")
            && err.contains("tls_cert")
            && err.contains("no PEM certificate"),
        "{err}"
    );
    let (ok, err) = check(&file(&cert, &junk));
    assert!(
        !ok && err.contains(":4:") && err.contains("tls_key") && err.contains("PEM private key"),
        "{err}"
    );
    let (ok, err) = check(&file(&cert, &other_key));
    assert!(
        !ok && err.contains(":3:") && err.contains("do not make a usable pair"),
        "{err}"
    );
}

#[test]
fn config_check_reports_every_bad_value_on_its_line() {
    let bad = write(
        "many-bad",
        "[server]\n\
         host = \"0.0.0.0:6001\"\n\
         port = 7000\n\
         metrics_port = 7000\n\
         handshake_timeout = 0\n\
         \n\
         [[apps]]\n\
         id = \"1\"\n\
         key = \"k\"\n\
         secret = \"s\"\n\
         \n\
         [[apps]]\n\
         id = \"2\"\n\
         key = \"k2\"\n\
         secret = \"s2\"\n\
         max_batch_events = 0\n\
         \n\
         [webhooks]\n\
         batch_max = 500\n",
    );
    let (ok, err) = check(&bad);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        (":2:", "server.host"),
        (":4:", "server.metrics_port"),
        (":5:", "server.handshake_timeout"),
        (":16:", "max_batch_events"),
        (":19:", "batch_max"),
    ];
    assert_eq!(lines.len(), expect.len(), "{err}");
    for ((at, key), line) in expect.iter().zip(&lines) {
        assert!(line.contains(at) && line.contains(key), "{line} in\n{err}");
    }
    // The broker itself refuses the same file, with every problem.
    let out = Command::new(common::bin())
        .arg("--config")
        .arg(&bad)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.metrics_port") && err.contains("server.host"),
        "{err}"
    );
    let _ = std::fs::remove_file(bad);
}

#[test]
fn metrics_on_the_main_port_is_refused_unless_metrics_are_off() {
    let clash = write("clash", "[server]\nport = 7001\nmetrics_port = 7001\n");
    let (ok, err) = check(&clash);
    assert!(
        !ok && err.contains(":3:") && err.contains("metrics need a port of their own"),
        "{err}"
    );
    let off = write(
        "clash-off",
        "[server]\nport = 7001\nmetrics_port = 7001\nmetrics = false\n",
    );
    let (ok, err) = check(&off);
    assert!(ok, "{err}");
    let _ = std::fs::remove_file(clash);
    let _ = std::fs::remove_file(off);
}

#[tokio::test]
async fn boolean_variables_take_1_0_yes_no_on_off() {
    use common::{raw_http, BrokerProcess, WsClient};
    for (value, disabled) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("true", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("false", false),
    ] {
        let b = BrokerProcess::spawn_with(
            common::bin(),
            "",
            &[("VESTNIK_NO_CONSOLE", value), ("VESTNIK_NO_METRICS", "1")],
        );
        let status = raw_http(b.port, "GET", "/console", "").await.status;
        assert_eq!(
            status == 404,
            disabled,
            "VESTNIK_NO_CONSOLE={value}: /console answered {status}"
        );
    }
    // A value-taking boolean: client events off for the first app.
    let b = BrokerProcess::spawn_with(
        common::bin(),
        "",
        &[
            ("VESTNIK_CLIENT_EVENTS", "no"),
            ("VESTNIK_NO_METRICS", "yes"),
        ],
    );
    let mut c = WsClient::connect(&b.ws_url("app-key")).await;
    let auth = common::channel_auth("app-key", "app-secret", &c.socket_id, "private-b", None);
    c.subscribe(serde_json::json!({"channel": "private-b", "auth": auth}))
        .await;
    c.send(&serde_json::json!({"event": "client-x", "channel": "private-b", "data": {}}))
        .await;
    assert_eq!(c.expect_event("pusher:error").await["data"]["code"], 4301);
}

/// `vestnik ARGS` with `env`, without starting anything that lasts: exit status and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(common::bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn errors_name_the_variable_the_flag_or_the_line_the_user_wrote() {
    let (ok, err) = run(&[], &[("VESTNIK_PORT", "abc")]);
    assert!(
        !ok && err.contains("'abc' for 'VESTNIK_PORT'") && !err.contains("--port"),
        "{err}"
    );
    // On the command line, the flag is named.
    let (ok, err) = run(&["--port", "abc"], &[]);
    assert!(!ok && err.contains("--port"), "{err}");

    let (ok, err) = run(&["--activity-timeout", "0", "--no-metrics"], &[]);
    assert!(
        !ok && err.contains("--activity-timeout must be at least 1")
            && !err.contains("server.activity_timeout"),
        "{err}"
    );
    let (ok, err) = run(&["--no-metrics"], &[("VESTNIK_ACTIVITY_TIMEOUT", "0")]);
    assert!(
        !ok && err.contains("VESTNIK_ACTIVITY_TIMEOUT must be at least 1"),
        "{err}"
    );
    // In a file, its line; a flag that fixes the file's value wins.
    let file = write("activity", "[server]\nport = 7000\nactivity_timeout = 0\n");
    let path = file.to_str().unwrap();
    let (ok, err) = run(&["--config", path, "--no-metrics"], &[]);
    assert!(
        !ok && err.contains(&format!("{path}:3: server.activity_timeout")),
        "{err}"
    );
    let (ok, err) = run(
        &[
            "--config",
            path,
            "--activity-timeout",
            "5",
            "--metrics-port",
            "7000",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("--metrics-port 7000 is also server.port")
            && !err.contains("activity_timeout"),
        "{err}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn config_check_reports_every_problem_of_the_issue_at_once() {
    let bad = write(
        "issue-18",
        "[server]\n\
         host = \"0.0.0.0:6001\"\n\
         port = 7000\n\
         metrics_port = 7000\n\
         activity_timeout = 0\n\
         max_conections = 10\n\
         \n\
         [[apps]]\n\
         id = \"1\"\n\
         key = \"k\"\n\
         secret = \"s\"\n\
         client_event_rate = -5\n\
         client_events = \"yes\"\n\
         \n\
         [[apps]]\n\
         id = \"1\"\n\
         key = \"k\"\n\
         secret = \"s2\"\n\
         \n\
         [[apps.webhooks]]\n\
         url = \"ftp://example.com/hook\"\n",
    );
    let (ok, err) = check(&bad);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        (":2:", "server.host"),
        (":4:", "server.metrics_port"),
        (":5:", "server.activity_timeout"),
        (":6:", "did you mean `max_connections`?"),
        (":12:", "client_event_rate"),
        (":16:", "share the id \"1\""),
        (":17:", "share the key \"k\""),
        (":21:", "ftp://example.com/hook"),
    ];
    assert_eq!(lines.len(), expect.len(), "{err}");
    for ((at, what), line) in expect.iter().zip(&lines) {
        assert!(line.contains(at) && line.contains(what), "{line} in\n{err}");
    }
    // `client_events = "yes"` is read as the variable reads it.
    let yes = write(
        "yes",
        "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = \"yes\"\n\
         [server]\ntrust_proxy = \"off\"\n",
    );
    let (ok, err) = check(&yes);
    assert!(ok, "{err}");
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(yes);
}

#[test]
fn dead_letters_of_a_missing_dir_or_an_unknown_app_fail_and_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("no-such-dir");
    let dir = missing.to_str().unwrap();
    let (ok, err) = run(
        &["webhooks", "--data-dir", dir, "dead-letters", "app-id"],
        &[],
    );
    assert!(!ok && err.contains("no webhook data dir"), "{err}");
    assert!(!missing.exists(), "inspecting created {dir}");
    for action in [
        &["replay", "app-id", "--all"][..],
        &["purge", "app-id", "--all"],
    ] {
        let args = [&["webhooks", "--data-dir", dir][..], action].concat();
        let (ok, err) = run(&args, &[]);
        assert!(!ok && err.contains("no webhook data dir"), "{err}");
        assert!(!missing.exists());
    }
    // A data dir without a spool: an error, and still no spool.
    let empty = root.path().to_str().unwrap();
    let (ok, err) = run(
        &["webhooks", "--data-dir", empty, "dead-letters", "app-id"],
        &[],
    );
    assert!(!ok && err.contains("no webhook spool"), "{err}");
    assert!(!root.path().join(vestnik_webhooks::SPOOL_FILE).exists());

    // A spool the broker left: the configured app lists (none), an unknown one is an error.
    vestnik_webhooks::Spool::open(root.path()).unwrap();
    let spool_file = root.path().join(vestnik_webhooks::SPOOL_FILE);
    let before = std::fs::read(&spool_file).unwrap();
    let (ok, err) = run(
        &["webhooks", "--data-dir", empty, "dead-letters", "app-id"],
        &[],
    );
    assert!(ok, "{err}");
    let (ok, err) = run(
        &[
            "webhooks",
            "--data-dir",
            empty,
            "dead-letters",
            "no-such-app",
        ],
        &[],
    );
    assert!(!ok && err.contains("unknown app \"no-such-app\""), "{err}");
    assert!(
        std::fs::read(&spool_file).unwrap() == before,
        "listing wrote to the spool"
    );
}
