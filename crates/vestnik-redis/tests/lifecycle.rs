//! The adapter shell's lifecycle cases (`close` and drop, the counters, bounded buffering, a
//! silent server), run from `vestnik_testkit::conformance::lifecycle`, and what only Redis has:
//! refused configurations, and the other ways to reach Redis (TLS, Sentinel). Ordinary cases use
//! the shared Redis on a random prefix; TLS and Sentinel use private servers on free ports.
//!
//! A test that cannot reach Redis fails and says how to start it; none is skipped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vestnik_broker::adapter::{HoldLimits, NodeId};
use vestnik_redis::{Error, RedisAdapter, RedisOptions};
use vestnik_testkit::conformance::{
    self, unique_prefix, BackboneServer, DropAccounting, EVENT_WAIT,
};

fn shared_url() -> String {
    std::env::var("VESTNIK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn connect_with(
    url: &str,
    prefix: &str,
    id: NodeId,
    options: RedisOptions,
) -> Arc<RedisAdapter> {
    // RUST_LOG=vestnik_redis=debug shows the adapter's transitions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    RedisAdapter::connect_with(url, prefix, id, options)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Redis at {url}: {e}\n\
                 start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, \
                 or set VESTNIK_TEST_REDIS_URL to another"
            )
        })
}

/// A factory of nodes on the shared server, all on `prefix`, with `options`.
fn shared(prefix: &str, options: RedisOptions) -> impl FnMut(NodeId) -> BoxedAdapter {
    let prefix = prefix.to_owned();
    move |id| {
        let (prefix, options) = (prefix.clone(), options.clone());
        Box::pin(async move { connect_with(&shared_url(), &prefix, id, options).await })
    }
}

type BoxedAdapter = std::pin::Pin<Box<dyn std::future::Future<Output = Arc<RedisAdapter>>>>;

#[tokio::test]
async fn close_publishes_what_is_queued_then_ends() {
    let prefix = unique_prefix("redis-close");
    conformance::close_publishes_what_is_queued_then_ends(shared(&prefix, RedisOptions::default()))
        .await;
}

#[tokio::test]
async fn drop_ends_the_tasks_and_the_stream() {
    let prefix = unique_prefix("redis-drop");
    conformance::drop_ends_the_tasks_and_the_stream(shared(&prefix, RedisOptions::default())).await;
}

#[tokio::test]
async fn stats_count_what_moved() {
    let prefix = unique_prefix("redis-stats");
    conformance::stats_count_what_moved(shared(&prefix, RedisOptions::default())).await;
}

#[tokio::test]
async fn a_slow_cluster_layer_costs_dropped_messages_not_memory() {
    let prefix = unique_prefix("redis-slow");
    let small = RedisOptions {
        event_queue: 4,
        ..RedisOptions::default()
    };
    conformance::a_slow_cluster_layer_costs_dropped_messages_not_memory(
        shared(&prefix, RedisOptions::default()),
        shared(&prefix, small),
        4,
        DropAccounting::Exact,
    )
    .await;
}

#[tokio::test]
async fn refuses_bad_configuration_and_unreachable_servers() {
    let prefix = unique_prefix("redis-bad");
    for bad in ["", "has space"] {
        let err = RedisAdapter::connect(&shared_url(), bad, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidPrefix { .. }), "{err}");
    }
    let err = RedisAdapter::connect("http://u:secret@127.0.0.1", &prefix, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidUrl(_)) && !err.to_string().contains("secret"),
        "{err}"
    );

    let port = free_port();
    let started = Instant::now();
    let err = RedisAdapter::connect(&format!("redis://127.0.0.1:{port}"), &prefix, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Redis(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused connection took {:?}",
        started.elapsed()
    );
}

/// The conformance cases over TLS (`rediss://`), against a private `redis-server --tls-port`
/// whose certificate is signed by a throwaway CA given through `SSL_CERT_FILE`.
#[tokio::test]
async fn tls_passes_the_conformance_cases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = make_certificates(dir.path());
    // rustls-native-certs reads SSL_CERT_FILE; no other test in this binary uses TLS.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let port = free_port();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let _server = Guard::spawn(
        Command::new("redis-server").args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &d("server.pem"),
            "--tls-key-file",
            &d("server.key"),
            "--tls-ca-cert-file",
            &d("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
        port,
    );
    let url = format!("rediss://localhost:{port}");
    let prefix = unique_prefix("redis-tls");
    conformance::all_reaches_every_node(|id| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { connect_with(&url, &prefix, id, RedisOptions::default()).await }
    })
    .await;
    conformance::payloads_pass_unchanged(|id| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { connect_with(&url, &prefix, id, RedisOptions::default()).await }
    })
    .await;
}

/// `redis+sentinel://` finds the master through a private Sentinel, and follows it when the
/// master restarts.
#[tokio::test]
async fn sentinel_finds_the_master() {
    let mut master = BackboneServer::redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor vestnik 127.0.0.1 {} 1\n",
            master.port()
        ),
    )
    .expect("write the Sentinel config");
    let _sentinel = Guard::spawn(
        Command::new("redis-server").arg(&config).arg("--sentinel"),
        port,
    );
    let url = format!("redis+sentinel://127.0.0.1:{port}/vestnik");
    let prefix = unique_prefix("redis-sentinel");
    let make = |id| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { connect_with(&url, &prefix, id, RedisOptions::default()).await }
    };
    conformance::all_reaches_every_node(make).await;
    conformance::restart_recovers(make, &mut master).await;
}

/// A child process killed on drop, started and waited for until it accepts on `port`.
struct Guard(Child);

impl Guard {
    fn spawn(cmd: &mut Command, port: u16) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} ({e}); install redis-server"));
        let guard = Self(child);
        let deadline = Instant::now() + EVENT_WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{cmd:?} did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Writes ca.pem, server.pem and server.key (for `localhost` and 127.0.0.1) into `dir` with the
/// openssl command line; returns the CA's path.
fn make_certificates(dir: &std::path::Path) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}); install it with `apt-get install openssl`")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=vestnik test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write the extension file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    dir.join("ca.pem")
}

/// A Redis that stops answering without closing anything (SIGSTOP, as in a partition) is noticed,
/// reported once, and recovered from when it answers again.
#[tokio::test]
async fn a_silent_backbone_is_noticed() {
    let server = BackboneServer::redis();
    let prefix = unique_prefix("redis-silent");
    let quick = RedisOptions {
        health_interval: Duration::from_millis(200),
        response_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(500),
        reconnect_max: Duration::from_millis(500),
        ..RedisOptions::default()
    };
    let url = server.url();
    let make = |id| {
        let (url, prefix, quick) = (url.clone(), prefix.clone(), quick.clone());
        async move { connect_with(&url, &prefix, id, quick).await }
    };
    conformance::a_silent_backbone_is_noticed(make, &server).await;
}

/// A Redis restart shorter than the relay hold loses nothing; one longer loses exactly what expired,
/// and counts it.
#[tokio::test]
async fn the_relay_hold_covers_a_restart_and_counts_what_outlives_it() {
    let mut server = BackboneServer::redis();
    let prefix = unique_prefix("redis-hold");
    let url = server.url();
    let quick = RedisOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let make = |id| {
        let (url, prefix, quick) = (url.clone(), prefix.clone(), quick.clone());
        async move { connect_with(&url, &prefix, id, quick).await }
    };
    conformance::a_restart_within_the_relay_hold_loses_nothing(make, &mut server).await;
    let short = RedisOptions {
        relay_hold: HoldLimits {
            time: Duration::from_secs(2),
            ..HoldLimits::default()
        },
        ..quick.clone()
    };
    let make = |id| {
        let (url, prefix, short) = (url.clone(), prefix.clone(), short.clone());
        async move { connect_with(&url, &prefix, id, short).await }
    };
    conformance::a_restart_longer_than_the_relay_hold_counts_what_it_lost(make, &mut server).await;
}
